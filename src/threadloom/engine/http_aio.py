"""HTTP/1.1 on the asyncio model: an ``asyncio.Protocol`` driving the same HTTP core.

Theory of operation
-------------------
The loop thread owns the connection: ``data_received`` feeds the core, one timer enforces
the header and keep-alive deadlines, and one request is served at a time (pipelined ones
wait in the core, in order). An ASGI app runs on the loop (eagerly: a task is made only if
it suspends, see :mod:`threadloom.engine.asgi_run`); a WSGI app runs on the model's bounded
thread pool and talks back only through three thread-safe doors:

* ``send``: bytes go to ``transport.write`` through ``call_soon_threadsafe``; while the
  transport has paused writing the thread waits (``timeout_io`` at most), so a slow reader
  exerts backpressure instead of growing a buffer;
* ``receive_more``: the thread waits until ``data_received`` has fed more body bytes;
* ``take``: body bytes are taken under the lock that also guards ``data_received``.

When the core's body buffer passes its high-water mark the protocol stops reading the socket
until the app has consumed it (flow control for uploads, under either interface).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import IO, Any, cast

from threadloom.engine.asgi_run import start_eagerly
from threadloom.engine.body import BodyReader
from threadloom.engine.http import DRAIN_LIMIT, HTTPSettings
from threadloom.engine.session import AsyncRuntime
from threadloom.errors import LocalProtocolError, RemoteProtocolError
from threadloom.interfaces.asgi import Message, ResponseState, http_scope
from threadloom.interfaces.wsgi import Outcome
from threadloom.protocols.http1 import (
    CONTINUE,
    Request,
    RequestBody,
    ServerConnection,
    error_response,
)

log = logging.getLogger("threadloom.http")
app_log = logging.getLogger("threadloom.app")


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI asks servers for an OSError subclass)."""


