"""WebSocket on the asyncio model: the connection object, bare handlers and ASGI routes.

Theory of operation
-------------------
An Upgrade request reaches :class:`~threadloom.engine.http_aio.HTTPProtocol` like any
request. Once the handshake is accepted the protocol hands every later byte to an
:class:`AsyncWebSocket` (``proto.ws``), which feeds the RFC 6455 core on the loop thread,
writes the replies the core owes (pongs, the close echo) and queues messages for whoever
awaits ``recv``. Flow control both ways: reading pauses while :data:`QUEUE_HIGH` messages
wait unread, and ``send`` awaits while the transport has paused writing.

Three kinds of code sit on top:

* a bare async handler (``async def handle_client(websocket, path)``) runs as a task;
* a bare sync handler runs on the model's thread pool, through :class:`ThreadedWebSocket`,
  which has the sync API and forwards each call to the loop;
* an ASGI app's ``websocket`` scope runs through :class:`ASGIWebSocketCycle`.

Keep-alive: a ping after ``ping_interval`` seconds of silence; a peer still silent one
interval later is closed with 1011. The server closes the TCP connection once the close
handshake is done (RFC 6455 7.1.1) or the handler has finished.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from threadloom.engine.asgi_run import start_eagerly
from threadloom.engine.ws import (
    CLOSE_TIMEOUT,
    HandlerRun,
    WSSettings,
    handshake,
    upgrade_required,
)
from threadloom.errors import LocalProtocolError
from threadloom.interfaces.asgi import Message, forward_and_identify
from threadloom.interfaces.websocket import (
    ASGIWebSocketState,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    RequestHeaders,
    closed_error,
    disconnect_message,
    iterate,
    offered_subprotocols,
    receive_message,
    request_path,
    websocket_scope,
)
from threadloom.protocols import websocket as core
from threadloom.protocols.http1 import Request, full_response
from threadloom.protocols.websocket import HandshakeError, check_request, reject_response

if TYPE_CHECKING:
    from threadloom.engine.http_aio import HTTPProtocol

log = logging.getLogger("threadloom.ws")
app_log = logging.getLogger("threadloom.app")
#: What send() takes; a tuple, since isinstance with an ``X | Y`` union is several times slower.
_MESSAGE_TYPES = (str, bytes, bytearray, memoryview)

T = TypeVar("T")
#: Unread messages at which the socket stops being read, and the level that resumes it.
QUEUE_HIGH = 32
QUEUE_LOW = 8
#: Queued outgoing bytes that are written at once rather than at the end of the iteration.
FLUSH_BYTES = 64 * 1024


class AsyncWebSocket:
    """The ``websocket`` an async handler gets (see the module docstring)."""

    def __init__(
        self,
        proto: HTTPProtocol,
        conn: core.WebSocketConnection,
        request: Request,
        settings: WSSettings,
    ) -> None:
        self._proto = proto
        self._conn = conn
        self._settings = settings
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._closed: ConnectionClosed | None = None
        self._reading_paused = False
        self._last_heard = proto.loop.time()
        self._ping_sent_at: float | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self.path = request_path(request)
        self.request_headers = RequestHeaders(request.headers)
        self.remote_address = proto.addr
        self.subprotocol: str | None = None
        if settings.ping_interval:
            self._ping_timer = proto.loop.call_later(settings.ping_interval, self._keepalive)
        settings.opened(self)

    # -- the handler's API ------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next message; raises ConnectionClosed once the connection has ended."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            await self._proto.wait()
        message = self._messages.popleft()
        if self._reading_paused and len(self._messages) <= QUEUE_LOW:
            self._reading_paused = False
            self._proto.resume_ws_reading()
        return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    async def send(self, message: str | bytes) -> None:
        """Send one message; awaits while the peer is not reading (backpressure)."""
        if not isinstance(message, _MESSAGE_TYPES):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        self._check_open()
        data = message if isinstance(message, str) else bytes(message)
        self._write(self._conn.send_message(data))
        await self._drain()

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (pongs are handled for you)."""
        self._check_open()
        self._write(self._conn.send_ping(payload))
        await self._drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake, wait briefly for the peer's answer, then hang up."""
        if self._closed is None and not self._conn.close_sent:
            self._write(self._conn.send_close(code, reason))
        try:
            await asyncio.wait_for(self._until_closed(), CLOSE_TIMEOUT)
        except TimeoutError:
            self._closed = closed_error(code, reason)
        self._end()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- the protocol's side (loop thread) ------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the peer (``b""``: EOF)."""
        conn = self._conn
        self._last_heard = self._proto.loop.time()
        events = conn.receive_data(data)
        replies = conn.data_to_send()
        if replies:
            self._write(replies)
        for event in events:
            kind = type(event)
            if kind is core.Message:
                self._messages.append(event.data)  # type: ignore[union-attr]
            elif kind is core.Pong:
                self._ping_sent_at = None
            elif kind is core.CloseReceived:
                self._closed = closed_error(event.code, event.reason)  # type: ignore[union-attr]
        if self._closed is None and (conn.closed or not data):
            self._closed = closed_error((conn.close_code if conn.closed else None) or 1006)
        if conn.closed or not data:
            self._end()
        elif len(self._messages) >= QUEUE_HIGH and not self._reading_paused:
            self._reading_paused = True
            self._proto.pause_ws_reading()

    def writable(self) -> None:
        """The transport drains again: read again, unless unread messages hold us back."""
        if not self._reading_paused:
            self._proto.resume_ws_reading()

    def connection_lost(self) -> None:
        self._settings.ended(self)
        if self._closed is None:
            self._closed = ConnectionClosedError(1006, "connection lost")
        self._stop_keepalive()

    async def finish(self, failed: bool) -> None:
        """The handler is done: close properly if it did not, then hang up."""
        if self._closed is None:
            await self.close(1011 if failed else 1000, "handler failed" if failed else "")
        self._end()

    def going_away(self) -> None:
        """Server shutdown (on the loop): send 1001 and let the close handshake finish."""
        if self._closed is None and not self._conn.close_sent:
            self._write(self._conn.send_close(1001, "server shutting down"))

    def _write(self, data: bytes) -> None:
        """Queue ``data``; one write per loop iteration carries every frame queued in it.

        A handler answering a burst of messages makes one system call, not one per frame.
        Past :data:`FLUSH_BYTES` the queue is written at once, so a handler that sends in a
        loop without ever suspending cannot grow it without bound.
        """
        if not data:
            return
        out = self._out
        if not out:
            self._proto.loop.call_soon(self._flush)
        out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self._proto.write(data)

    def _end(self) -> None:
        self._flush()
        self._settings.ended(self)
        self._stop_keepalive()
        self._proto.close()

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._conn.close_sent:
            raise ConnectionClosedError(1006, "closing")

    async def _drain(self) -> None:
        """Backpressure, bounded by ``timeout_io`` (the protocol aborts a peer that never reads)."""
        if self._proto.blocked() and not await self._proto.drain():
            if self._closed is None:
                self._closed = ConnectionClosedError(1006, "the peer stopped reading")
            raise self._closed

    async def _until_closed(self) -> None:
        while self._closed is None:
            await self._proto.wait()

    def _keepalive(self) -> None:
        self._ping_timer = None
        if self._closed is not None:
            return
        now = self._proto.loop.time()
        interval = self._settings.ping_interval
        if self._ping_sent_at is not None and now - self._ping_sent_at >= interval:
            self._write(self._conn.send_close(1011, "keepalive ping timeout"))
            self._closed = ConnectionClosedError(1011, "keepalive ping timeout")
            self._proto.wake()
            self._end()
            return
        if self._ping_sent_at is None and now - self._last_heard >= interval:
            self._write(self._conn.send_ping(b""))
            self._ping_sent_at = now
        self._ping_timer = self._proto.loop.call_later(interval, self._keepalive)

    def _stop_keepalive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None


