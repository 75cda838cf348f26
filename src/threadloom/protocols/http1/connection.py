"""The server side of one HTTP/1.1 connection: bytes in, :class:`Request` objects out.

Theory of operation
-------------------
State: an ``httptools`` (llhttp) parser whose callbacks are this object's ``on_*`` methods;
``_head``, the request whose head is being parsed (``head_started``); ``current``, the
request whose body is being received; ``requests``, the queue of requests whose heads are
complete and which the driver has not taken yet (pipelining keeps them in order); and the
terminal flags ``_error`` (dead), ``upgraded`` (an Upgrade/CONNECT ended HTTP), ``_closed``
(a non-keep-alive request ended: later bytes will never be answered, so they are dropped
unparsed) and ``peer_closed``. Drivers read ``upgraded`` and ``peer_closed`` and never set them.

Fast path: between messages (no head open, no body in progress) ``receive_data`` first
offers the bytes to the optional C parser (:mod:`.speedups`), which takes clean requests
whose head is complete and declines everything else; from the first byte it declines on,
llhttp parses as below. Both start at a message boundary, so the hand-over loses nothing.
A Content-Length body the C parser began but did not get whole is then only counted
(``_body_left``, :meth:`ServerConnection._count_body`): its framing was checked with its
head, and llhttp, which never saw that message, takes over again at its end.

Who changes it: only :meth:`ServerConnection.receive_data` (and the callbacks it triggers).
The driver must then

* take ready requests from ``requests`` (``popleft``), in order, and answer each;
* read a request's body with ``request.body.take()``; it keeps filling as bytes arrive;
* stop reading the socket while :attr:`paused` is true, and resume when it turns false;
* on an upgrade (``upgraded``): answer 101 and hand ``trailing_data`` to the new protocol,
  or refuse it with a normal response and call :meth:`decline_upgrade`;
* on :class:`RemoteProtocolError`: send ``error_response(exc.status)`` and close. The
  connection is dead: every later call raises the same error, and nothing that followed the
  bad bytes is ever parsed as a request, so pipelining cannot desynchronise.

Strictness: what llhttp (httptools 0.9, default flags) refuses by itself, all as 400:
Content-Length with Transfer-Encoding (either order, also in trailers); a second
Content-Length (even equal) and list or non-digit values (``10, 10``, ``+10``, ``0x0a``,
``1_0``, ``-1``), values over 2**64; Transfer-Encoding where ``chunked`` is not final,
``chunked`` twice (``chunked, chunked``, or in two fields), ``chunked, identity``; chunk
sizes that are not bare hex (``0x1``, ``+1``, ``-1``, spaces) or overflow 64 bits; CR, LF or
NUL inside chunk extensions; missing CRLF after chunk data; bare-LF or bare-CR line endings;
obs-fold; whitespace (SP or HTAB) between field name and colon; non-token field names;
control characters other than HTAB (``\\x00-\\x08``, ``\\x0b``, ``\\x0c``, ``\\x0e-\\x1f``,
``\\x7f``) in field values; unknown or lower-case methods; CTLs, spaces and bytes >= 0x80 in
the request-target; versions other than ``HTTP/x.y``; bytes after a ``Connection: close``
request (we drop those instead of failing, see ``_closed``).

What this module adds, cheaply: checks in ``on_header`` on the five fields that matter
(Host, Content-Length, Transfer-Encoding, Expect, Upgrade) and nothing for the others:
a duplicate Host, or none on HTTP/1.1 (400); a second Transfer-Encoding field even when
llhttp allows it (``gzip`` then ``chunked``, 400); Transfer-Encoding on HTTP/1.0 (400);
codings llhttp lets through ahead of ``chunked``: 501 when they are tokens (``gzip,
chunked``), 400 otherwise (``\\x85``/``\\xa0``-wrapped junk); Content-Length re-checked as
ASCII digits only and over ``max_body_size`` (413, at the head); HTTP/0.9 request lines
(400) and versions other than 1.0/1.1 (505); forbidden trailer fields (Host, Content-Type,
... 400; trailers are otherwise checked, counted against ``max_headers`` and dropped); and
the limits of :class:`HTTPLimits`, counted as bytes arrive so that neither the head nor a
trailer section nor chunk extensions can grow without bound (414, 431, 413).

Lenient by llhttp's choice, and harmless to framing: extra spaces between request-line parts
(``GET  / HTTP/1.1``), CRLFs before a request line, and obs-text (bytes >= 0x80) in values.
"""