class HTTPProtocol(asyncio.Protocol):
    """One HTTP connection on the event loop."""

    def __init__(
        self,
        settings: HTTPSettings,
        runtime: AsyncRuntime,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.loop = loop
        self.done = done
        self.conn = ServerConnection(settings.limits)
        self.transport: asyncio.Transport | None = None
        self.addr: Any = None
        self.busy = False
        self.served = 0
        self.lost = False
        self.lock = threading.Lock()
        self.data_ready = threading.Condition(self.lock)
        self.can_write = threading.Event()  # for WSGI threads
        self.can_write.set()
        self.write_paused = False  # the same fact, cheaper to read on the loop
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.timer_at = 0.0
        self.threads_waiting = 0
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None  # ASGI: more body, drain or disconnect

    # -- asyncio callbacks (loop thread) ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.addr = transport.get_extra_info("peername")
        self._arm(self.settings.timeout_header)

    def data_received(self, data: bytes) -> None:
        with self.lock:
            try:
                self.conn.receive_data(data)
            except RemoteProtocolError as exc:
                self.lost = True  # whoever waits for this body must give up
                self.data_ready.notify_all()
                self._refuse(exc)
                return
            if self.threads_waiting:
                self.data_ready.notify_all()
        if self.conn.paused and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()
        if not self.busy:
            self._next()

    def eof_received(self) -> bool:
        self.data_received(b"")
        return True  # keep the transport: a response may still be on its way; we close it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        with self.lock:
            self.data_ready.notify_all()
        self.can_write.set()
        self._cancel_timer()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.can_write.set()
        self._wake()

    # -- dispatch (loop thread) ---------------------------------------------------------------

    def _next(self) -> None:
        """Start the next ready request, or wait for one with the right deadline."""
        if self.lost:
            return
        if self.conn.requests:
            self._cancel_timer()
            self.busy = True
            request = self.conn.requests.popleft()
            if self.settings.asgi is not None:
                ASGICycle(self, request).run()
            else:
                future = asyncio.ensure_future(self.runtime.run_sync(self._run_wsgi, request))
                future.add_done_callback(self._wsgi_finished)
        elif self.conn.peer_closed:
            self.close()
        elif self.conn.head_started:
            self._arm(self.settings.timeout_header)
        elif self.served:
            self._arm(self.settings.timeout_keep_alive)
        self._maybe_resume_reading()

    def finished(self, request: Request, status: int, sent: int, keep_alive: bool) -> None:
        """A response is done: log it, then keep the connection or close it."""
        self.busy = False
        self.served += 1
        if self.settings.access_log.active():
            self.settings.access_log.write(
                self.addr, request.method, request.target, request.http_version, status, sent
            )
        if not keep_alive or request.body.truncated:
            self.close()
            return
        if self.conn.upgraded:  # answered as plain HTTP: parse what follows as HTTP again
            try:
                self.conn.decline_upgrade()
            except RemoteProtocolError as exc:
                self._refuse(exc)
                return
        self._next()

    def _wsgi_finished(self, future: asyncio.Future[tuple[Request, Outcome, bool]]) -> None:
        try:
            request, outcome, body_ok = future.result()
        except Exception:
            log.exception("serving a request failed unexpectedly")
            self.busy = False
            self.close()
            return
        self.finished(request, outcome.status, outcome.sent, outcome.keep_alive and body_ok)

    # -- the WSGI thread's side ---------------------------------------------------------------

    def _run_wsgi(self, request: Request) -> tuple[Request, Outcome, bool]:
        body = BodyReader(request, self)
        assert self.settings.runner is not None
        outcome = self.settings.runner(request, body, self, self.addr)
        body_ok = not body.failed and body.drain(DRAIN_LIMIT)
        return request, outcome, body_ok

    can_sendfile = False

    def sendfile(self, file: IO[bytes], count: int) -> int:
        raise NotImplementedError("can_sendfile is False")

    def send(self, data: bytes) -> None:
        if self.lost:
            raise ClientDisconnected("the client went away")
        if not self.can_write.wait(self.settings.timeout_io):
            raise TimeoutError("the client stopped reading")
        self.loop.call_soon_threadsafe(self.write, data)

    def receive_more(self, body: RequestBody) -> bool:
        deadline = time.monotonic() + self.settings.timeout_io
        with self.lock:
            while not (body.buffered or body.complete or body.truncated or self.lost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.threads_waiting += 1
                try:
                    self.data_ready.wait(remaining)
                finally:
                    self.threads_waiting -= 1
            return bool(body.buffered) or body.complete

    def take(self, body: RequestBody, size: int) -> bytes:
        with self.lock:
            data = body.take(size)
        if self.reading_paused:
            self.loop.call_soon_threadsafe(self._maybe_resume_reading)
        return data

    # -- shared helpers (loop thread) ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def wait(self) -> None:
        """ASGI side: sleep until data arrives, writing resumes or the connection is lost."""
        if self.waiter is None or self.waiter.done():
            self.waiter = self.loop.create_future()
        await self.waiter

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _maybe_resume_reading(self) -> None:
        if self.reading_paused and not self.conn.paused and not self.lost and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()

    def _refuse(self, exc: RemoteProtocolError) -> None:
        log.info("refused a request from %s with %d: %s", self.addr, exc.status, exc)
        if not self.busy:
            self.write(error_response(exc.status))
        self.close()

    def _arm(self, seconds: float) -> None:
        """Set the deadline; a timer exists at most once per connection and is re-aimed
        lazily when it fires, so a request costs a float, not a TimerHandle."""
        deadline = self.deadline = self.loop.time() + seconds
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._expire)

    def _cancel_timer(self) -> None:
        self.deadline = None

    def _expire(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None or self.busy or self.lost:
            return
        if deadline > self.loop.time():
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._expire)
            return
        if self.served == 0 or self.conn.head_started:
            self.write(error_response(408))
        self.close()


class ASGICycle:
    """One request's ``receive`` and ``send`` for an ASGI app, on the loop thread."""

    __slots__ = ("body_done", "proto", "request", "response", "sent")

    def __init__(self, proto: HTTPProtocol, request: Request) -> None:
        self.proto = proto
        self.request = request
        self.response = ResponseState(request)
        self.sent = 0
        self.body_done = False

    def run(self) -> None:
        asgi = self.proto.settings.asgi
        assert asgi is not None
        scope = http_scope(asgi.template, self.request, self.proto.addr)
        start_eagerly(asgi.app(scope, self.receive, self.send), self.app_done)

    async def receive(self) -> Message:
        proto, body = self.proto, self.request.body
        if self.body_done:  # the whole body was delivered: what is left to say is goodbye
            while not (self.response.complete or proto.lost):
                await proto.wait()
            return {"type": "http.disconnect"}
        while True:
            if proto.lost or body.truncated:
                self.body_done = True
                return {"type": "http.disconnect"}
            if body.buffered or body.complete:
                data = proto.take(body, -1)
                more = not body.complete
                self.body_done = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.request.expect_continue and not self.response.started and not self.sent:
                proto.write(CONTINUE)
                self.request.expect_continue = False
            await proto.wait()

    async def send(self, message: Message) -> None:
        proto = self.proto
        if proto.lost:
            raise ClientDisconnected("the client went away")
        kind = message["type"]
        if kind == "http.response.start":
            self.response.start(message)
        elif kind == "http.response.body":
            data = self.response.body(message)
            if data:
                proto.write(data)
                self.sent += len(data)
            while proto.write_paused and not proto.lost:
                await proto.wait()
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} for an http scope")

    def app_done(self, error: BaseException | None) -> None:
        proto, request = self.proto, self.request
        target = request.target.decode("latin-1")
        if error is not None and not isinstance(error, ClientDisconnected):
            app_log.error(
                "%s %s: app raised",
                request.method,
                target,
                exc_info=(type(error), error, error.__traceback__),
            )
        elif not self.response.complete and not proto.lost:
            app_log.error(
                "%s %s: app returned without completing its response", request.method, target
            )
        if self.response.complete:
            proto.finished(request, self.response.status, self.sent, self.response.keep_alive)
            return
        if not self.response.started and not proto.lost:
            proto.write(error_response(500))
            proto.finished(request, 500, 0, False)
        else:
            proto.finished(request, self.response.status, self.sent, False)
