"""The PROXY protocol, versions 1 and 2 (HAProxy's spec): who the client really was.

Theory of operation
-------------------
A load balancer that forwards TCP (HAProxy, AWS NLB, ...) sends one header before any byte
of the client's: a text line in v1 (``PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\\r\\n``,
107 bytes at most), a binary block in v2 (a 12-byte signature, version and command, family,
a length, the addresses, then type-length-value extensions). The receiver must be told that
a listener speaks it and must never guess: with ``--proxy-protocol`` every connection starts
with a header, and anything else is an error that closes the connection.

State: :class:`ProxyHeaderParser` only buffers the header's bytes until it is complete.
The caller must

* feed bytes with :meth:`ProxyHeaderParser.receive_data` until it returns a
  :class:`ProxyHeader`; bytes fed past the header's end are kept in ``trailing_data`` and
  belong to the next protocol (TLS or HTTP), in order;
* or, when it must not read past the header (a TLS handshake that OpenSSL reads from the
  socket itself, a raw handler that owns the socket), peek at the socket and read exactly
  :meth:`ProxyHeaderParser.wanted` bytes of what it saw, then feed those.

A malformed header raises :class:`ProxyProtocolError`; the connection must then be closed
without an answer (there is no protocol to answer in yet). A ``LOCAL`` command (v2: the
proxy's own health check) or an ``UNKNOWN`` family means "use the real endpoints": the
header's ``source`` is then None.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from threadloom.errors import RemoteProtocolError

V1_PREFIX = b"PROXY "
#: The longest v1 line, CRLF included (the spec's own bound).
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, length

# v2 address families (high nibble) -> the size of their address block
_V2_ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}
_V2_STREAM = 0x1

Address = tuple[str, int] | str


class ProxyProtocolError(RemoteProtocolError):
    """The bytes that began the connection are not a valid PROXY header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header; ``source`` is None when the real endpoints apply (LOCAL, UNKNOWN)."""

    version: int
    source: Address | None = None
    destination: Address | None = None
    #: v2 type-length-value extensions (ALPN, authority, unique id, TLS details), in order.
    tlvs: tuple[tuple[int, bytes], ...] = ()


def header_length(data: bytes) -> int | None:
    """Length of the header that ``data`` starts with; None while more bytes are needed.

    Raises :class:`ProxyProtocolError` as soon as ``data`` cannot begin a header.
    """
    if not data:
        return None
    if data[0] == V2_SIGNATURE[0]:
        seen = min(len(data), len(V2_SIGNATURE))
        if data[:seen] != V2_SIGNATURE[:seen]:
            raise ProxyProtocolError("not a PROXY protocol header")
        if len(data) < V2_FIXED:
            return None
        return V2_FIXED + int.from_bytes(data[14:16], "big")
    seen = min(len(data), len(V1_PREFIX))
    if data[:seen] != V1_PREFIX[:seen]:
        raise ProxyProtocolError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end >= 0:
        return end + 2
    if len(data) >= V1_MAX:
        raise ProxyProtocolError(f"PROXY v1 line longer than {V1_MAX} bytes")
    return None


def parse_header(data: bytes) -> ProxyHeader:
    """Parse one complete header (exactly :func:`header_length` bytes)."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1)  # the proxy cannot tell: use the real endpoints
    if len(parts) != 6:
        raise ProxyProtocolError(f"PROXY v1 line has {len(parts)} fields, not 6")
    family, src, dst, sport, dport = parts[1:]
    kind = {"TCP4": ipaddress.IPv4Address, "TCP6": ipaddress.IPv6Address}.get(family)
    if kind is None:
        raise ProxyProtocolError(f"PROXY v1 protocol {family!r} is not TCP4, TCP6 or UNKNOWN")
    try:
        source, destination = str(kind(src)), str(kind(dst))
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 addresses are not {family}") from None
    return ProxyHeader(1, (source, _v1_port(sport)), (destination, _v1_port(dport)))


