"""Response framing: a validated head, then body bytes framed as the head promised.

Theory of operation
-------------------
:func:`response_head` turns a status and the app's headers into bytes and a
:class:`ResponseFramer`, deciding the framing once (``_FRAMING`` below, first match wins):

======================================  ===================  ===========================
condition                               body bytes           connection afterwards
======================================  ===================  ===========================
status 1xx, 204 or 304, or a HEAD       none                 as the request says
app gave Content-Length                 exactly that many    as the request says
HTTP/1.1 request                        chunked              as the request says
HTTP/1.0 request, or no request         until close          closed
======================================  ===================  ===========================

``close=True``, a request that is not keep-alive, or an app's ``Connection: close`` force a
close; we then send ``Connection: close`` (and ``Connection: keep-alive`` to a keep-alive
HTTP/1.0 client). The app's own ``Connection`` and ``Transfer-Encoding`` fields are dropped,
because framing is ours to decide, except that a 101 keeps its ``Connection: upgrade``.
The driver then sends ``framer.body(data)`` for each piece and ``framer.end()`` last, and
keeps the connection only if ``framer.keep_alive`` is still true. :func:`full_response` is
the fast path for the common case of one body known in full: one bytes object, no framer.

Every header name must be an RFC 9110 token and every value free of CR, LF, NUL and other
controls (HTAB aside): anything else raises :class:`LocalProtocolError` before a byte is
produced, so response splitting (uvicorn CVE-2020-7695, gunicorn CVE-2018-1000164) cannot
happen whatever the app sends. The checks are ``bytes.translate`` calls (linear, no regex),
and a validated ``(name, value)`` pair is remembered in a bounded cache, so the constant
headers an app sends on every response are checked and formatted once per process. When the
optional C extension is built, ``scan_headers`` does the common case (plain fields, no
``Connection`` or ``Transfer-Encoding``) in one call and leaves anything else to this code;
it knows which fields those are, the ``Server`` value and the Connection rule only from the
tables this module hands it at import (``bind_response``, at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TypeVar

from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1.dates import DEFAULT_DATES
from threadloom.protocols.http1.request import Request
from threadloom.protocols.http1.speedups import bind_response, render_whole, scan_headers

V = TypeVar("V")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Deleting these from a value leaves only forbidden bytes (controls but HTAB, and DEL).
_VALUE_OK = bytes(b for b in range(256) if b >= 0x20 and b != 0x7F) + b"\t"
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_NO_BODY_STATUS = frozenset({204, 304})
#: The Server field (handed to the C fast path below, which writes it only when it is this).
SERVER = b"threadloom"

# What a header field means to the framing; any other name is _PLAIN.
_PLAIN, _LENGTH, _DATE, _SERVER, _CONNECTION, _DROPPED = range(6)
_KINDS = {
    b"content-length": _LENGTH,
    b"date": _DATE,
    b"server": _SERVER,
    b"connection": _CONNECTION,
    b"transfer-encoding": _DROPPED,
}
#: The kinds _scan_headers sends as the app gave them, only noting them in ``seen``.
_NOTED = frozenset({_DATE, _SERVER})
#: The fields _finish_head adds itself unless the app gave them.
_DATE_OR_SERVER = 1 << _DATE | 1 << _SERVER
_CACHE_MAX = 2048
_CACHE_VALUE_MAX = 200
_LINES: dict[tuple[str | bytes, str | bytes], tuple[bytes, int, bytes]] = {}
_STATUS_LINES: dict[int | tuple[int, str], bytes] = {}  # keyed by status alone if no reason


def status_line(status: int, reason: str | None) -> bytes:
    """``HTTP/1.1 <status> <reason>\r\n`` (the standard phrase when ``reason`` is None), cached."""
    line = _STATUS_LINES.get(status if reason is None else (status, reason))
    if line is None:
        if not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid status {status!r}")
        phrase = _as_bytes(reason) if reason else _REASONS.get(status, b"Unknown")
        if phrase.translate(None, _VALUE_OK):
            raise LocalProtocolError(f"invalid reason phrase {phrase!r}")
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[status if reason is None else (status, reason)] = line
    return line


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(f"header {value!r} is not latin-1 text") from None


def _line(bname: bytes, bvalue: bytes) -> tuple[bytes, int, bytes]:
    """What HTTP/1.1 keeps of a checked field: its wire line, its kind, its value."""
    return b"%s: %s\r\n" % (bname, bvalue), _KINDS.get(bname.lower(), _PLAIN), bvalue


def checked_field(
    memo: dict[tuple[str | bytes, str | bytes], V],
    name: str | bytes,
    value: str | bytes,
    make: Callable[[bytes, bytes], V],
) -> V:
    """An app's response field, checked (:func:`check_field`) and made into what the
    protocol keeps of it (``make``: HTTP/1.1's line, HTTP/2's lower-cased pair), from
    ``memo`` when the same (name, value) came before: an app sends the same few fields on
    every response. Only values of at most _CACHE_VALUE_MAX bytes are kept, and the memo
    is emptied when full, so varying values (lengths, ETags) cannot crowd out the
    constant ones."""
    try:
        entry = memo.get((name, value))
    except TypeError:  # unhashable, so not str or bytes: check_field will say so
        entry = None
    if entry is None:
        bname, bvalue = check_field(name, value)
        entry = make(bname, bvalue)
        if len(bvalue) <= _CACHE_VALUE_MAX:
            if len(memo) >= _CACHE_MAX:
                memo.clear()
            memo[(name, value)] = entry
    return entry


def check_field(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """A response field as bytes, its value stripped of surrounding blanks; raises
    LocalProtocolError unless the name is a token and the value has no CR, LF, NUL or other
    control (HTTP/1.1 and HTTP/2 alike: ``protocols/http2/response`` calls this too)."""
    bname = _as_bytes(name)
    bvalue = _as_bytes(value)
    if not bname or bname.translate(None, _TCHAR) or bvalue.translate(None, _VALUE_OK):
        raise LocalProtocolError(f"invalid response header {bname[:60]!r}: {bvalue[:60]!r}")
    return bname, bvalue.strip(b" \t")


class ResponseFramer:
    """Frames body bytes as the head promised; see the module docstring."""

    __slots__ = ("chunked", "keep_alive", "no_body", "remaining")

    def __init__(
        self, chunked: bool, no_body: bool, remaining: int | None, keep_alive: bool
    ) -> None:
        self.chunked = chunked
        self.no_body = no_body
        #: body bytes still owed under a Content-Length; None when not length-delimited
        self.remaining = remaining
        #: may the connection serve another request after this response
        self.keep_alive = keep_alive

    def body(self, data: bytes) -> bytes:
        """Frame one piece of the body (``b""`` in, ``b""`` out: never an early last-chunk)."""
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


def _scan_headers(
    lines: list[bytes], headers: Iterable[tuple[str | bytes, str | bytes]], status: int
) -> tuple[int | None, int, bool]:
    """Append the app's fields to ``lines``: (its Content-Length, fields seen, close asked)."""
    if scan_headers is not None:
        scanned = scan_headers(headers)  # the C fast path; None: it leaves the case to us
        if scanned is not None:
            lines.append(scanned[0])
            return scanned[1], scanned[2], False
    length: int | None = None
    seen = 0
    close = False
    for name, value in headers:
        line, kind, bvalue = checked_field(_LINES, name, value, _line)
        if kind:
            if kind == _LENGTH:
                length = app_length(bvalue, length)
            elif kind == _CONNECTION:
                close = close or b"close" in bvalue.lower()
                if status != 101:
                    continue  # we decide the Connection field ourselves
            elif kind == _DROPPED:
                continue  # framing is ours to choose; an app's TE would contradict it
            seen |= 1 << kind
        lines.append(line)
    return length, seen, close