class ThreadedWebSocket:
    """The sync API over an :class:`AsyncWebSocket`, for sync handlers on the thread pool."""

    def __init__(self, websocket: AsyncWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self._ws = websocket
        self._loop = loop
        self.path = websocket.path
        self.request_headers = websocket.request_headers
        self.remote_address = websocket.remote_address
        self.subprotocol = websocket.subprotocol

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the loop and wait; a loop that stops meanwhile ends the socket.

        The coroutine is made on the loop, so none is left unawaited if the loop has stopped.
        """
        loop = self._loop
        coro = _await(make)
        try:
            if not loop.is_running():
                raise RuntimeError("the event loop has stopped")
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            raise ConnectionClosedError(1006, "the server stopped") from None
        while not concurrent.futures.wait([future], timeout=1.0).done:
            if not loop.is_running():  # callbacks of a stopped loop never run
                future.cancel()
                raise ConnectionClosedError(1006, "the server stopped")
        return future.result()

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; TimeoutError after ``timeout`` seconds."""
        return self._call(lambda: asyncio.wait_for(self._ws.recv(), timeout))

    def __iter__(self) -> Iterator[str | bytes]:
        return iterate(self.recv)

    def send(self, message: str | bytes) -> None:
        self._call(lambda: self._ws.send(message))

    def ping(self, payload: bytes = b"") -> None:
        self._call(lambda: self._ws.ping(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._call(lambda: self._ws.close(code, reason))

    @property
    def closed(self) -> bool:
        return self._ws.closed


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


# -- bare handlers --------------------------------------------------------------------------


def serve_bare_handler(proto: HTTPProtocol, request: Request) -> None:
    """A request to a bare WebSocket handler: run it on an Upgrade, 426 otherwise."""
    settings = proto.settings.ws
    assert settings is not None
    if not proto.is_websocket_upgrade(request):
        data, keep_alive = upgrade_required(request)
        proto.write(data)
        body = request.body
        proto.finished(request, 426, len(data), keep_alive and body.complete and not body.buffered)
        return
    try:
        head, conn = handshake(request, settings)
    except HandshakeError as exc:
        refuse_handshake(proto, request, exc)
        return
    proto.write(head)
    proto.log_access(request, 101, 0)
    websocket = proto.start_websocket(AsyncWebSocket(proto, conn, request, settings))
    if settings.is_async:
        proto.loop.create_task(_run_async_handler(settings, websocket))
    else:
        proto.loop.create_task(_run_sync_handler(proto, settings, websocket))


def refuse_handshake(proto: HTTPProtocol, request: Request, exc: HandshakeError) -> None:
    log.info("refused a WebSocket handshake from %s: %s", proto.addr, exc)
    proto.write(reject_response(exc))
    proto.finished(request, exc.status, 0, False)


async def _run_async_handler(settings: WSSettings, websocket: AsyncWebSocket) -> None:
    with HandlerRun(websocket.path) as run:
        await settings.call(websocket)
    await websocket.finish(run.failed)


async def _run_sync_handler(
    proto: HTTPProtocol, settings: WSSettings, websocket: AsyncWebSocket
) -> None:
    """A sync handler on the model's thread pool, through the sync API."""
    with HandlerRun(websocket.path) as run:
        await proto.runtime.run_sync(settings.call, ThreadedWebSocket(websocket, proto.loop))
    await websocket.finish(run.failed)


# -- ASGI -------------------------------------------------------------------------------------


class ASGIWebSocketCycle:
    """One ASGI ``websocket`` scope: ``receive`` and ``send`` on the loop thread."""

    def __init__(self, proto: HTTPProtocol, request: Request) -> None:
        self.proto = proto
        self.request = request
        self.state = ASGIWebSocketState(offered_subprotocols(request))
        self.websocket: AsyncWebSocket | None = None

    def run(self) -> None:
        proto, request = self.proto, self.request
        try:
            check_request(request.method.encode("ascii"), request.http_version, request.headers)
        except HandshakeError as exc:
            refuse_handshake(proto, request, exc)
            return
        asgi = proto.settings.asgi
        assert asgi is not None
        scope = websocket_scope(asgi.template, request, proto.addr)
        if asgi.proxies is not None:  # a trusted proxy's X-Forwarded-* (client, wss, host)
            forward_and_identify(scope, asgi.proxies, request_ids=False)
        start_eagerly(asgi.app(scope, self.receive, self.send), self.app_done)

    async def receive(self) -> Message:
        state = self.state
        if not state.connect_sent:
            state.connect_sent = True
            return {"type": "websocket.connect"}
        while self.websocket is None:
            if self.proto.lost or state.closed:
                return disconnect_message(1006)
            await self.proto.wait()
        try:
            return receive_message(await self.websocket.recv())
        except ConnectionClosed as exc:
            return disconnect_message(exc.code, exc.reason)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.send":
            data = self.state.outgoing(message)
            if self.websocket is not None:
                await self.websocket.send(data)
        elif kind == "websocket.close":
            code, reason = self.state.close(message)
            if self.websocket is None:
                self._deny()
            else:
                await self.websocket.close(code, reason)
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} for a websocket scope")

    def _accept(self, message: Message) -> None:
        proto, settings = self.proto, self.proto.settings.ws
        assert settings is not None
        subprotocol, headers = self.state.accept(message)
        head, conn = handshake(self.request, settings, subprotocol, headers)
        proto.write(head)
        proto.log_access(self.request, 101, 0)
        websocket = AsyncWebSocket(proto, conn, self.request, settings)
        websocket.subprotocol = subprotocol
        self.websocket = proto.start_websocket(websocket)

    def _deny(self, status: int = 403) -> None:
        """No WebSocket after all: ``websocket.close`` before accept is a 403 (ASGI spec), an
        app that failed before accepting a 500; either way the connection closes."""
        data, _ = full_response(self.request, status, [(b"Content-Type", b"text/plain")], b"")
        self.proto.write(data)
        self.proto.finished(self.request, status, len(data), False)

    def app_done(self, error: BaseException | None) -> None:
        target = self.request.target.decode("latin-1")
        if error is not None and not isinstance(error, ConnectionClosed):
            app_log.error(
                "websocket %s: app raised",
                target,
                exc_info=(type(error), error, error.__traceback__),
            )
        websocket = self.websocket
        if websocket is not None:
            self.proto.loop.create_task(websocket.finish(error is not None))
        elif not self.state.closed and not self.proto.lost:
            self._deny(500 if error is not None else 403)
