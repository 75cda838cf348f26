"""WebSocket under the thread models: the handshake, and a blocking connection object.

Theory of operation
-------------------
An Upgrade request arrives like any HTTP request (``engine/http.py`` parses it and hands it
to a thread that may block). :func:`handshake` checks it with the RFC 6455 core and builds
the 101 response; the connection then belongs to a :class:`BlockingWebSocket` and to the
user's sync handler, on that thread, until the handler returns.

Threads: the handler's thread is the only reader. Any thread may ``send`` (a chat handler
broadcasts to other connections): every call that makes bytes with the core and writes them
holds one lock, because compressed frames must reach the wire in the order their shared
deflate context produced them. Sends block while the peer does not read, at most
``timeout_io`` seconds, so a slow peer costs a bounded buffer, never an unbounded one.

Keep-alive: while the handler waits in ``recv``, a ping goes out after ``ping_interval``
seconds of silence; a peer that then stays silent another interval is closed with 1011.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from threadloom.config import Config
from threadloom.engine.sockio import send_all, wait_readable
from threadloom.interfaces.websocket import (
    ConnectionClosed,
    ConnectionClosedError,
    RequestHeaders,
    closed_error,
    handler_wants_path,
    iterate,
    request_path,
)
from threadloom.protocols.http1 import Request, full_response
from threadloom.protocols.websocket import (
    CloseReceived,
    Message,
    Pong,
    WebSocketConnection,
    accept_response,
    check_request,
    negotiate_deflate,
)

app_log = logging.getLogger("threadloom.app")
#: What send() takes; a tuple, since isinstance with an ``X | Y`` union is several times slower.
_MESSAGE_TYPES = (str, bytes, bytearray, memoryview)

READ_SIZE = 65536
#: How long a closing side waits for the peer's Close before giving up on it.
CLOSE_TIMEOUT = 5.0


class WSSettings:
    """Per-server WebSocket constants: limits, keep-alive, and the bare handler if any."""

    def __init__(self, config: Config, handler: Any = None, is_async: bool = False) -> None:
        self.handler = handler
        self.is_async = is_async
        self.pass_path = handler is not None and handler_wants_path(handler)
        self.max_size = config.ws_max_size
        self.ping_interval = config.ws_ping_interval
        self.deflate = config.ws_per_message_deflate
        self.timeout_io = config.timeout_io
        self.close_timeout = CLOSE_TIMEOUT
        self._live: set[Any] = set()
        self._live_lock = threading.Lock()
        self._going_away = False

    def call(self, websocket: Any) -> Any:
        """Call the bare handler as it wants to be called: ``(ws)`` or ``(ws, path)``."""
        if self.pass_path:
            return self.handler(websocket, websocket.path)
        return self.handler(websocket)

    def opened(self, websocket: Any) -> None:
        """Track an open WebSocket so that shutdown can say goodbye to it; one opened
        after shutdown began (its 101 was already on the way) is told at once."""
        with self._live_lock:
            self._live.add(websocket)
            late = self._going_away
        if late:
            websocket.going_away()

    def ended(self, websocket: Any) -> None:
        with self._live_lock:
            self._live.discard(websocket)

    def going_away(self) -> None:
        """The server is stopping: close every open WebSocket with 1001."""
        with self._live_lock:
            self._going_away = True
            live = list(self._live)
        for websocket in live:
            websocket.going_away()


def handshake(
    request: Request,
    settings: WSSettings,
    subprotocol: str | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[bytes, WebSocketConnection]:
    """The 101 response for ``request`` and the core for what follows; HandshakeError if bad."""
    offer = check_request(request.method.encode("ascii"), request.http_version, request.headers)
    deflate = negotiate_deflate(offer.extensions_offered, enabled=settings.deflate)
    head = accept_response(
        offer, subprotocol=subprotocol, deflate=deflate, extra_headers=extra_headers or []
    )
    return head, WebSocketConnection(max_message_size=settings.max_size, deflate=deflate)


class HandlerRun:
    """``with HandlerRun(path) as run:`` around a handler call: how it ended, logged once.

    The peer leaving (ConnectionClosed) is how conversations end, not a failure; anything
    else is the handler's bug: logged with its traceback, and ``run.failed`` closes with 1011.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.failed = False

    def __enter__(self) -> HandlerRun:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if not isinstance(exc, Exception):
            return False  # nothing raised, or KeyboardInterrupt and friends: let them be
        if not isinstance(exc, ConnectionClosed):
            app_log.error("WebSocket handler %s failed", self.path, exc_info=exc)
            self.failed = True
        return True


def upgrade_required(request: Request) -> tuple[bytes, bool]:
    """The 426 a WebSocket-only endpoint gives a plain HTTP request (RFC 9110 15.5.22)."""
    return full_response(
        request,
        426,
        [(b"Upgrade", b"websocket"), (b"Content-Type", b"text/plain; charset=utf-8")],
        b"This endpoint speaks WebSocket: connect with a WebSocket client.\n",
    )


