"""HTTP/2 on the asyncio model: an ``asyncio.Protocol`` driving :class:`H2Core`.

Theory of operation
-------------------
:class:`~threadloom.engine.http_aio.HTTPProtocol` hands a connection that opens with the
HTTP/2 preface to an :class:`H2Protocol` (``transport.set_protocol``). The loop thread owns
the connection and the core: ``data_received`` feeds it, one timer aims at its deadline,
and every frame it makes goes to the transport in order (one writer): at once, except
while a read is handled, whose frames (the answers of the ASGI apps it started) go in one
write at its end. Each stream is an exchange of its own:

* an ASGI app runs on the loop for each stream, at once (eagerly, as over HTTP/1.1), its
  ``receive`` taking body bytes as they come (the window given back as it takes them) and
  its ``send`` waiting while the stream's queued body or the transport is over its bound;
  an ``http.response.pathsend``'s file is read a slice at a time under the same bound
  (:meth:`H2Protocol.send_file`), never whole;
* a WSGI app runs on the model's bounded pool. Its thread reaches the loop only through
  :class:`LoopStream`, each call run on the loop and waited for
  (``run_coroutine_threadsafe``), so the core is only ever touched by the loop thread.

Every wait (for body bytes, for a window, for the transport) ends after ``--timeout-io``
without progress, and the stream is reset; a connection whose windows stay shut is dropped
by the core's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from threadloom.engine.asgi_run import start_eagerly
from threadloom.engine.body import EMPTY_INPUT, BodyReader
from threadloom.engine.h2_core import H2Core, H2Stream
from threadloom.engine.http1_core import HTTPSettings
from threadloom.engine.outbox import STREAM_QUEUE_MAX, FileSegment, SendBudget
from threadloom.engine.session import AsyncRuntime
from threadloom.engine.sockio import reset_on_close
from threadloom.engine.ws import WSSettings, h2_handshake
from threadloom.engine.ws_aio import ASGIWebSocketCycle, AsyncWebSocket, serve_bare_handler
from threadloom.errors import LocalProtocolError
from threadloom.interfaces.asgi import (
    PATHSEND,
    Message,
    check_pathsend_order,
    forward_and_identify,
    http_scope,
    log_app_end,
    open_pathsend,
    start_status,
)
from threadloom.interfaces.static import send_over_stream
from threadloom.protocols.http1 import Request, RequestBody
from threadloom.protocols.http2 import response_headers
from threadloom.protocols.websocket import (
    HandshakeError,
    WebSocketConnection,
    check_connect_request,
)
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

#: The transport's high-water mark: frames beyond it wait in the core, cut to windows.
HIGH_WATER = 64 * 1024
#: How much of a pathsend's file is read at once (the core cuts it into DATA frames).
FILE_SLICE = 64 * 1024


class StreamGone(OSError):
    """The stream was reset or the connection lost."""


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection on the event loop (see the module docstring)."""

    def __init__(
        self,
        settings: HTTPSettings,
        runtime: AsyncRuntime,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        addr: Any,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.loop = loop
        self.done = done
        self.addr = addr
        self.core = H2Core(settings, time.monotonic(), addr, websockets=settings.ws is not None)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.write_paused = False
        self.tick: asyncio.Future[None] = loop.create_future()  # resolved on any change
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when ``timer`` fires (loop time)
        #: a read is being handled: what the core frames meanwhile is written once, at its
        #: end, so the responses of the streams it started go out in one write
        self.corked = False
        self.budget = SendBudget(settings.timeout_io, settings.min_send_rate)
        self.stall_timer: asyncio.TimerHandle | None = None  # the reader's SendBudget
        self.websockets: dict[int, StreamWebSocketHost] = {}  # streams that carry one
        self.running = 0  # exchanges started and not yet finished
        settings.h2_connections.add(self)

    # -- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self._flush()
        self._arm()

    def data_received(self, data: bytes) -> None:
        core = self.core
        self.corked = True
        try:
            alive = core.feed(data, time.monotonic())
            self._changed()
            for stream in core.take_ready():
                self._start(stream)
            if self.websockets:
                self._feed_websockets()
        finally:
            self.corked = False
        self._flush()
        if not alive or core.done:
            self._close()
        else:
            self._arm()

    def eof_received(self) -> bool:
        self.data_received(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.core._lose_all()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._changed()
        self._feed_websockets()  # (each sees its stream gone)
        self._maybe_done()

    def _maybe_done(self) -> None:
        """The connection is over for the model once it is lost and no exchange of it
        still runs (a WSGI app on the pool finishes, and is counted and logged, first)."""
        if self.lost and self.running == 0 and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        """The peer reads slower than we write: stop reading too, so that its PINGs and
        SETTINGS cannot make us queue answers without bound (CVE-2019-9512, -9515), and
        hold it to the slow-read rule (SendBudget: --timeout-io, then --min-send-rate)."""
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self.stall_timer is None:
            self.budget.behind(self.loop.time())
            self._check_reader()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()
        self._changed()

    def _check_reader(self) -> None:
        """While the transport is paused: drop the peer once its SendBudget is spent."""
        self.stall_timer = None
        if self.lost or not self.write_paused or self.transport is None:
            return
        deadline = self.budget.deadline()
        if self.loop.time() < deadline:
            self.stall_timer = self.loop.call_at(deadline, self._check_reader)
            return
        log.info("%s reads its responses too slowly (--min-send-rate): dropped", self.addr)
        STATS.slow_reader()
        reset_on_close(self.transport.get_extra_info("socket"))
        self.transport.abort()

    # -- the connection ------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand the transport what the core framed (after every call into the core); while
        a read is handled (``corked``), once at its end instead: one write for every stream
        it started, not one per response (the streams an ASGI app answers at once)."""
        if not self.corked:
            self._write_now()

    def _write_now(self) -> None:
        data = self.core.output()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _changed(self) -> None:
        """Wake whoever waits for body bytes, a window or the transport."""
        if not self.tick.done():
            self.tick.set_result(None)
            self.tick = self.loop.create_future()

    async def wait_until(self, stream: H2Stream, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; StreamGone if the stream goes or nothing makes it so
        within ``--timeout-io`` (the stream is then reset)."""
        deadline = self.loop.time() + self.settings.timeout_io
        while not ready():
            if stream.reset or self.lost:
                raise StreamGone("the stream was reset or the connection lost")
            left = deadline - self.loop.time()
            if left <= 0:
                self.core.fail(stream)
                self._flush()
                raise StreamGone("the stream made no progress for --timeout-io")
            await asyncio.wait((self.tick,), timeout=left)
        if stream.reset or self.lost:
            raise StreamGone("the stream was reset or the connection lost")

    def _arm(self) -> None:
        """Aim the timer at the core's deadline. A timer that fires no later is kept (it
        finds the deadline moved and aims again), so that a busy connection, whose idle
        deadline moves with every exchange, does not make and cancel a timer for each."""
        deadline = self.core.deadline()
        if deadline is None or self.lost:
            return  # (an armed timer fires, finds nothing due, and stops)
        at = self.loop.time() + (deadline - time.monotonic())
        timer = self.timer
        if timer is not None:
            if self.timer_at <= at:
                return
            timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self.timer = None
        deadline = self.core.deadline()
        if deadline is None or self.lost:
            return
        if deadline > time.monotonic():
            self._arm()
            return
        self.core.expire(time.monotonic())
        self._flush()
        self._changed()
        self._close()

    def _close(self) -> None:
        self._write_now()  # (what a corked read framed goes first)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():  # close() waits for a flush: bound it
                self.loop.call_later(self.settings.timeout_io, transport.abort)

    def going_away(self) -> None:
        """The server is stopping: GOAWAY now; streams in flight finish."""
        self.core.going_away()
        self._flush()
        if self.core.done:
            self._close()

    @property
    def idle(self) -> bool:
        return self.core.idle

    # -- exchanges ---------------------------------------------------------------------------

    def _start(self, stream: H2Stream) -> None:
        self.running += 1  # until finished()
        request = stream.request
        connect = request.method == "CONNECT"
        static = self.settings.static
        to_static = not connect and static is not None and static.claims(request)
        on_pool = to_static or (not connect and self.settings.asgi is None)
        began = time.perf_counter()
        runtime = self.runtime
        if (began > runtime.admit_until or on_pool) and not runtime.admits(on_pool, began):
            self.core.overloaded(stream, time.monotonic())  # (the model logged the episode)
            self.finished(stream, 503, 0, 0.0)
            return
        if connect:
            self._connect(stream)
            return
        if to_static:
            stream.began = began
            future = asyncio.ensure_future(self.runtime.run_sync(self._run_static, stream))
            future.add_done_callback(lambda done: self._wsgi_done(stream, done))
            return
        if self.settings.asgi is not None:
            ASGIStream(self, stream).run()
            return
        stream.began = began
        future = asyncio.ensure_future(self.runtime.run_sync(self._run_wsgi, stream))
        future.add_done_callback(lambda done: self._wsgi_done(stream, done))

    def _connect(self, stream: H2Stream) -> None:
        """An extended CONNECT (RFC 8441): a WebSocket on this stream, for an ASGI app's
        websocket scope or a bare handler; any other CONNECT is not served (501)."""
        request = stream.request
        if self.settings.ws is None or request.upgrade != b"websocket":
            self.core.respond(stream, response_headers(501, [], 0), b"", True, time.monotonic())
            self.finished(stream, 501, 0, 0.0)
            return
        stream.began = time.perf_counter()
        host = StreamWebSocketHost(self, stream)
        if self.settings.asgi is not None:
            ASGIWebSocketCycle(host, request).run()
        else:
            serve_bare_handler(host, request)

    def _feed_websockets(self) -> None:
        for host in list(self.websockets.values()):
            host.pump()

    def _run_wsgi(self, stream: H2Stream) -> Any:
        """On a pool thread: the WSGI app, talking to the loop through a LoopStream."""
        runner = self.settings.runner
        assert runner is not None
        body = stream.request.body
        reader = (
            EMPTY_INPUT
            if body.complete and not body.buffered
            else BodyReader(stream.request, LoopBody(self, stream))
        )
        return runner.run_h2(stream.request, reader, LoopStream(self, stream), self.addr)

    def _run_static(self, stream: H2Stream) -> Any:
        """On a pool thread: a ``--static`` file, read a piece at a time (the loop sends)."""
        static = self.settings.static
        assert static is not None
        answer = static.answer(stream.request)
        try:
            sent = send_over_stream(answer, LoopStream(self, stream))
        except OSError:
            sent = 0
        return _StaticOutcome(answer.status, sent)

    def _wsgi_done(self, stream: H2Stream, done: asyncio.Future[Any]) -> None:
        elapsed = time.perf_counter() - stream.began
        if done.cancelled() or done.exception() is not None:
            log.error("HTTP/2 stream failed unexpectedly", exc_info=done.exception())
            self.core.fail(stream)
            self.finished(stream, 500, 0, elapsed)
            return
        outcome = done.result()
        self.finished(
            stream, outcome.status, outcome.sent, elapsed, outcome.remote, outcome.request_id
        )

    def finished(
        self,
        stream: H2Stream,
        status: int,
        sent: int,
        elapsed: float,
        remote: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.core.finish(stream, status, sent, elapsed, time.monotonic(), remote, request_id)
        STATS.h2_request()
        self.running -= 1
        if self.lost:
            self._maybe_done()
        elif self.core.done:
            self._close()
        elif not self.corked:  # (else the read's end writes and arms)
            self._flush()
            self._arm()

    # -- a stream's output and input (loop thread) -----------------------------------------

    async def respond(
        self, stream: H2Stream, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        self.respond_now(stream, headers, body, end)
        if not end:
            await self.backpressure(stream)

    async def send(self, stream: H2Stream, data: bytes, end: bool) -> None:
        self.send_now(stream, data, end)
        if not end:
            await self.backpressure(stream)

    def respond_now(
        self, stream: H2Stream, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        """:meth:`respond` without the wait (an ASGI app calls it on the loop: a whole
        response then costs no coroutine); StreamGone if the stream was reset."""
        if not self.core.respond(stream, headers, body, end, time.monotonic()):
            raise StreamGone("the stream was reset")
        self._flush()

    def send_now(self, stream: H2Stream, data: bytes, end: bool) -> None:
        """:meth:`send` without the wait."""
        if not self.core.send_body(stream, data, end, time.monotonic()):
            raise StreamGone("the stream was reset")
        self._flush()

    async def send_file(
        self, stream: H2Stream, headers: list[tuple[bytes, bytes]], segment: FileSegment
    ) -> int:
        """``headers``, then the segment's bytes as the stream's whole body; the bytes sent.

        Each slice is read only once what was queued before it is within the stream's
        bound (``respond`` and ``send`` wait for the peer's window and the transport), so a
        file costs a few slices of memory whatever its size. A file that ends before its
        promised length resets the stream (StreamGone). The caller closes the segment.
        """
        if not segment.remaining:
            await self.respond(stream, headers, b"", True)
            return 0
        sent = 0
        while segment.remaining:
            try:
                piece = segment.read(FILE_SLICE)
            except OSError as exc:
                log.warning("%s: a file being sent failed: %s; stream reset", self.addr, exc)
                self.reset(stream)
                raise StreamGone("the file could not be read to its end") from None
            end = not segment.remaining
            if sent:
                await self.send(stream, piece, end)
            else:
                await self.respond(stream, headers, piece, end)
            sent += len(piece)
        return sent

    async def backpressure(self, stream: H2Stream) -> None:
        """A streamed response waits while too much of it waits (window or transport):
        written now even in a corked read, so that the transport's bound holds."""
        self._write_now()
        await self.wait_until(
            stream,
            lambda: self.core.queued(stream) <= STREAM_QUEUE_MAX and not self.write_paused,
        )

    async def more_body(self, stream: H2Stream) -> bool:
        """Wait for more of the stream's body; False at its end or when it stalls."""
        body = stream.request.body
        self.core.continue_(stream)
        self._flush()
        try:
            await self.wait_until(stream, lambda: bool(body.buffered or body.complete))
        except StreamGone:
            return False
        return bool(body.buffered)

    def take(self, stream: H2Stream, size: int) -> bytes:
        data = self.core.take_body(stream, size)
        self._flush()
        return data

    def reset(self, stream: H2Stream) -> None:
        self.core.fail(stream)
        self._flush()


class ASGIStream:
    """One stream's ``receive`` and ``send`` for an ASGI app, on the loop."""

    __slots__ = ("body_done", "complete", "headers", "proto", "sent", "status", "stream")

    def __init__(self, proto: H2Protocol, stream: H2Stream) -> None:
        self.proto = proto
        self.stream = stream
        self.status = 0
        self.headers: Any = ()
        self.complete = False
        self.sent = 0
        self.body_done = False

    def run(self) -> None:
        asgi = self.proto.settings.asgi
        assert asgi is not None
        self.stream.began = time.perf_counter()
        scope = http_scope(asgi.template, self.stream.request, self.proto.addr)
        if asgi.proxies is not None or asgi.request_ids:
            request_id = forward_and_identify(scope, asgi.proxies, asgi.request_ids)
            if request_id is not None:
                self.headers = [(b"x-request-id", request_id.encode("ascii"))]
        start_eagerly(asgi.app(scope, self.receive, self.send), self.app_done)

    async def receive(self) -> Message:
        proto, stream = self.proto, self.stream
        body = stream.request.body
        while not self.body_done:
            if stream.reset or proto.lost or body.truncated:
                break
            if body.buffered or body.complete:
                data = proto.take(stream, -1)
                self.body_done = body.complete and not body.buffered
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if not await proto.more_body(stream) and not body.complete:
                break  # reset, lost or stalled (an END_STREAM alone is the body's end)
        while not (self.complete or stream.reset or proto.lost):
            await proto.tick  # the whole body was delivered: wait for the end
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        proto, stream = self.proto, self.stream
        if stream.reset or proto.lost:
            raise StreamGone("the client went away")
        kind = message["type"]
        if kind == "http.response.body":
            sent = self._body(message)
            if not self.complete:  # a streamed response waits while too much of it waits
                await proto.backpressure(stream)
            self.sent += sent
        elif kind == "http.response.start":
            self._start_response(message)
        elif kind == PATHSEND:
            await self._pathsend(message)
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} for an http scope")

    def _start_response(self, message: Message) -> None:
        self.status = start_status(message, self.status)
        self.headers = [*(message.get("headers") or ()), *self.headers]

    def _body(self, message: Message) -> int:
        """Frame an ``http.response.body`` (never waits: :meth:`send` does); the bytes
        it carried."""
        if not self.status:
            raise LocalProtocolError("http.response.body sent before http.response.start")
        if self.complete:
            raise LocalProtocolError("http.response.body sent after the response completed")
        data = message.get("body", b"")
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise LocalProtocolError("http.response.body needs bytes")
            data = bytes(data)
        more = bool(message.get("more_body", False))
        length = None if more else len(data)
        stream = self.stream
        if stream.request.method == "HEAD":
            data = b""
        if not stream.started:
            headers = response_headers(self.status, self.headers, length)  # may refuse
            self.complete = not more
            self.proto.respond_now(stream, headers, data, not more)
        else:
            self.complete = not more
            self.proto.send_now(stream, data, not more)
        return len(data)

    async def _pathsend(self, message: Message) -> None:
        """The file a pathsend names as the stream's whole body, opened now and closed
        whatever happens; its size is the content-length (an app's own must agree)."""
        check_pathsend_order(self.status, self.complete, self.stream.started)
        fd, size = open_pathsend(message)
        segment = FileSegment(fd, 0, size)
        try:
            bodiless = self.stream.request.method == "HEAD" or self.status in (204, 304)
            headers = response_headers(self.status, self.headers, size, exact=not bodiless)
            self.complete = True
            if bodiless:
                segment.remaining = 0
            self.sent += await self.proto.send_file(self.stream, headers, segment)
        finally:
            segment.close()

    def app_done(self, error: BaseException | None) -> None:
        proto, stream = self.proto, self.stream
        elapsed = time.perf_counter() - stream.began
        if error is not None or not self.complete:  # (else there is nothing to say)
            gone = stream.reset or proto.lost
            log_app_end(stream.request, error, StreamGone, self.complete, gone)
        if self.complete:
            proto.finished(stream, self.status, self.sent, elapsed)
            return
        if not stream.started and not (stream.reset or proto.lost):
            text = b"Internal Server Error\n"
            headers = response_headers(500, [("content-type", "text/plain")], len(text))
            proto.core.respond(stream, headers, text, True, time.monotonic())
            proto.finished(stream, 500, 0, elapsed)
            return
        proto.reset(stream)
        proto.finished(stream, self.status or 500, self.sent, elapsed)


class LoopStream:
    """A WSGI app's stream, from its pool thread: every call runs on the loop."""

    __slots__ = ("proto", "stream")

    def __init__(self, proto: H2Protocol, stream: H2Stream) -> None:
        self.proto = proto
        self.stream = stream

    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.proto.loop).result()

    # the StreamSink the WSGI runner writes to
    def respond(self, headers: list[tuple[bytes, bytes]], body: bytes, end: bool) -> None:
        self._on_loop(self.proto.respond(self.stream, headers, body, end))

    def send(self, data: bytes, end: bool) -> None:
        self._on_loop(self.proto.send(self.stream, data, end))

    def reset(self) -> None:
        self.proto.loop.call_soon_threadsafe(self.proto.reset, self.stream)


class LoopBody(LoopStream):
    """``wsgi.input``'s source for a WSGI app's stream, from its pool thread."""

    __slots__ = ()

    def receive_more(self, body: RequestBody) -> bool:
        return bool(self._on_loop(self.proto.more_body(self.stream)))

    def send(self, data: bytes, end: bool = False) -> None:
        """``100 Continue``: sent by more_body() when the app first waits (framed there)."""

    def take(self, body: RequestBody, size: int) -> bytes:
        return bytes(self._on_loop(_call(self.proto.take, self.stream, size)))


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class StreamWebSocketHost:
    """An HTTP/2 stream as the connection of one WebSocket (RFC 8441): what
    :mod:`threadloom.engine.ws_aio` needs of its host (:class:`WSHost`), so the same
    WebSocket layer, ASGI cycle and handlers run over it. The stream's DATA carries the
    WebSocket frames both ways; its window is given back only as the WebSocket takes the
    bytes (and not while it has too many messages unread); the WebSocket's end ends the
    stream."""

    def __init__(self, proto: H2Protocol, stream: H2Stream) -> None:
        self.proto = proto
        self.stream = stream
        self.loop = proto.loop
        self.addr = proto.addr
        self.runtime = proto.runtime
        self.settings = proto.settings
        self.ws: AsyncWebSocket | None = None
        self.paused = False
        self.ended = False  # our side of the stream is over
        self.gone = False  # the WebSocket was told the stream is gone
        self.counted = False  # finished() ran (once)
        self.sent = 0

    @property
    def lost(self) -> bool:
        return self.stream.reset or self.proto.lost or self.ended

    # -- the handshake (the host's part of it) -------------------------------------------------

    def is_websocket_upgrade(self, request: Request) -> bool:
        return request.method == "CONNECT" and request.upgrade == b"websocket"

    def check_websocket(self, request: Request) -> None:
        check_connect_request(request.method, request.upgrade, request.headers)

    def accept_websocket(
        self,
        request: Request,
        settings: WSSettings,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebSocketConnection:
        fields, conn = h2_handshake(request, settings, subprotocol, extra_headers)
        headers = response_headers(200, fields)
        if not self.proto.core.respond(self.stream, headers, b"", False, time.monotonic()):
            raise StreamGone("the stream was reset")
        self.proto._flush()
        return conn

    def refuse_websocket(self, request: Request, exc: HandshakeError) -> None:
        body = (str(exc) + "\n").encode("utf-8", "replace")
        fields: list[tuple[str | bytes, str | bytes]] = [
            ("content-type", "text/plain; charset=utf-8"),
            *exc.extra_headers,
        ]
        headers = response_headers(exc.status, fields, len(body))
        self.proto.core.respond(self.stream, headers, body, True, time.monotonic())
        self.finished(request, exc.status, len(body), False)

    def deny_websocket(self, request: Request, status: int) -> None:
        headers = response_headers(status, [("content-type", "text/plain")], 0)
        self.proto.core.respond(self.stream, headers, b"", True, time.monotonic())
        self.finished(request, status, 0, False)

    def start_websocket(self, websocket: AsyncWebSocket) -> AsyncWebSocket:
        self.ws = websocket
        self.proto.websockets[self.stream.id] = self
        self.pump()
        return websocket

    # -- bytes -----------------------------------------------------------------------------------

    def pump(self) -> None:
        """Hand the WebSocket what the stream brought (the window goes back as it takes
        it), or tell it the stream is gone."""
        ws, stream = self.ws, self.stream
        if ws is None or self.gone:
            return
        body = stream.request.body
        if body.buffered and not self.paused and not stream.reset:
            ws.feed(self.proto.take(stream, -1))
        if stream.reset or self.proto.lost or (body.complete and not body.buffered):
            self.gone = True
            ws.connection_lost()

    def write(self, data: bytes) -> None:
        if self.lost or not data:
            return
        self.proto.core.send_body(self.stream, data, False, time.monotonic())
        self.sent += len(data)
        self.proto._flush()

    def close(self) -> None:
        """The WebSocket is over: end the stream (an END_STREAM, or nothing if it is gone)."""
        if self.ended:
            return
        self.ended = True
        stream = self.stream
        if not (stream.reset or self.proto.lost):
            self.proto.core.send_body(stream, b"", True, time.monotonic())
        self.proto.websockets.pop(stream.id, None)
        self.finished(stream.request, 200, self.sent, False)

    def finished(self, request: Request, status: int, sent: int, keep_alive: bool) -> None:
        if self.counted:
            return
        self.ended = self.counted = True
        self.proto.websockets.pop(self.stream.id, None)
        self.proto.finished(self.stream, status, sent, time.perf_counter() - self.stream.began)

    def log_access(self, request: Request, status: int, sent: int) -> None:
        """Logged once the stream ends (``finished``), with what it carried."""

    # -- waiting -------------------------------------------------------------------------------

    def wake(self) -> None:
        self.proto._changed()

    async def wait(self) -> None:
        await asyncio.wait((self.proto.tick,))

    def blocked(self) -> bool:
        return self.proto.write_paused or self.proto.core.queued(self.stream) > STREAM_QUEUE_MAX

    async def drain(self) -> bool:
        try:
            await self.proto.wait_until(self.stream, lambda: not self.blocked())
        except StreamGone:
            return False
        return not self.lost

    def pause_ws_reading(self) -> None:
        self.paused = True  # its window stays shut: the client waits

    def resume_ws_reading(self) -> None:
        self.paused = False
        self.pump()


class _StaticOutcome:
    """What a static answer says to the access log (an Outcome's fields)."""

    __slots__ = ("remote", "request_id", "sent", "status")

    def __init__(self, status: int, sent: int) -> None:
        self.status = status
        self.sent = sent
        self.remote = None
        self.request_id = None