from __future__ import annotations

import collections

import httptools

from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1.limits import HTTPLimits
from threadloom.protocols.http1.request import Request, RequestBody
from threadloom.protocols.http1.speedups import bind_request, parse_request

#: Trailer fields that could change how the message is framed, routed or handled (RFC 9110
#: 6.5.1); llhttp itself only refuses Content-Length and Transfer-Encoding there.
FORBIDDEN_TRAILERS = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"trailer",
        b"connection",
        b"keep-alive",
        b"expect",
        b"te",
        b"upgrade",
        b"authorization",
        b"cookie",
    }
)
#: The only header fields on_header looks at beyond storing them. The C parser gets this set
#: at import and leaves any field named in it to llhttp and ``_watch``, bar the plain case of
#: the two it knows (a first ``host``, a ``content-length`` of digits within the limit).
_WATCHED = frozenset({b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
bind_request(_WATCHED)
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_LIMITS = HTTPLimits()


class ServerConnection:
    """Parses requests from one connection's bytes (see the module docstring)."""

    __slots__ = (
        "_began",
        "_body",
        "_body_high_water",
        "_body_left",
        "_closed",
        "_error",
        "_head",
        "_head_fed",
        "_head_size",
        "_host_seen",
        "_max_body",
        "_max_head",
        "_max_headers",
        "_max_pipelined",
        "_parser",
        "_stalled",
        "_te",
        "_trailers",
        "_url",
        "current",
        "limits",
        "peer_closed",
        "requests",
        "trailing_data",
        "upgraded",
    )

    def __init__(self, limits: HTTPLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._max_head = limits.max_header_size
        self._max_headers = limits.max_headers
        self._max_body = limits.max_body_size
        self._body_high_water = limits.body_high_water
        self._max_pipelined = limits.max_pipelined
        self.requests: collections.deque[Request] = collections.deque()
        self.trailing_data = b""
        self.current: Request | None = None
        self._body = RequestBody()  # current's body; a placeholder while there is none
        #: the bytes still owed by a Content-Length body whose head the C parser took
        self._body_left = 0
        self._head: Request | None = None
        self._url = b""
        self._head_size = 0
        self._head_fed = 0
        self._began = False
        self._host_seen = False
        self._te: bytes | None = None
        self._trailers = 0
        self._stalled = 0
        self._error: RemoteProtocolError | None = None
        self.upgraded = False
        self._closed = False
        self.peer_closed = False
        self._parser = httptools.HttpRequestParser(self)

    # -- what drivers read ----------------------------------------------------------------

    @property
    def head_started(self) -> bool:
        """Bytes of a request head that is not complete yet have arrived (408 vs silence)."""
        return self._head is not None

    @property
    def paused(self) -> bool:
        """The driver should stop reading until the app consumes what is queued."""
        if len(self.requests) > self._max_pipelined:
            return True
        return self.current is not None and self._body.buffered > self._body_high_water

    # -- bytes in ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Parse ``data`` (``b""``: the peer closed). Raises RemoteProtocolError when invalid.

        Between messages, clean and complete requests are parsed in C (``_speedups.c``);
        from the first byte it declines on, llhttp takes over, at a message boundary.
        (Written out here, not in a method of its own: every request comes this way.)
        """
        if self._error is not None:
            raise self._error
        if self.upgraded or self._closed or not data:
            self._outside_http(data)
            return
        if self._body_left:
            data = self._count_body(data)
            if not data or self._closed:
                return
        if self._head is None and self.current is None and parse_request is not None:
            pos = 0
            while True:
                parsed = parse_request(data, pos, self._max_head, self._max_headers, self._max_body)
                if parsed is None:
                    break
                request, pos = parsed
                self.requests.append(request)
                if not request.body.complete:  # the head and the first of its body: the
                    self.current = request  # rest is counted (_count_body), not parsed
                    self._body = request.body
                    self._body_left = (request.content_length or 0) - request.body.received
                    return
                if not request.keep_alive:
                    self._closed = True  # what follows will never be answered
                    return
                if pos == len(data):
                    return
            if pos:
                data = data[pos:]
        if len(data) <= self._max_head:
            self._feed(data)
        else:
            self._feed_slices(data)

    def _count_body(self, data: bytes) -> bytes:
        """Body bytes of a Content-Length request the C parser began (the framing was
        checked with its head: only the count is left); returns what follows the body."""
        size = min(len(data), self._body_left)
        chunk = data if size == len(data) else data[:size]
        body = self._body
        body.chunks.append(chunk)
        body.buffered += size
        body.received += size
        self._body_left -= size
        if not self._body_left:
            self.on_message_complete()
        return data[size:] if size < len(data) else b""

    def _feed_slices(self, data: bytes) -> None:
        """Feed a big read in slices so that an open head is measured every max_header_size."""
        step = self._max_head
        for start in range(0, len(data), step):
            self._feed(data[start : start + step])
            if self.upgraded:
                self.trailing_data += data[start + step :]
                return
            if self._closed:
                return

    def _feed(self, data: bytes) -> None:
        current = self.current
        received = self._body.received
        self._began = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = True
            self.trailing_data = data[upgrade.args[0] :]
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, RemoteProtocolError):
                cause = RemoteProtocolError(f"malformed request: {cause or exc}")
            self._fail(cause)
        except httptools.HttpParserError as exc:
            if not self._closed:  # else: bytes after `Connection: close`, never answered
                self._fail(RemoteProtocolError(f"malformed request: {exc}"))
        if self._head is not None:
            # The part of `data` where a head began is only known once the head completes
            # (on_header counts it then), so an open head is refused at most one slice late.
            if not self._began:  # the whole of `data` belongs to the open head
                self._head_fed += len(data)
                self._check_open_head()
        elif current is not None and current is self.current and self._body.received == received:
            # a chunked body that made no progress: chunk extensions or trailers piling up
            self._stalled += len(data)
            if self._stalled > self._max_head:
                self._fail(RemoteProtocolError("chunk metadata or trailers too large", 431))
        else:
            self._stalled = 0

    def decline_upgrade(self) -> None:
        """The engine answered an Upgrade request without switching: go on parsing HTTP.

        llhttp cannot resume after an upgrade, so a fresh parser takes ``trailing_data``.
        """
        if not self.upgraded:
            return
        self.upgraded = False
        self._parser = httptools.HttpRequestParser(self)
        data, self.trailing_data = self.trailing_data, b""
        if data:
            self.receive_data(data)
        if self.peer_closed:
            self._end_of_input()

    def _outside_http(self, data: bytes) -> None:
        """Bytes after an upgrade (kept), after a closing request (dropped), or EOF."""
        if not data:
            self._end_of_input()
        elif self.upgraded:
            self.trailing_data += data

    def _end_of_input(self) -> None:
        self.peer_closed = True
        if self.current is not None:  # a driver waiting for the rest would wait for ever
            self._fail(RemoteProtocolError("connection closed in the middle of a request body"))
        if self._head is not None:
            self._head = None
            self._fail(RemoteProtocolError("connection closed in the middle of a request head"))

    def _fail(self, error: RemoteProtocolError) -> None:
        """Kill the connection: the body being received will never complete."""
        self._error = error
        if self.current is not None:
            self._body.truncated = True
            self.current = None
        raise error

    def _check_open_head(self) -> None:
        """A head spans reads: bound the bytes httptools buffers for it internally."""
        if self._head_fed > self._max_head:  # a target alone over it already raised 414
            self._fail(RemoteProtocolError("request head too large", 431))

    # -- httptools callbacks (called from inside feed_data) -------------------------------

    def on_message_begin(self) -> None:
        self._head = Request()
        self._began = True
        self._url = b""
        self._head_size = 0
        self._head_fed = 0
        self._host_seen = False
        self._te = None
        self._trailers = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            raise RemoteProtocolError("request-target too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        head = self._head
        if head is None:
            self._on_trailer(name)
            return
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp strips leading OWS, not trailing
        headers = head.headers
        headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head or len(headers) > self._max_headers:
            raise RemoteProtocolError("request head too large or too many fields", 431)
        if name in _WATCHED:
            self._watch(head, name, value)

    def _watch(self, head: Request, name: bytes, value: bytes) -> None:
        """The per-field checks llhttp leaves to us (module docstring)."""
        if name == b"host":
            if self._host_seen:
                raise RemoteProtocolError("duplicate Host header")
            self._host_seen = True
        elif name == b"content-length":
            if head.content_length is not None or not value.isdigit():
                raise RemoteProtocolError(f"invalid Content-Length {value[:40]!r}")
            if len(value) > 19 or int(value) > self._max_body:
                raise RemoteProtocolError("request body too large", 413)
            head.content_length = int(value)
        elif name == b"transfer-encoding":
            if self._te is not None:
                raise RemoteProtocolError("repeated Transfer-Encoding header")
            self._te = value
        elif name == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        else:
            head.upgrade = value

    def _on_trailer(self, name: bytes) -> None:
        self._trailers += 1
        if self._trailers > self._max_headers:
            raise RemoteProtocolError("too many trailer fields", 431)
        if name.lower() in FORBIDDEN_TRAILERS:
            raise RemoteProtocolError(f"forbidden trailer field {name[:40]!r}")

    def on_headers_complete(self) -> None:
        head = self._head
        assert head is not None  # llhttp calls on_message_begin first
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":  # noqa: PLR1714 - cheaper than a set here
            if version == "0.9":
                raise RemoteProtocolError("request line without an HTTP version")
            raise RemoteProtocolError(f"HTTP/{version} is not supported", 505)
        head.http_version = version
        head.method = parser.get_method().decode("ascii")
        head.set_target(self._url)
        head.keep_alive = parser.should_keep_alive()
        if self._te is not None:
            head.chunked = _check_transfer_encoding(self._te, version)
        if not self._host_seen and version == "1.1":
            raise RemoteProtocolError("HTTP/1.1 request without Host")
        if head.upgrade is not None and not parser.should_upgrade():
            head.upgrade = None
        self._head = None
        self._url = b""
        self.current = head
        self._body = head.body
        self.requests.append(head)

    def on_body(self, data: bytes) -> None:
        body = self._body
        body.chunks.append(data)
        body.buffered += len(data)
        body.received += len(data)
        if body.received > self._max_body:
            raise RemoteProtocolError("request body too large", 413)

    def on_message_complete(self) -> None:
        current = self.current
        if current is not None:
            self._body.complete = True
            self.current = None
            if not current.keep_alive:
                self._closed = True


def _check_transfer_encoding(value: bytes, version: str) -> bool:
    """Accept exactly ``chunked`` as the only coding; say why anything else is refused."""
    if version == "1.0":
        raise RemoteProtocolError("Transfer-Encoding on an HTTP/1.0 request")
    if value.lower() == b"chunked":
        return True
    codings = [coding.strip(b" \t").lower() for coding in value.split(b",")]
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise RemoteProtocolError(f"invalid Transfer-Encoding {value[:40]!r}")
    if any(not coding or coding.translate(None, _TCHAR) for coding in codings):
        raise RemoteProtocolError(f"invalid Transfer-Encoding {value[:40]!r}")
    raise RemoteProtocolError(f"unsupported transfer coding {value[:40]!r}", 501)