def run_sync_handler(settings: WSSettings, websocket: BlockingWebSocket, early: bytes) -> None:
    """Call the bare sync handler with ``websocket`` and close it properly afterwards.

    ``early`` is what the client sent after the handshake, before we answered it.
    """
    with HandlerRun(websocket.path) as run:
        if early:
            websocket.feed(early)
        settings.call(websocket)
    websocket.finish(run.failed)


class BlockingWebSocket:
    """The ``ws`` a sync handler gets: ``for msg in ws: ws.send(msg)`` (see the module doc)."""

    def __init__(
        self,
        sock: socket.socket,
        conn: WebSocketConnection,
        request: Request,
        addr: Any,
        settings: WSSettings,
    ) -> None:
        self._sock = sock
        self._conn = conn
        self._settings = settings
        self._lock = threading.Lock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._closed: ConnectionClosed | None = None
        self._last_heard = time.monotonic()
        self._ping_sent_at: float | None = None
        self.path = request_path(request)
        self.request_headers = RequestHeaders(request.headers)
        self.remote_address = addr
        self.subprotocol: str | None = None
        settings.opened(self)

    # -- the handler's API ------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; raises ConnectionClosed at the end, TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            self._read_some(deadline)
        return self._messages.popleft()

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until a normal close; an abnormal one raises ConnectionClosedError."""
        return iterate(self.recv)

    def send(self, message: str | bytes) -> None:
        """Send one message (str: text, bytes: binary); blocks while the peer is not reading."""
        if not isinstance(message, _MESSAGE_TYPES):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        with self._lock:
            if self._closed is not None or self._conn.close_sent:
                raise self._closed or ConnectionClosedError(1006, "closing")
            frame = self._conn.send_message(message if isinstance(message, str) else bytes(message))
            self._write(frame)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (pongs are handled for you)."""
        with self._lock:
            if self._closed is None and not self._conn.close_sent:
                self._write(self._conn.send_ping(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake and wait briefly for the peer's answer."""
        with self._lock:
            if self._closed is None and not self._conn.close_sent:
                self._write(self._conn.send_close(code, reason))
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self._closed is None and time.monotonic() < deadline:
            self._read_some(deadline)
        self._messages.clear()
        if self._closed is None:
            self._closed = closed_error(code, reason)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- the engine's side ------------------------------------------------------------------

    def finish(self, failed: bool) -> None:
        """The handler returned (or raised): close properly if it did not."""
        self._settings.ended(self)
        if self._closed is None:
            try:
                self.close(1011 if failed else 1000, "handler failed" if failed else "")
            except ConnectionClosed:
                pass

    def going_away(self) -> None:
        """Server shutdown (any thread): send 1001; the handler's ``recv`` sees the reply."""
        with self._lock:
            if self._closed is None and not self._conn.close_sent:
                self._write(self._conn.send_close(1001, "server shutting down"), quiet=True)

    def _read_some(self, deadline: float | None) -> None:
        """Wait for bytes (pinging on silence) and feed them to the core."""
        interval = self._settings.ping_interval
        wait = interval or None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no WebSocket message within the timeout")
            wait = left if wait is None else min(wait, left)
        if not wait_readable(self._sock, wait):
            if interval:
                self._keepalive()
            return
        try:
            data = self._sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._receive(data)

    def feed(self, data: bytes) -> None:
        """Bytes read by someone else (those that followed the handshake)."""
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        self._last_heard = time.monotonic()
        with self._lock:
            events = self._conn.receive_data(data)
            replies = self._conn.data_to_send()
            if replies:
                self._write(replies, quiet=True)
        for event in events:
            if type(event) is Message:
                self._messages.append(event.data)
            elif type(event) is Pong:
                self._ping_sent_at = None
            elif type(event) is CloseReceived:
                self._closed = closed_error(event.code, event.reason)
        if self._closed is None and (self._conn.closed or not data):
            code = self._conn.close_code if self._conn.closed else None
            self._closed = closed_error(code or 1006, self._conn.close_reason)

    def _keepalive(self) -> None:
        now = time.monotonic()
        interval = self._settings.ping_interval
        if self._ping_sent_at is not None and now - self._ping_sent_at >= interval:
            with self._lock:
                self._write(self._conn.send_close(1011, "keepalive ping timeout"), quiet=True)
            self._closed = ConnectionClosedError(1011, "keepalive ping timeout")
        elif self._ping_sent_at is None and now - self._last_heard >= interval:
            self.ping()
            self._ping_sent_at = now

    def _write(self, data: bytes, quiet: bool = False) -> None:
        """Write under the lock; a peer that is gone or stalled ends the connection."""
        try:
            send_all(self._sock, data, self._settings.timeout_io)
        except OSError as exc:  # TimeoutError is an OSError too
            self._closed = ConnectionClosedError(1006, f"write failed: {exc}")
            if not quiet:
                raise self._closed from None
