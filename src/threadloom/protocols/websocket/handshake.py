"""The opening handshake (RFC 6455 4.2): check an HTTP Upgrade request, answer 101 or refuse.

Theory of operation
-------------------
The HTTP core parses the request; this module judges it. No state lives here: each
function takes what the HTTP core produced (method, version, header list) and returns
values or bytes. The driver's sequence is

1. :func:`is_upgrade_request` on a request's headers: True routes it to the WebSocket side.
2. :func:`check_request`: a :class:`Handshake`, or :class:`HandshakeError` (400, or 426 with
   ``Sec-WebSocket-Version: 13`` in ``extra_headers`` when the version is not 13). On the
   error, send :func:`reject_response` and close.
3. Pick a subprotocol from ``Handshake.subprotocols`` (the app's choice) and, unless
   disabled, :func:`negotiate_deflate` on ``Handshake.extensions_offered``.
4. Send :func:`accept_response`, then hand the bytes that followed the request head (the
   HTTP core's ``trailing_data``) to a new ``WebSocketConnection`` built with the same
   ``DeflateParams``.

Header names are compared case-insensitively (the HTTP core lower-cases them; other callers
may not), and list-valued fields (``Connection``, ``Upgrade``, ``Sec-WebSocket-Protocol``,
``Sec-WebSocket-Extensions``) may be split over several fields, as RFC 9110 5.3 allows.
Responses are framed by the HTTP core's ``response_head``/``full_response``, so extra header
bytes are validated there (no CR, LF, NUL or other controls: ``LocalProtocolError``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from threadloom.errors import LocalProtocolError, RemoteProtocolError
from threadloom.protocols.http1 import full_response, response_head
from threadloom.protocols.websocket.deflate import DeflateParams, negotiate_deflate

__all__ = [
    "DeflateParams",
    "Handshake",
    "HandshakeError",
    "accept_key",
    "accept_response",
    "check_request",
    "is_upgrade_request",
    "negotiate_deflate",
    "reject_response",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Headers = Iterable[tuple[bytes, bytes]]
_WANTED = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)
#: Fields the 101 itself sets: an app's copy would contradict or duplicate ours.
_RESERVED = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)


class HandshakeError(RemoteProtocolError):
    """The client's handshake is unacceptable; answer :func:`reject_response` and close.

    ``status`` is 400, or 426 when the WebSocket version is missing or not 13, in which
    case ``extra_headers`` names the version we speak (RFC 6455 4.2.2).
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message, status)
        self.extra_headers: list[tuple[bytes, bytes]] = extra_headers or []


@dataclass(slots=True)
class Handshake:
    """What a valid opening handshake asked for.

    ``path`` is the request-target as the caller gave it to :func:`check_request`;
    ``key`` the client's ``Sec-WebSocket-Key``; ``subprotocols`` its offered subprotocols
    in order; ``extensions_offered`` its ``Sec-WebSocket-Extensions`` fields joined by
    ``", "`` (None when absent); ``origin`` its ``Origin`` field, if any.
    """

    path: str
    key: bytes
    subprotocols: list[str] = field(default_factory=list)
    extensions_offered: bytes | None = None
    origin: str | None = None


