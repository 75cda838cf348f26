"""What the proxy in front says about a request: X-Forwarded-For/-Proto/-Host, X-Request-ID.

Theory of operation
-------------------
Headers a reverse proxy adds are claims, and anyone can send the same bytes, so they count
only when the connection comes from a proxy the operator trusts (``--forwarded-allow-ips``:
addresses and networks, or ``*``). :class:`TrustedProxies` answers "is this peer a proxy?"
(unix-socket peers are: only processes allowed to open the socket file can connect, which
in practice is the local proxy). For a trusted peer, :func:`resolve` turns the three headers
into the client address, scheme and host the app should see:

* X-Forwarded-For is read from the right: each proxy appends the address it saw, so the
  rightmost address that is *not* a trusted proxy is the client; the entries left of it were
  written by the client and prove nothing. When every hop is trusted, the leftmost wins.
  An entry that is not an IP address (``unknown``, junk) stops the walk and the header is
  ignored: the peer stays the client, which is the safe side.
* X-Forwarded-Proto: the rightmost value, ``http`` or ``https`` (``ws``/``wss`` map to them).
* X-Forwarded-Host: the rightmost value, if it looks like a host (letters, digits, ``.-:[]_``).

A request id (X-Request-ID) is accepted from any peer when it is sane (1-200 characters of
letters, digits and ``._~+/=:-``; it is an identifier, not a claim about anyone), and made
otherwise: 128 random bits in hex. Nothing here touches a socket.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

from threadloom.errors import ConfigError

_CACHE_MAX = 4096
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,255}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._~+/=:-]{1,200}")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """``--forwarded-allow-ips``: which peers may speak for the client (see module doc)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        items = [item for item in spec.replace(",", " ").split() if item]
        self.everyone = "*" in items
        self.networks: list[Network] = []
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--forwarded-allow-ips: {item!r} is not an IP address or network"
                ) from None
        #: verdicts of :meth:`trusts` by host, bounded: the hot path reads it without a call
        self.known: dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an IP address as text) is a trusted proxy; cached."""
        known = self.known.get(host)
        if known is not None:
            return known
        verdict = self.everyone or self._matches(host)
        if len(self.known) >= _CACHE_MAX:
            self.known.clear()
        self.known[host] = verdict
        return verdict

    def trusts_client(self, client: Any) -> bool:
        """Whether a connection's peer is trusted; unix-socket peers (not a tuple) are."""
        if type(client) is tuple:
            known = self.known.get(client[0])  # the hot path: one lookup per request
            return self.trusts(str(client[0])) if known is None else known
        return True

    def _matches(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def _hop_address(hop: str) -> str | None:
    """The IP address of one X-Forwarded-For entry (a port or brackets allowed), or None."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def forwarded_client(value: str, proxies: TrustedProxies) -> str | None:
    """The client named by X-Forwarded-For: the rightmost untrusted hop (see module doc)."""
    found = None
    for hop in reversed(value.split(",")):
        address = _hop_address(hop)
        if address is None:
            return None
        found = address
        if not proxies.trusts(address):
            return address
    return found


def forwarded_scheme(value: str) -> str | None:
    """``http`` or ``https`` from X-Forwarded-Proto's rightmost value; None if anything else."""
    return _SCHEMES.get(value.rpartition(",")[2].strip().lower())


def forwarded_host(value: str) -> str | None:
    """X-Forwarded-Host's rightmost value, if it looks like a host."""
    host = value.rpartition(",")[2].strip()
    return host if _HOST.fullmatch(host) else None


def resolve(
    proxies: TrustedProxies, xff: str | None, proto: str | None, host: str | None
) -> tuple[str | None, str | None, str | None]:
    """Client address, scheme and host from a trusted peer's headers (None: keep yours)."""
    return (
        None if xff is None else forwarded_client(xff, proxies),
        None if proto is None else forwarded_scheme(proto),
        None if host is None else forwarded_host(host),
    )


def sane_request_id(value: str) -> bool:
    """Whether a client's X-Request-ID may be kept (length and characters, see module doc)."""
    return _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """A fresh request id: 128 random bits as 32 hex digits (unique across processes).

    The bits come from ``os.urandom`` 256 ids at a time (one system call per 256 requests);
    ``list.pop`` hands each out to one thread only, and a forked child starts afresh.
    """
    try:
        return _IDS.pop()
    except IndexError:
        block = os.urandom(16 * _ID_BATCH).hex()
        _IDS.extend([block[at : at + 32] for at in range(32, len(block), 32)])
        return block[:32]


_ID_BATCH = 256
_IDS: list[str] = []
if hasattr(os, "register_at_fork"):  # (not on Windows, where nothing forks)
    os.register_at_fork(after_in_child=_IDS.clear)