def _v1_port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535):
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is not 0-65535")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader:
    version, command = data[12] >> 4, data[12] & 0xF
    if version != 2 or command > 1:
        raise ProxyProtocolError(f"PROXY v2 version/command byte {data[12]:#04x} is invalid")
    body = data[V2_FIXED:]
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(2, tlvs=_tlvs(body, strict=False))
    family, transport = data[13] >> 4, data[13] & 0xF
    if family == 0:  # UNSPEC: the proxy cannot tell, use the real endpoints
        return ProxyHeader(2)
    size = _V2_ADDRESS_SIZES.get(family)
    if size is None or transport != _V2_STREAM:
        raise ProxyProtocolError(f"PROXY v2 family byte {data[13]:#04x} is not a stream")
    if len(body) < size:
        raise ProxyProtocolError("PROXY v2 address block is truncated")
    source, destination = _v2_addresses(family, body[:size])
    return ProxyHeader(2, source, destination, _tlvs(body[size:], strict=True))


def _v2_addresses(family: int, block: bytes) -> tuple[Address, Address]:
    if family == 0x3:
        return _unix_path(block[:108]), _unix_path(block[108:])
    width = 4 if family == 0x1 else 16
    kind = ipaddress.IPv4Address if family == 0x1 else ipaddress.IPv6Address
    src, dst = kind(block[:width]), kind(block[width : 2 * width])
    ports = block[2 * width :]
    src_port, dst_port = int.from_bytes(ports[:2], "big"), int.from_bytes(ports[2:4], "big")
    return (str(src), src_port), (str(dst), dst_port)


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


def _tlvs(data: bytes, strict: bool) -> tuple[tuple[int, bytes], ...]:
    """Type-length-value extensions; a truncated one is an error (ignored after LOCAL)."""
    found = []
    at = 0
    while at < len(data):
        if at + 3 > len(data):
            break
        kind, length = data[at], int.from_bytes(data[at + 1 : at + 3], "big")
        if at + 3 + length > len(data):
            break
        found.append((kind, data[at + 3 : at + 3 + length]))
        at += 3 + length
    else:
        return tuple(found)
    if strict:
        raise ProxyProtocolError("PROXY v2 extension (TLV) is truncated")
    return tuple(found)


class ProxyHeaderParser:
    """Collects one header from the start of a connection (see the module docstring)."""

    __slots__ = ("_buffer", "header", "trailing_data")

    def __init__(self) -> None:
        self._buffer = b""
        self.header: ProxyHeader | None = None
        self.trailing_data = b""

    @property
    def started(self) -> bool:
        """Whether any byte of the header arrived yet."""
        return bool(self._buffer) or self.header is not None

    def wanted(self, peeked: bytes) -> int:
        """How many leading bytes of ``peeked`` (what comes next) belong to the header.

        Reading exactly that many never consumes a byte of the protocol that follows.
        Raises :class:`ProxyProtocolError` if the bytes cannot be a header.
        """
        data = self._buffer + peeked
        total = header_length(data)
        if total is None:
            return len(peeked)  # no end in sight yet: every byte seen is the header's
        return max(0, min(total - len(self._buffer), len(peeked)))

    def receive_data(self, data: bytes) -> ProxyHeader | None:
        """Feed bytes; the header once complete (then ``trailing_data`` holds the rest).

        ``b""`` is EOF: before the header is complete, that is a :class:`ProxyProtocolError`.
        """
        if self.header is not None:
            self.trailing_data += data
            return self.header
        if not data:
            raise ProxyProtocolError("connection closed before the PROXY header ended")
        self._buffer += data
        total = header_length(self._buffer)
        if total is None or len(self._buffer) < total:
            return None
        self.header = parse_header(self._buffer[:total])
        self.trailing_data = self._buffer[total:]
        self._buffer = b""
        return self.header