def _finish_head(
    lines: list[bytes], seen: int, server_header: bytes, status: int, connection: bytes
) -> bytes:
    """Add Date, Server and Connection unless already there, and the blank line; join."""
    if status < 200:
        connection = b""
    if not seen & _DATE_OR_SERVER and server_header:  # the common case, cached per second
        lines.append(DEFAULT_DATES.head_end(server_header, connection))
        return b"".join(lines)
    if not seen & (1 << _DATE):
        lines.append(b"Date: %s\r\n" % DEFAULT_DATES.header_value())
    if server_header and not seen & (1 << _SERVER):
        lines.append(b"Server: %s\r\n" % server_header)
    lines.append(connection)
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(
    request: Request | None,
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    reason: str | None = None,
    server_header: bytes = SERVER,
    close: bool = False,
) -> tuple[bytes, ResponseFramer]:
    """Validate and serialise a response head; decide the body's framing (module docstring)."""
    lines = [status_line(status, reason)]
    length, seen, app_close = _scan_headers(lines, headers, status)
    keep_alive = request is not None and request.keep_alive and not (close or app_close)
    http10 = request is None or request.http_version == "1.0"
    no_body = (
        status < 200
        or status in _NO_BODY_STATUS
        or (request is not None and request.method == "HEAD")
    )
    chunked = False
    if length is None and not no_body:
        if http10:
            keep_alive = False  # the body ends when the connection does
        else:
            chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
    connection = _connection_field(keep_alive, http10)
    head = _finish_head(lines, seen, server_header, status, connection)
    return head, ResponseFramer(chunked, no_body, None if no_body else length, keep_alive)


#: A body at least this large is sent beside its head (``full_response_parts``), never
#: copied into one buffer with it: a server writing the same large body to many slow
#: readers must not hold a copy per reader.
JOIN_MAX = 64 * 1024


