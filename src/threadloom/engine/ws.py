"""WebSocket under the thread models, and what every model shares: the handshake, the
settings, the one sync handler API.

Theory of operation
-------------------
An Upgrade request arrives like any HTTP request (``engine/http.py`` parses it and hands it
to a thread that may block). :func:`handshake` checks it with the RFC 6455 core and builds
the 101 response; the connection then belongs to a :class:`BlockingLink` and to the user's
sync handler, on that thread, until the handler returns.

Every rule of the conversation (messages, pings, the close handshake, the code and reason
the handler sees) is :class:`~threadloom.engine.ws_session.WSSession`'s; the link only moves
bytes and waits: for bytes, or until the session's next deadline.

A sync handler sees a :class:`WebSocket` under every model: over a :class:`BlockingLink` here,
over the event loop (``engine/ws_aio.py``, ``LoopLink``) under asyncio.

Threads: the handler's thread is the only reader. Any thread may ``send`` (a chat handler
broadcasts to other connections): every call that makes bytes with the session and writes
them holds one lock, because compressed frames must reach the wire in the order their
shared deflate context produced them. Sends block while the peer does not read, under the
slow-read rule of HTTP responses (:class:`~threadloom.engine.outbox.SendBudget`: after
``--timeout-io`` of grace a peer that keeps the sender waiting must take ``--min-send-rate``
bytes a second), so a slow peer costs a bounded buffer and a bounded wait: one that reads
a few bytes now and then no longer holds the conversation for ever.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from threadloom.config import Config
from threadloom.engine import ws_session
from threadloom.engine.outbox import SendBudget
from threadloom.engine.sockio import wait_readable, wait_writable
from threadloom.engine.ws_session import LOST, STALLED, WSSession
from threadloom.interfaces.websocket import (
    ConnectionClosed,
    RequestHeaders,
    handler_wants_path,
    iterate,
    request_path,
)
from threadloom.protocols.http1 import Request, full_response
from threadloom.protocols.websocket import (
    WebSocketConnection,
    accept_fields,
    accept_response,
    check_connect_request,
    check_request,
    negotiate_deflate,
)

app_log = logging.getLogger("threadloom.app")
#: What send() takes; a tuple, since isinstance with an ``X | Y`` union is several times slower.
_MESSAGE_TYPES = (str, bytes, bytearray, memoryview)

READ_SIZE = 65536


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
        self.min_send_rate = config.min_send_rate
        self.close_timeout = ws_session.CLOSE_TIMEOUT
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


def h2_handshake(
    request: Request,
    settings: WSSettings,
    subprotocol: str | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[list[tuple[bytes, bytes]], WebSocketConnection]:
    """RFC 8441: the fields of the ``200`` that accepts an extended CONNECT, and the core
    for the stream's DATA; HandshakeError if the request is not a WebSocket one."""
    offer = check_connect_request(request.method, request.upgrade, request.headers)
    deflate = negotiate_deflate(offer.extensions_offered, enabled=settings.deflate)
    fields = accept_fields(offer, subprotocol, deflate, extra_headers or [])
    return fields, WebSocketConnection(max_message_size=settings.max_size, deflate=deflate)


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


def run_sync_handler(settings: WSSettings, link: BlockingLink, early: bytes) -> None:
    """Call the bare sync handler over ``link`` and close it properly afterwards.

    ``early`` is what the client sent after the handshake, before we answered it.
    """
    websocket = WebSocket(link, link.path, link.request_headers, link.remote_address)
    with HandlerRun(websocket.path) as run:
        if early:
            link.feed(early)
        settings.call(websocket)
    link.finish(run.failed)


