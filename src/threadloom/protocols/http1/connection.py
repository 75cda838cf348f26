"""The server side of one HTTP/1.1 connection: bytes in, :class:`Request` objects out.

Theory of operation
-------------------
State: an ``httptools`` (llhttp) parser, the request whose head is being parsed, the request
whose body is being received (``current``), and ``requests``, the queue of requests whose
heads are complete and which the driver has not taken yet (pipelining keeps them in order).

Who changes it: only :meth:`ServerConnection.receive_data`. The driver must then

* take ready requests from ``requests`` (``popleft``), in order, and answer each;
* read a request's body with ``request.body.take()`` (it keeps filling while bytes arrive);
* stop reading the socket while :attr:`paused` is true (flow control for bodies and pipelining);
* on :class:`RemoteProtocolError`, answer ``exc.status`` (``error_response``) and close: after
  an error the connection is dead and a second call raises again. Nothing that follows a bad
  request is ever parsed as a request of its own, so pipelining can never desynchronise.

Strictness. llhttp (strict mode, as httptools builds it) already refuses: Content-Length with
Transfer-Encoding, duplicate or non-decimal Content-Length (``+10``, ``0x0a``, ``1_0``,
``10, 10``) and its overflow, ``chunked`` not final or repeated, bad chunk sizes (``0x1``,
``+1``, ``-1``, overflow), bare CR/LF/NUL in chunk extensions, bare-LF line endings, obs-fold,
whitespace before the colon, control characters in values, a missing CRLF after chunk data,
and Content-Length in trailers. This module adds: Transfer-Encoding on HTTP/1.0 (400), codings
other than ``chunked`` (501), HTTP versions other than 1.0 and 1.1 (505), a missing or
duplicate Host (400), forbidden trailer fields (400), and the size limits of
:class:`HTTPLimits` (414, 431, 413), counted as bytes arrive so nothing grows without bound.
"""

from __future__ import annotations

import collections

import httptools

from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1.limits import HTTPLimits

#: Trailer fields that could change how the message is framed or routed (RFC 9110 6.5.1).
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
        b"expect",
        b"te",
        b"upgrade",
    }
)


class RequestBody:
    """The streaming body of one request: chunks arrive, the app takes them."""

    __slots__ = ("buffered", "chunks", "complete", "received", "truncated")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.received = 0
        self.complete = False
        self.truncated = False

    def take(self, n: int = -1) -> bytes:
        """Pop up to ``n`` buffered bytes (all of them if ``n`` is negative)."""
        chunks = self.chunks
        if not chunks:
            return b""
        if n < 0 or n >= self.buffered:
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts = []
            need = n
            while need:
                chunk = chunks.popleft()
                if len(chunk) > need:
                    chunks.appendleft(chunk[need:])
                    chunk = chunk[:need]
                parts.append(chunk)
                need -= len(chunk)
            data = b"".join(parts)
        self.buffered -= len(data)
        return data