def full_response(
    request: Request | None,
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes,
    *,
    reason: str | None = None,
    server_header: bytes = SERVER,
    close: bool = False,
) -> tuple[bytes, bool]:
    """Head and whole body in one bytes object, and whether to keep the connection.

    The fast path for a body known in full: Content-Length is added when the app gave none
    (except on 1xx/204/304), no framer is made and nothing is chunked. A HEAD gets the
    length of ``body`` (or the app's own) but not its bytes. Otherwise an app Content-Length
    other than ``len(body)`` raises :class:`LocalProtocolError`.
    """
    if render_whole is not None and request is not None and not close and server_header == SERVER:
        line = _STATUS_LINES.get(status) if reason is None else None  # (status_line's cache)
        line = line or status_line(status, reason)
        whole = render_whole(request, status, line, headers, body)
        if whole is not None:  # None: not the plain case, which the code below decides
            return whole  # keep-alive after it as _after_whole says (from _AFTER_WHOLE)
    head, body, keep_alive = full_response_parts(
        request, status, headers, body, reason=reason, server_header=server_header, close=close
    )
    return (head + body if body else head), keep_alive


def full_response_parts(
    request: Request | None,
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes,
    *,
    reason: str | None = None,
    server_header: bytes = SERVER,
    close: bool = False,
) -> tuple[bytes, bytes, bool]:
    """:func:`full_response` as a head and the body to send after it (``b""`` for none),
    not joined; the same rules."""
    head, with_body, keep_alive = whole_head(
        request,
        status,
        headers,
        len(body),
        reason=reason,
        server_header=server_header,
        close=close,
    )
    return head, (body if with_body else b""), keep_alive


def app_length(value: bytes, earlier: int | None = None) -> int:
    """An app's Content-Length as a number: ASCII digits, and one field only (``earlier``:
    the one seen before, if any), else :class:`LocalProtocolError`. Both protocols' rule."""
    if not value.isdigit() or earlier is not None:
        raise LocalProtocolError(f"invalid Content-Length {value[:40]!r}")
    return int(value)


def check_whole_length(given: int, length: int) -> None:
    """The one rule for a Content-Length an app gave with a body of ``length`` bytes known
    before it is sent: they agree (else :class:`LocalProtocolError`). Both protocols'."""
    if given != length:
        raise LocalProtocolError(f"Content-Length {given} but a body of {length} bytes")


def whole_head(
    request: Request | None,
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    length: int,
    *,
    reason: str | None = None,
    server_header: bytes = SERVER,
    close: bool = False,
) -> tuple[bytes, bool, bool]:
    """The head of a response whose body is ``length`` bytes known before it is sent (a
    whole body in memory, or a file of that size); whether the body follows the head (not
    after a HEAD, a 1xx, 204 or 304); whether to keep the connection.

    The one rule for a Content-Length the app gave: it must be ``length`` (a HEAD may state
    the GET's length), else :class:`LocalProtocolError`; with none, ours is added.
    """
    lines = [status_line(status, reason)]
    given, seen, app_close = _scan_headers(lines, headers, status)
    keep_alive = request is not None and request.keep_alive and not (close or app_close)
    head_only = request is not None and request.method == "HEAD"
    with_body = not head_only
    if status < 200 or status in _NO_BODY_STATUS:
        with_body = False
    elif given is None:
        lines.append(b"Content-Length: %d\r\n" % length)
    elif not head_only:  # HEAD may state the GET's length
        check_whole_length(given, length)
    http10 = request is None or request.http_version == "1.0"
    connection, keep_alive = _after_whole(keep_alive, http10)
    head = _finish_head(lines, seen, server_header, status, connection)
    return head, with_body, keep_alive


def _connection_field(keep_alive: bool, http10: bool) -> bytes:
    if not keep_alive:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if http10 else b""


def _after_whole(keep_alive: bool, http10: bool) -> tuple[bytes, bool]:
    """A whole response's Connection line, and whether the connection is kept after it
    (``keep_alive``: what the request and the app allow). The C path reads the same answers
    from ``_AFTER_WHOLE``."""
    return _connection_field(keep_alive, http10), keep_alive


#: ``_after_whole(keep_alive, http10)`` at index ``2 * keep_alive + http10``.
_AFTER_WHOLE = tuple(_after_whole(bool(i & 2), bool(i & 1)) for i in range(4))


def error_response(status: int, message: str = "") -> bytes:
    """A whole small text/plain response that closes the connection (errors, 503 overload)."""
    text = (message or _REASONS.get(status, b"Error").decode()).encode("utf-8", "replace")
    text += b"\n"
    extra = b"Retry-After: 1\r\n" if status == 503 else b""
    return b"".join(
        (
            status_line(status, None),
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(text),
            b"Date: %s\r\nServer: %s\r\n%sConnection: close\r\n\r\n"
            % (DEFAULT_DATES.header_value(), SERVER, extra),
            text,
        )
    )


# The C fast path takes its tables from here (it declines every call until it has them): a
# kind it does not know to pass through, a status without a body, another Server value or
# another Connection rule then changes what C does by construction.
bind_response(
    tchar=_TCHAR,
    value_ok=_VALUE_OK,
    kinds=_KINDS,
    length=_LENGTH,
    noted=_NOTED,
    own=_DATE_OR_SERVER,
    no_body=_NO_BODY_STATUS,
    server=SERVER,
    after_whole=_AFTER_WHOLE,
)