class SyncLink(Protocol):
    """What :class:`WebSocket` needs from an adapter: a blocking thread's own
    (:class:`BlockingLink`) or the event loop's, reached from the pool (``ws_aio.LoopLink``)."""

    def recv(self, timeout: float | None) -> str | bytes: ...
    def send(self, data: str | bytes) -> None: ...
    def ping(self, payload: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    @property
    def closed(self) -> bool: ...


class WebSocket:
    """The ``ws`` a sync handler gets under every model: ``for msg in ws: ws.send(msg)``."""

    def __init__(
        self,
        link: SyncLink,
        path: str,
        request_headers: RequestHeaders,
        remote_address: Any,
        subprotocol: str | None = None,
    ) -> None:
        self._link = link
        self.path = path
        self.request_headers = request_headers
        self.remote_address = remote_address
        self.subprotocol = subprotocol

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; raises ConnectionClosed at the end, TimeoutError after ``timeout``."""
        return self._link.recv(timeout)

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until a normal close; an abnormal one raises ConnectionClosedError."""
        return iterate(self.recv)

    def send(self, message: str | bytes) -> None:
        """Send one message (str: text, bytes: binary); blocks while the peer is not reading."""
        if not isinstance(message, _MESSAGE_TYPES):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        self._link.send(message if isinstance(message, str) else bytes(message))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (pongs are handled for you)."""
        self._link.ping(bytes(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake and wait briefly for the peer's answer."""
        self._link.close(code, reason)

    @property
    def closed(self) -> bool:
        return self._link.closed


class BlockingLink:
    """The thread models' adapter: a :class:`WSSession` over a socket (see the module doc)."""

    def __init__(
        self,
        sock: socket.socket,
        conn: WebSocketConnection,
        request: Request,
        addr: Any,
        settings: WSSettings,
    ) -> None:
        self._sock = sock
        self._settings = settings
        self._lock = threading.Lock()
        self._budget = SendBudget(settings.timeout_io, settings.min_send_rate)
        self._behind = False  # the last send had to wait for the peer
        self._session = WSSession(
            conn, time.monotonic(), settings.ping_interval, settings.close_timeout
        )
        self.path = request_path(request)
        self.request_headers = RequestHeaders(request.headers)
        self.remote_address = addr
        settings.opened(self)

    def recv(self, timeout: float | None) -> str | bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        session = self._session
        while (message := session.next_message()) is None:
            self._wait(deadline)
        return message

    def send(self, data: str | bytes) -> None:
        with self._lock:
            self._write(self._session.send_message(data))

    def ping(self, payload: bytes) -> None:
        with self._lock:
            self._write(self._session.ping(payload))

    def close(self, code: int, reason: str) -> None:
        with self._lock:
            self._write(self._session.close(code, reason, time.monotonic()), quiet=True)
        while not self._session.done:
            self._wait(None)

    @property
    def closed(self) -> bool:
        return self._session.done

    def feed(self, data: bytes) -> None:
        """Bytes read by someone else (those that followed the handshake)."""
        with self._lock:
            self._write(self._session.receive(data, time.monotonic()), quiet=True)

    def finish(self, failed: bool) -> None:
        """The handler returned (or raised): close properly if it did not."""
        self._settings.ended(self)
        with self._lock:
            self._write(self._session.finish(failed, time.monotonic()), quiet=True)
        while not self._session.done:
            self._wait(None)

    def going_away(self) -> None:
        """Server shutdown (any thread): send 1001; the handler's ``recv`` sees the reply."""
        with self._lock:
            self._write(self._session.going_away(time.monotonic()), quiet=True)

    def _wait(self, deadline: float | None) -> None:
        """Wait for bytes until the session's deadline or ``deadline``, and hand the session
        what came (bytes, or the time)."""
        now = time.monotonic()
        due = self._session.deadline()
        wait = None if due is None else max(0.0, due - now)
        if deadline is not None:
            left = deadline - now
            if left <= 0:
                raise TimeoutError("no WebSocket message within the timeout")
            wait = left if wait is None else min(wait, left)
        data = self._read(wait)
        if data is None:
            with self._lock:
                self._write(self._session.tick(time.monotonic()), quiet=True)
            return
        self.feed(data)

    def _read(self, wait: float | None) -> bytes | None:
        """Bytes from the peer within ``wait`` seconds (b"": its end), or None: none came
        (an adapter over something else than a socket overrides this)."""
        if not wait_readable(self._sock, wait):
            return None
        try:
            return self._sock.recv(READ_SIZE)
        except BlockingIOError:
            return None  # woken for nothing: the caller ticks and waits again
        except OSError:
            return b""

    def _send_all(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer takes nothing; TimeoutError once it
        is too slow (:class:`SendBudget`, counted across sends while each has to wait)."""
        sock, budget = self._sock, self._budget
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            self._behind = False  # the peer keeps up
            return
        now = time.monotonic()
        if not self._behind:
            self._behind = True
            budget.behind(now)
        budget.took(sent, now)
        view = memoryview(data)[sent:]
        while view:
            left = budget.deadline() - time.monotonic()
            if left <= 0:
                raise TimeoutError("the peer reads too slowly (--min-send-rate)")
            if not wait_writable(sock, left):
                continue
            try:
                sent = sock.send(view)
            except BlockingIOError:
                continue
            budget.took(sent, time.monotonic())
            view = view[sent:]

    def _write(self, data: bytes, quiet: bool = False) -> None:
        """Write under the lock; a peer that is gone or stalled ends the conversation."""
        if not data:
            return
        try:
            self._send_all(data)
        except OSError as exc:  # TimeoutError is an OSError too
            ended = self._session.lost(STALLED if isinstance(exc, TimeoutError) else LOST)
            if not quiet:
                raise ended from None