def _collect(headers: Headers) -> dict[bytes, list[bytes]]:
    """The handshake's fields by lower-cased name, values stripped, in arrival order."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in _WANTED:
            found.setdefault(lname, []).append(value.strip(b" \t"))
    return found


def _tokens(values: list[bytes] | None) -> set[bytes]:
    """The lower-cased tokens of a comma-separated list field, over all its fields."""
    if not values:
        return set()
    return {token.strip(b" \t").lower() for value in values for token in value.split(b",")}


def is_upgrade_request(headers: Headers) -> bool:
    """Does this request ask to upgrade to WebSocket (``Upgrade`` holds ``websocket``)?"""
    return b"websocket" in _tokens([value for name, value in headers if name.lower() == b"upgrade"])


def _version_at_least_11(http_version: str | bytes) -> bool:
    text = http_version.decode("latin-1") if isinstance(http_version, bytes) else http_version
    major, _, minor = text.removeprefix("HTTP/").partition(".")
    try:
        return (int(major), int(minor or "0")) >= (1, 1)
    except ValueError:
        return False


def _check_key(values: list[bytes] | None) -> bytes:
    """The one ``Sec-WebSocket-Key``: base64 of a 16-byte nonce (RFC 6455 4.1, item 7)."""
    if not values or len(values) != 1:
        raise HandshakeError("missing or repeated Sec-WebSocket-Key header")
    try:
        nonce = base64.b64decode(values[0], validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        raise HandshakeError("Sec-WebSocket-Key is not a base64-encoded 16-byte value")
    return values[0]


def check_request(
    method: bytes | str,
    http_version: str | bytes,
    headers: Headers,
    *,
    path: str | bytes = "/",
) -> Handshake:
    """Validate an opening handshake (RFC 6455 4.2.1) or raise :class:`HandshakeError`.

    ``path`` is only carried into the result (bytes are decoded as latin-1, which cannot
    fail; the HTTP core lets only ASCII through).
    """
    if method not in (b"GET", "GET"):
        raise HandshakeError(f"WebSocket handshake needs GET, not {method!r}")
    if not _version_at_least_11(http_version):
        raise HandshakeError(f"WebSocket handshake needs HTTP/1.1, not {http_version!r}")
    found = _collect(headers)
    if not found.get(b"host"):
        raise HandshakeError("missing Host header")
    if b"websocket" not in _tokens(found.get(b"upgrade")):
        raise HandshakeError("Upgrade header does not name websocket")
    if b"upgrade" not in _tokens(found.get(b"connection")):
        raise HandshakeError("Connection header does not contain the upgrade token")
    if found.get(b"sec-websocket-version") != [b"13"]:
        raise HandshakeError(
            "missing or unsupported Sec-WebSocket-Version (this server speaks 13)",
            426,
            [(b"sec-websocket-version", b"13")],
        )
    key = _check_key(found.get(b"sec-websocket-key"))
    return _offer(found, path, key)


def check_connect_request(
    method: str, protocol: bytes | None, headers: Headers, *, path: str | bytes = "/"
) -> Handshake:
    """Validate an HTTP/2 extended CONNECT (RFC 8441 4-5) or raise :class:`HandshakeError`:
    ``:protocol`` websocket and version 13; no key (HTTP/2's stream is the proof)."""
    if method != "CONNECT" or protocol != b"websocket":
        raise HandshakeError("WebSocket over HTTP/2 needs CONNECT with :protocol websocket")
    found = _collect(headers)
    if found.get(b"sec-websocket-version") != [b"13"]:
        raise HandshakeError(
            "missing or unsupported Sec-WebSocket-Version (this server speaks 13)",
            400,
            [(b"sec-websocket-version", b"13")],
        )
    return _offer(found, path, b"")


def _offer(found: dict[bytes, list[bytes]], path: str | bytes, key: bytes) -> Handshake:
    """What a valid handshake offers: subprotocols, extensions, origin."""
    extensions = found.get(b"sec-websocket-extensions")
    origin = found.get(b"origin")
    return Handshake(
        path=path.decode("latin-1") if isinstance(path, bytes) else path,
        key=key,
        subprotocols=[
            token.strip(b" \t").decode("latin-1")
            for value in found.get(b"sec-websocket-protocol", ())
            for token in value.split(b",")
            if token.strip(b" \t")
        ],
        extensions_offered=b", ".join(extensions) if extensions else None,
        origin=origin[0].decode("latin-1") if origin else None,
    )


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _name_bytes(name: bytes | str) -> bytes:
    return name.encode("latin-1", "replace") if isinstance(name, str) else name


def accept_response(
    hs: Handshake,
    *,
    subprotocol: str | None = None,
    deflate: DeflateParams | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """The whole ``101 Switching Protocols`` head that completes the handshake.

    Raises :class:`LocalProtocolError` (the app's mistake) for a subprotocol the client did
    not offer, an extra header that would contradict the handshake's own (Upgrade,
    Connection, Sec-WebSocket-Accept/-Protocol/-Extensions: use the arguments), or header
    bytes that are not allowed on the wire.
    """
    headers: list[tuple[bytes, bytes]] = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept_key(hs.key)),
    ]
    head, _ = response_head(
        None, 101, headers + accept_fields(hs, subprotocol, deflate, extra_headers)
    )
    return head


def accept_fields(
    hs: Handshake,
    subprotocol: str | None = None,
    deflate: DeflateParams | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> list[tuple[bytes, bytes]]:
    """The fields that accept a handshake, besides HTTP/1.1's Upgrade and Accept: all of
    an HTTP/2 ``200`` answer to an extended CONNECT (RFC 8441 5). Same refusals as
    :func:`accept_response`."""
    if subprotocol is not None and subprotocol not in hs.subprotocols:
        raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered by the client")
    extra = list(extra_headers)
    for name, _ in extra:
        if _name_bytes(name).lower() in _RESERVED:
            raise LocalProtocolError(f"header {name!r} is set by the WebSocket handshake")
    fields: list[tuple[bytes, bytes]] = []
    if subprotocol is not None:
        fields.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
    if deflate is not None:
        fields.append((b"Sec-WebSocket-Extensions", deflate.header_value()))
    return fields + extra


def reject_response(exc: HandshakeError) -> bytes:
    """A complete small error response for a refused handshake, with ``Connection: close``."""
    body = (str(exc) + "\n").encode("utf-8", "replace")
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"), *exc.extra_headers]
    response, _ = full_response(None, exc.status, headers, body)
    return response
