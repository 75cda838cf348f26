"""WebSocket on the asyncio model: the loop's adapter, bare handlers and ASGI routes.

Theory of operation
-------------------
An Upgrade request reaches the HTTP protocol (``engine/http_aio.py``) like any request; this
module sees it only as a :class:`WSHost`. Once the handshake is accepted the protocol hands
every later byte to an :class:`AsyncWebSocket` (``proto.ws``), which feeds its
:class:`~threadloom.engine.ws_session.WSSession` on the loop thread, writes what the session
owes (pongs, the close echo), runs the session's one timer (pings, the close timeout) and
wakes whoever awaits ``recv``. Every rule of the conversation is the session's. Flow control
both ways: reading pauses while :data:`QUEUE_HIGH` messages wait unread, and ``send`` awaits
while the transport has paused writing.

Three kinds of code sit on top:

* a bare async handler (``async def handle_client(websocket, path)``) runs as a task;
* a bare sync handler runs on the model's thread pool and gets the same
  :class:`~threadloom.engine.ws.WebSocket` as under the thread models, over a
  :class:`LoopLink` that forwards each call to the loop;
* an ASGI app's ``websocket`` scope runs through :class:`ASGIWebSocketCycle`.

The server closes the TCP connection once the close handshake is done (RFC 6455 7.1.1) or
the handler has finished.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from threadloom.engine.asgi_run import start_eagerly
from threadloom.engine.http import HTTPSettings
from threadloom.engine.session import AsyncRuntime
from threadloom.engine.ws import (
    HandlerRun,
    WebSocket,
    WSSettings,
    upgrade_required,
)
from threadloom.engine.ws_session import LOST, STALLED, WSSession
from threadloom.errors import LocalProtocolError
from threadloom.interfaces.asgi import Message, forward_and_identify
from threadloom.interfaces.websocket import (
    ASGIWebSocketState,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    RequestHeaders,
    disconnect_message,
    offered_subprotocols,
    receive_message,
    request_path,
    websocket_scope,
)
from threadloom.protocols import websocket as core
from threadloom.protocols.http1 import Request
from threadloom.protocols.websocket import HandshakeError

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


class WSHost(Protocol):
    """What this module needs from the HTTP connection it took over
    (``engine/http_aio.py``'s ``HTTPProtocol``, which imports this module, not the reverse)."""

    loop: asyncio.AbstractEventLoop
    addr: Any
    runtime: AsyncRuntime
    settings: HTTPSettings

    @property
    def lost(self) -> bool:
        """The connection (or, over HTTP/2, the stream) is gone."""
        ...

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def wake(self) -> None: ...
    async def wait(self) -> None: ...
    def blocked(self) -> bool: ...
    async def drain(self) -> bool: ...
    def pause_ws_reading(self) -> None: ...
    def resume_ws_reading(self) -> None: ...
    def is_websocket_upgrade(self, request: Request) -> bool: ...
    def start_websocket(self, websocket: AsyncWebSocket) -> AsyncWebSocket: ...
    def check_websocket(self, request: Request) -> None:
        """Raise HandshakeError unless ``request`` opens a WebSocket (HTTP/1.1's Upgrade,
        or HTTP/2's extended CONNECT)."""
        ...

    def accept_websocket(
        self,
        request: Request,
        settings: WSSettings,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> core.WebSocketConnection:
        """Answer the handshake (a 101, or HTTP/2's 200) and log it; the core for what
        follows. HandshakeError if the request is not a WebSocket one."""
        ...

    def refuse_websocket(self, request: Request, exc: HandshakeError) -> None: ...
    def deny_websocket(self, request: Request, status: int) -> None: ...
    def finished(self, request: Request, status: int, sent: int, keep_alive: bool) -> None: ...
    def log_access(self, request: Request, status: int, sent: int) -> None: ...


class AsyncWebSocket:
    """The ``websocket`` an async handler gets: a :class:`WSSession` on the loop."""

    def __init__(
        self,
        proto: WSHost,
        conn: core.WebSocketConnection,
        request: Request,
        settings: WSSettings,
    ) -> None:
        self._proto = proto
        self._session = WSSession(
            conn, proto.loop.time(), settings.ping_interval, settings.close_timeout
        )
        self._settings = settings
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self.path = request_path(request)
        self.request_headers = RequestHeaders(request.headers)
        self.remote_address = proto.addr
        self.subprotocol: str | None = None
        self._aim()
        settings.opened(self)

    # -- the handler's API ------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next message; raises ConnectionClosed once the connection has ended."""
        session = self._session
        while (message := session.next_message()) is None:
            await self._proto.wait()
        if self._reading_paused and len(session.messages) <= QUEUE_LOW:
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
        data = message if isinstance(message, str) else bytes(message)
        self._write(self._session.send_message(data))
        await self._drain()

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (pongs are handled for you)."""
        self._write(self._session.ping(bytes(payload)))
        await self._drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake, wait briefly for the peer's answer, then hang up."""
        self._write(self._session.close(code, reason, self._proto.loop.time()))
        self._aim()
        while not self._session.done:
            await self._proto.wait()
        self._end()

    @property
    def closed(self) -> bool:
        return self._session.done

    # -- the protocol's side (loop thread) ------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the peer (``b""``: EOF)."""
        session = self._session
        self._write(session.receive(data, self._proto.loop.time()))
        if session.done:
            self._end()
        elif len(session.messages) >= QUEUE_HIGH and not self._reading_paused:
            self._reading_paused = True
            self._proto.pause_ws_reading()

    def writable(self) -> None:
        """The transport drains again: read again, unless unread messages hold us back."""
        if not self._reading_paused:
            self._proto.resume_ws_reading()

    def connection_lost(self) -> None:
        self._settings.ended(self)
        self._session.lost()
        self._stop_timer()

    async def finish(self, failed: bool) -> None:
        """The handler is done: close properly if it did not, then hang up."""
        self._write(self._session.finish(failed, self._proto.loop.time()))
        self._aim()
        while not self._session.done:
            await self._proto.wait()
        self._end()

    def going_away(self) -> None:
        """Server shutdown (on the loop): send 1001 and let the close handshake finish."""
        self._write(self._session.going_away(self._proto.loop.time()))
        self._aim()

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
        self._stop_timer()
        self._proto.close()

    async def _drain(self) -> None:
        """Backpressure, bounded by ``timeout_io`` (the protocol aborts a peer that never reads)."""
        if self._proto.blocked() and not await self._proto.drain():
            raise self._session.lost(STALLED)

    # -- the session's one timer ------------------------------------------------------------

    def _aim(self) -> None:
        """Aim the timer at the session's deadline if it is earlier than the timer (a later
        deadline is met lazily: the timer fires, :meth:`_tick` aims it again)."""
        due = self._session.deadline()
        timer = self._timer
        if due is None or (timer is not None and timer.when() <= due):
            return
        if timer is not None:
            timer.cancel()
        self._timer = self._proto.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        session = self._session
        self._write(session.tick(self._proto.loop.time()))
        if session.done:
            self._proto.wake()
            self._end()
        else:
            self._aim()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class LoopLink:
    """A sync handler's link to an :class:`AsyncWebSocket` from the model's thread pool:
    each call runs on the loop and the thread waits for it."""

    def __init__(self, websocket: AsyncWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self._ws = websocket
        self._loop = loop

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

    def recv(self, timeout: float | None) -> str | bytes:
        return self._call(lambda: asyncio.wait_for(self._ws.recv(), timeout))

    def send(self, data: str | bytes) -> None:
        self._call(lambda: self._ws.send(data))

    def ping(self, payload: bytes) -> None:
        self._call(lambda: self._ws.ping(payload))

    def close(self, code: int, reason: str) -> None:
        self._call(lambda: self._ws.close(code, reason))

    @property
    def closed(self) -> bool:
        return self._ws.closed


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


# -- bare handlers --------------------------------------------------------------------------


def serve_bare_handler(proto: WSHost, request: Request) -> None:
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
        conn = proto.accept_websocket(request, settings)
    except HandshakeError as exc:
        refuse_handshake(proto, request, exc)
        return
    websocket = proto.start_websocket(AsyncWebSocket(proto, conn, request, settings))
    if settings.is_async:
        proto.loop.create_task(_run_async_handler(settings, websocket))
    else:
        proto.loop.create_task(_run_sync_handler(proto, settings, websocket))


def refuse_handshake(proto: WSHost, request: Request, exc: HandshakeError) -> None:
    log.info("refused a WebSocket handshake from %s: %s", proto.addr, exc)
    proto.refuse_websocket(request, exc)


async def _run_async_handler(settings: WSSettings, websocket: AsyncWebSocket) -> None:
    with HandlerRun(websocket.path) as run:
        await settings.call(websocket)
    await websocket.finish(run.failed)


async def _run_sync_handler(proto: WSHost, settings: WSSettings, websocket: AsyncWebSocket) -> None:
    """A sync handler on the model's thread pool, through the sync API."""
    link = LoopLink(websocket, proto.loop)
    sync = WebSocket(link, websocket.path, websocket.request_headers, websocket.remote_address)
    with HandlerRun(websocket.path) as run:
        await proto.runtime.run_sync(settings.call, sync)
    await websocket.finish(run.failed)


# -- ASGI -------------------------------------------------------------------------------------


class ASGIWebSocketCycle:
    """One ASGI ``websocket`` scope: ``receive`` and ``send`` on the loop thread."""

    def __init__(self, proto: WSHost, request: Request) -> None:
        self.proto = proto
        self.request = request
        self.state = ASGIWebSocketState(offered_subprotocols(request))
        self.websocket: AsyncWebSocket | None = None

    def run(self) -> None:
        proto, request = self.proto, self.request
        try:
            proto.check_websocket(request)
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
                return disconnect_message(*LOST)
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
        conn = proto.accept_websocket(self.request, settings, subprotocol, headers)
        websocket = AsyncWebSocket(proto, conn, self.request, settings)
        websocket.subprotocol = subprotocol
        self.websocket = proto.start_websocket(websocket)

    def _deny(self, status: int = 403) -> None:
        """No WebSocket after all: ``websocket.close`` before accept is a 403 (ASGI spec), an
        app that failed before accepting a 500; either way the connection closes."""
        self.proto.deny_websocket(self.request, status)

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
