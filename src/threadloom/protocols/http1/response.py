"""Response framing: a validated head, then body bytes framed as the head promised.

Theory of operation
-------------------
:func:`response_head` turns a status and the app's headers into bytes and a
:class:`ResponseFramer`, deciding the framing once: the app's Content-Length, no body at all
(HEAD, 1xx, 204, 304), chunked (HTTP/1.1 without a length) or delimited by closing the
connection (HTTP/1.0 without a length). The driver then sends ``framer.body(data)`` for
each piece and ``framer.end()`` last, and keeps the connection only if ``framer.keep_alive``.

Every header name must be an RFC 9110 token and every value free of CR, LF, NUL and other
controls (HTAB aside): anything else raises :class:`LocalProtocolError` before a byte is
produced, so response splitting (uvicorn CVE-2020-7695, gunicorn CVE-2018-1000164) cannot
happen whatever the app sends. The checks are ``bytes.translate`` calls: linear, no regex.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1.connection import Request
from threadloom.protocols.http1.dates import DEFAULT_DATES

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALL = bytes(range(256))
#: Deleting these from a name must leave nothing: a name is a non-empty token.
_TOKEN_CHARS = _TCHAR
#: Deleting these from a value leaves only forbidden bytes (controls but HTAB, and DEL).
_VALUE_OK = bytes(b for b in range(256) if b >= 0x20 and b != 0x7F) + b"\t"

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_NO_BODY_STATUS = frozenset({204, 304})


def _status_line(status: int, reason: bytes | None) -> bytes:
    key = (status, reason or b"")
    line = _STATUS_LINES.get(key)
    if line is None:
        phrase = reason if reason else _REASONS.get(status, b"Unknown")
        if phrase.translate(None, _VALUE_OK):
            raise LocalProtocolError(f"invalid reason phrase {phrase!r}")
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[key] = line
    return line


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"header {value!r} is not latin-1") from None


class ResponseFramer:
    """Frames body bytes as the head promised; see the module docstring."""

    __slots__ = ("chunked", "keep_alive", "no_body", "remaining")

    def __init__(
        self, chunked: bool, no_body: bool, remaining: int | None, keep_alive: bool
    ) -> None:
        self.chunked = chunked
        self.no_body = no_body
        self.remaining = remaining
        self.keep_alive = keep_alive

    def body(self, data: bytes) -> bytes:
        """Frame one piece of the body (``b""`` in, ``b""`` out)."""
        if not data or self.no_body:
            return b""
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining < 0:
                self.keep_alive = False
                raise LocalProtocolError("the app sent more than its Content-Length")
        return data

    def end(self) -> bytes:
        """The bytes that end the body; a body shorter than promised forbids keep-alive."""
        if self.chunked and not self.no_body:
            self.chunked = False
            return b"0\r\n\r\n"
        if self.remaining:
            self.keep_alive = False
        return b""


def response_head(
    request: Request | None,
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    reason: str | None = None,
    server_header: bytes = b"threadloom",
    close: bool = False,
) -> tuple[bytes, ResponseFramer]:
    """Validate and serialise a response head; decide the body's framing (module docstring)."""
    lines = [_status_line(status, reason.encode("latin-1") if reason else None)]
    length: int | None = None
    has_date = has_server = False
    keep_alive = request is not None and request.keep_alive and not close
    for raw_name, raw_value in headers:
        name = _as_bytes(raw_name)
        value = _as_bytes(raw_value)
        if not name or name.translate(None, _TOKEN_CHARS) or value.translate(None, _VALUE_OK):
            raise LocalProtocolError(f"invalid response header {name!r}: {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or length is not None:
                raise LocalProtocolError(f"invalid Content-Length {value!r}")
            length = int(value)
        elif lower == b"date":
            has_date = True
        elif lower == b"server":
            has_server = True
        elif lower == b"connection":
            if b"close" in value.lower():
                keep_alive = False
            continue  # we decide the Connection header ourselves, below
        elif lower == b"transfer-encoding":
            continue  # framing is ours to choose; an app's TE would contradict it
        lines.append(b"%s: %s\r\n" % (name, value))
    head_only = request is not None and request.method == "HEAD"
    no_body = head_only or status < 200 or status in _NO_BODY_STATUS
    http10 = request is None or request.http_version == "1.0"
    chunked = False
    if length is None and not no_body:
        if http10:
            keep_alive = False  # the body ends when the connection does
        else:
            chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
    if not has_date:
        lines.append(b"Date: %s\r\n" % DEFAULT_DATES.header_value())
    if not has_server and server_header:
        lines.append(b"Server: %s\r\n" % server_header)
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif http10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    remaining = None if no_body else length
    return b"".join(lines), ResponseFramer(chunked, no_body, remaining, keep_alive)


def error_response(status: int, message: str = "") -> bytes:
    """A whole small text/plain response that closes the connection (errors, 503 overload)."""
    text = (message or _REASONS.get(status, b"Error").decode()).encode("latin-1", "replace")
    text += b"\n"
    extra = b"Retry-After: 1\r\n" if status == 503 else b""
    return b"".join(
        (
            _status_line(status, None),
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(text),
            b"Date: %s\r\nServer: threadloom\r\n%sConnection: close\r\n\r\n"
            % (DEFAULT_DATES.header_value(), extra),
            text,
        )
    )