class Request:
    """One parsed request head, and its body as it arrives."""

    __slots__ = (
        "body",
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition(b"?")
        self.path = path.partition(b"#")[0]
        self.query = query.partition(b"#")[0]
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = False
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade: bytes | None = None
        self.body = RequestBody()


class ServerConnection:
    """Parses requests from one connection's bytes (see the module docstring)."""

    def __init__(self, limits: HTTPLimits | None = None) -> None:
        self.limits = limits or HTTPLimits()
        self.requests: collections.deque[Request] = collections.deque()
        self.trailing_data = b""
        self.current: Request | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._head_fed = 0
        self._in_head = False
        self._in_trailers = False
        self._error: RemoteProtocolError | None = None
        self._upgraded = False
        self._eof = False

    # -- what drivers read ----------------------------------------------------------------

    @property
    def head_started(self) -> bool:
        """Bytes of a request head that is not complete yet have arrived."""
        return self._in_head

    @property
    def paused(self) -> bool:
        """The driver should stop reading until the app consumes what is queued."""
        limits = self.limits
        if len(self.requests) > limits.max_pipelined:
            return True
        current = self.current
        return current is not None and current.body.buffered > limits.body_high_water

    @property
    def peer_closed(self) -> bool:
        return self._eof

    @property
    def upgraded(self) -> bool:
        """An Upgrade (or CONNECT) request ended parsing; later bytes are in trailing_data."""
        return self._upgraded

    # -- bytes in ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Parse ``data`` (``b""``: the peer closed). Raises RemoteProtocolError when invalid."""
        if self._error is not None:
            raise self._error
        if self._upgraded:
            self.trailing_data += data
            self._eof = self._eof or not data
            return
        if not data:
            self._end_of_input()
            return
        head_was_open = self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded = True
            self.trailing_data = data[upgrade.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(
                cause if isinstance(cause, RemoteProtocolError) else RemoteProtocolError(str(exc))
            )
        except httptools.HttpParserError as exc:
            self._fail(RemoteProtocolError(f"malformed request: {exc}"))
        if self._in_head:
            self._check_open_head(len(data) if head_was_open else 0)

    def _end_of_input(self) -> None:
        self._eof = True
        if self.current is not None:
            self.current.body.truncated = True
            self.current = None
        if self._in_head:
            self._fail(RemoteProtocolError("connection closed in the middle of a request head"))

    def _fail(self, error: RemoteProtocolError) -> None:
        self._error = error
        raise error

    def _check_open_head(self, fed: int) -> None:
        """A head spans reads: bound the bytes httptools buffers for it internally."""
        self._head_fed += fed
        if self._head_fed > self.limits.max_header_size:
            status = 414 if not self._headers and self._url_size else 431
            self._fail(RemoteProtocolError("request head too large", status))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._in_trailers = False
        self._url = []
        self._url_size = 0
        self._headers = []
        self._head_size = 0
        self._head_fed = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > self.limits.max_header_size:
            raise RemoteProtocolError("request-target too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_trailers:
            if name.lower() in FORBIDDEN_TRAILERS:
                raise RemoteProtocolError(f"forbidden trailer field {name!r}")
            return
        headers = self._headers
        headers.append((name.lower(), value.strip(b" \t")))
        self._head_size += len(name) + len(value) + 4
        if len(headers) > self.limits.max_headers:
            raise RemoteProtocolError("too many header fields", 431)
        if self._head_size + self._url_size > self.limits.max_header_size:
            raise RemoteProtocolError("request head too large", 431)

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":  # noqa: PLR1714 - fast path comparison
            raise RemoteProtocolError(f"HTTP/{version} is not supported", 505)
        target = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        request = Request(
            parser.get_method().decode("ascii"),
            target,
            version,
            self._headers,
            parser.should_keep_alive(),
        )
        self._inspect_headers(request)
        self._in_head = False
        self._in_trailers = True
        self._url = []
        self.current = request
        self.requests.append(request)

    def _inspect_headers(self, request: Request) -> None:
        """The checks llhttp leaves to us, in one pass over the few headers that matter."""
        host_seen = False
        for name, value in request.headers:
            if name == b"host":
                if host_seen:
                    raise RemoteProtocolError("duplicate Host header")
                host_seen = True
            elif name == b"content-length":
                request.content_length = int(value)
                if request.content_length > self.limits.max_body_size:
                    raise RemoteProtocolError("request body too large", 413)
            elif name == b"transfer-encoding":
                _check_transfer_encoding(request, value)
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    request.expect_continue = True
            elif name == b"upgrade":
                request.upgrade = value
        if not host_seen and request.http_version == "1.1":
            raise RemoteProtocolError("HTTP/1.1 request without Host")
        if request.upgrade is not None and not self._parser.should_upgrade():
            request.upgrade = None

    def on_body(self, body: bytes) -> None:
        current = self.current
        assert current is not None
        current.body.chunks.append(body)
        current.body.buffered += len(body)
        current.body.received += len(body)
        if current.body.received > self.limits.max_body_size:
            raise RemoteProtocolError("request body too large", 413)

    def on_message_complete(self) -> None:
        current = self.current
        if current is not None:
            current.body.complete = True
        self.current = None
        self._in_trailers = False


def _check_transfer_encoding(request: Request, value: bytes) -> None:
    if request.http_version == "1.0":
        raise RemoteProtocolError("Transfer-Encoding on an HTTP/1.0 request")
    if value.lower() != b"chunked":
        raise RemoteProtocolError(f"unsupported transfer coding {value!r}", 501)
    request.chunked = True
