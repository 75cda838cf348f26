"""HTTP/1.1 on the asyncio model: an ``asyncio.Protocol`` driving :class:`HTTP1Core`.

Theory of operation
-------------------
The loop thread owns the connection: ``data_received`` feeds the core, one timer enforces
the core's deadline, and one exchange is in flight at a time (pipelined requests wait in
the core, in order). Every rule of the connection (when a request goes to the app, the
deadlines, 408 or a silent close, refusals, upgrades, routing) is the core's
(:mod:`threadloom.engine.http1_core`); this module moves bytes, runs timers and runs apps.
An ASGI app runs on the loop (eagerly: a task is made only if it suspends, see
:mod:`threadloom.engine.asgi_run`); a WSGI app runs on the model's bounded thread pool and
talks back only through the doors of :mod:`threadloom.engine.wsgi_bridge`, whose top says
every thread-safety rule between the two.

One writer per connection: every response byte, from the app's thread or the loop, goes
through :meth:`HTTPProtocol.write`, which hands the transport at most ``SLICE`` bytes at a
time and keeps the rest as memoryviews of the app's buffers (``pending``) until the
transport resumes writing. A slow reader thus costs a bounded transport buffer, not a copy
of its response, and no thread; the next pipelined request waits until ``pending`` is
empty. While bytes wait, :class:`~threadloom.engine.outbox.SendBudget` (``--min-send-rate``
after ``--timeout-io`` of grace) decides when the reader is dropped.

When the core's body buffer passes its high-water mark the protocol stops reading the socket
until the app has consumed it (flow control for uploads, under either interface).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, cast

from threadloom import portable
from threadloom.engine.asgi_http import ASGICycle
from threadloom.engine.cork import cork_for
from threadloom.engine.h2_aio import H2Protocol
from threadloom.engine.http1_core import HTTP1Core, HTTPSettings, Route
from threadloom.engine.outbox import FileSegment, SendBudget
from threadloom.engine.request_timeout import Deadline, answer_timeout
from threadloom.engine.session import CLOSE, SERVE, AsyncRuntime
from threadloom.engine.sockio import reset_on_close
from threadloom.engine.ws import WSSettings, handshake
from threadloom.engine.ws_aio import ASGIWebSocketCycle, AsyncWebSocket, serve_bare_handler
from threadloom.engine.wsgi_bridge import WSGIBridge
from threadloom.interfaces.wsgi import Outcome
from threadloom.protocols.http1 import Request, RequestBody, error_response, full_response
from threadloom.protocols.http2 import looks_like_preface
from threadloom.protocols.websocket import (
    HandshakeError,
    WebSocketConnection,
    check_request,
    reject_response,
)
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

#: The most handed to the transport at once: what it cannot send at once, it copies.
SLICE = 64 * 1024
ASGI = Route.ASGI  # (a module global: reading it through the enum class costs ~70 ns)
WSGI = Route.WSGI
#: How much earlier a new deadline must be to re-aim the connection's timer (see _arm).
TIMER_SLACK = 0.01
#: The slice, and the transport's high-water mark, under TLS (see connection_made).
TLS_SLICE = 16 * 1024
#: What of a file is read and handed to the transport when ``sendfile`` has filled the socket:
#: the transport then says when it has drained (resume_writing) and the kernel copies on.
WAKE_PIECE = 16 * 1024


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
        self.core = HTTP1Core(settings, time.monotonic())
        self.conn = self.core.conn
        self.transport: asyncio.Transport | None = None
        self.addr: Any = None
        self.busy = False
        self.began = 0.0  # perf_counter() when the current request went to the app
        self.lost = False
        self.bridge = WSGIBridge(self)  # a WSGI app's doors, from its pool thread
        self.lock = self.bridge.lock  # (guards the body buffer: the bridge's rule 2)
        #: whether an app thread may touch the body (a WSGI app): else no lock is needed
        self.threaded = settings.runner is not None
        #: what waits for the transport (loop): views of the app's buffers, and files
        self.pending: deque[memoryview | FileSegment] = deque()
        self.slice = SLICE  # the most handed to the transport at once
        #: a small write held back until the loop's pass ends (engine/cork.py), or None
        self.held: bytes | memoryview | None = None
        self.cork = cork_for(loop)
        #: the socket ``os.sendfile`` copies files to: None until a file is sent, False
        #: where the kernel cannot (TLS, no sendfile, a transport without a socket)
        self.file_sink: Any = None
        self.waking = False  # a wake piece is out: the transport's limits are (0, 0)
        self.write_paused = False  # the transport asked us to stop (pending then waits)
        self.close_when_sent = False
        self.budget = SendBudget(settings.timeout_io, settings.min_send_rate)
        self.stall_timer: asyncio.TimerHandle | None = None  # the reader's SendBudget
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when the timer fires (loop time)
        self.timer_deadline = 0.0  # ... the core's deadline it was aimed at (core time)
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None  # ASGI: more body, drain or disconnect
        self.ws: AsyncWebSocket | None = None  # after a WebSocket handshake: it gets the bytes
        # The current request's client as the app saw it and its X-Request-ID, for the log.
        self.remote: Any = None
        self.request_id: str | None = None
        # --timeout-request, while a WSGI app runs on the pool (engine/request_timeout.py)
        self.request_deadline: Deadline | None = None
        self.request_timer: asyncio.TimerHandle | None = None
        #: the first bytes, until they say whether this is HTTP/2 (its preface) or not
        self.sniff: bytes | None = b"" if settings.h2 else None

    # -- asyncio callbacks (loop thread) ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self.addr is None:  # else a PROXY header named the client (engine/preface.py)
            self.addr = transport.get_extra_info("peername")
        self.core.addr = self.addr
        if transport.get_extra_info("sslcontext") is not None:
            # TLS transports encrypt what they are given at once and keep the ciphertext:
            # pause the writer early, so a slow reader holds little of it
            self.transport.set_write_buffer_limits(high=TLS_SLICE)
            self.slice = TLS_SLICE
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.sniff is not None:
            self._sniff(data)
            return
        if self.ws is not None:
            self.ws.feed(data)
            self._wake()
            return
        core = self.core
        if self.threaded:  # a WSGI app's thread may be reading the body: the bridge's rule 2
            with self.lock:
                want = core.feed(data, time.monotonic())
                self.bridge.fed()
        else:
            want = core.feed(data, time.monotonic())
        if want is CLOSE and (self.busy or core.refusal):
            self.lost = True  # whoever waits for this body must give up
            self.bridge.release()
            self._refuse()
            return
        if not self.reading_paused and self.conn.paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        if self.waiter is not None:
            self._wake()
        if not self.busy:
            self._next(want)

    def _sniff(self, data: bytes) -> None:
        """The connection's first bytes: HTTP/2's preface hands it to an
        :class:`~threadloom.engine.h2_aio.H2Protocol` (prior knowledge, or after ALPN)."""
        first = self.sniff + data if self.sniff else data
        preface = looks_like_preface(first) if data else False
        if preface is None:
            self.sniff = first
            return
        self.sniff = None
        if not preface:
            if self.settings.http == "2":
                log.info("refused HTTP/1.1 from %s: --http 2 serves HTTP/2 only", self.addr)
                self.write(error_response(505))
                self.close()
                return
            self.data_received(first)
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._cancel_timer()
        transport = self.transport
        assert transport is not None
        h2 = H2Protocol(self.settings, self.runtime, self.loop, self.done, self.addr)
        transport.set_protocol(h2)
        h2.connection_made(transport)
        h2.data_received(first)

    def eof_received(self) -> bool:
        if self.sniff is not None:
            self.sniff = None
            self.close()
            return False
        self.data_received(b"")
        # Keep the transport: a response may still be on its way; we close it. (TLS has no
        # half-close: asyncio closes it anyway, and warns when asked not to.)
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.held = None
        self.bridge.release()
        self._drop_pending()
        self._cancel_timer()
        if self.ws is not None:
            self.ws.connection_lost()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.stall_timer is None:  # the reader has just fallen behind
            self.budget.behind(self.loop.time())
            self._check_reader()
        if self.ws is not None:  # replies to a flood of pings must not grow the buffer
            self.pause_ws_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.waking:
            self._stop_waking()
        self._pump()
        if self.write_paused:
            return  # pending filled the transport again
        if self.stall_timer is not None:  # caught up
            self.stall_timer.cancel()
            self.stall_timer = None
        if self.ws is not None:
            self.ws.writable()
        self._wake()
        if self.close_when_sent:
            self.close()
        elif not self.busy:
            self._next()  # the response is out: the next request, or the keep-alive wait

    def _check_reader(self) -> None:
        """While the reader is behind: drop it once its :class:`SendBudget` is spent."""
        self.stall_timer = None
        if self.lost or not self.write_paused:
            return
        deadline = self.budget.deadline()
        if self.loop.time() < deadline:
            self.stall_timer = self.loop.call_at(deadline, self._check_reader)
            return
        log.info("%s reads its response too slowly (--min-send-rate): dropped", self.addr)
        STATS.slow_reader()
        if self.transport is not None:
            reset_on_close(self.transport.get_extra_info("socket"))
        self.abort()

    # -- dispatch (loop thread) ---------------------------------------------------------------

    def _next(self, want: object = None) -> None:
        """Start the next exchange when the core has one ready, else wait for its deadline
        (``want``: what the core already said, when it was just asked)."""
        if self.lost or self.pending:
            return  # (one whole response waits at most: resume_writing calls us again)
        if want is None:
            want = self.core.next_step(time.monotonic())
        if want is SERVE:
            self._begin()
        elif want is CLOSE:
            self.close()
        else:
            self._arm()
        if self.reading_paused:
            self.maybe_resume_reading()

    def _begin(self) -> None:
        """Hand the next request to whoever the core routes it to."""
        self.busy = True
        self.began = began = time.perf_counter()
        self.cork.begin(began)
        request, route = self.core.begin()
        runtime = self.runtime
        if (began > runtime.admit_until or route is WSGI) and not runtime.admits(
            route is WSGI, began
        ):
            self.write(self.core.overloaded())  # (the model logged the overload episode)
            self.close()
            return
        if route is ASGI:
            ASGICycle(self, request)
        elif route is Route.ASGI_WEBSOCKET:
            ASGIWebSocketCycle(self, request).run()
        elif route is Route.WEBSOCKET:
            serve_bare_handler(self, request)
        elif route is Route.STATIC:
            self._serve_static(request)
        else:
            if self.settings.timeout_request:
                self._watch(request)
            future = asyncio.ensure_future(self.runtime.run_sync(self.bridge.run, request))
            future.add_done_callback(self._wsgi_finished)

    def _serve_static(self, request: Request) -> None:
        """A ``--static`` file, on the loop: its head, then the file waits in ``pending``
        and goes out as the transport drains (``_file_piece``; no thread is involved)."""
        static = self.settings.static
        assert static is not None
        answer = static.answer(request)
        self.write(answer.head)
        if answer.fd is not None:
            self.queue_file(FileSegment(answer.fd, answer.offset, answer.length))
        body = request.body
        keep_alive = answer.keep_alive and body.complete and not body.buffered
        self.finished(request, answer.status, answer.length, keep_alive)

    def body_wait(self, body: RequestBody) -> float:
        """Seconds more of ``body`` may be waited for (the core's body budget)."""
        now = time.monotonic()
        return self.core.body_deadline(body, now) - now

    async def wait_for_body(self, body: RequestBody) -> bool:
        """ASGI: wait for more of ``body`` (or any wake-up); False when the sender stalled
        or dribbled past its budget, as a WSGI read would give up."""
        wait = self.body_wait(body)
        if wait > 0:
            if self.waiter is None or self.waiter.done():
                self.waiter = self.loop.create_future()
            done, _ = await asyncio.wait((self.waiter,), timeout=wait)
            if done:
                return True
        log.info("request body from %s stalled or too slow (--min-body-rate): cut off", self.addr)
        return False

    def finished(self, request: Request, status: int, sent: int, keep_alive: bool) -> None:
        """A response is done: the core counts and logs it and says what comes next."""
        self.busy = False
        remote, request_id, self.remote, self.request_id = self.remote, self.request_id, None, None
        self.cork.ended = now = time.perf_counter()
        elapsed = now - self.began
        core = self.core
        want = core.finish(
            request, status, sent, elapsed, keep_alive, time.monotonic(), remote, request_id
        )
        if core.refusal:
            self.write(core.take_refusal())
        self._next(want)

    def _watch(self, request: Request) -> None:
        """``--timeout-request`` for a WSGI app: one loop timer (engine/request_timeout.py)."""
        deadline = Deadline(self.settings.timeout_request, lambda d: self._timed_out(d, request))
        self.request_deadline = deadline
        self.request_timer = self.loop.call_later(self.settings.timeout_request, deadline.expire)

    def _timed_out(self, deadline: Deadline, request: Request) -> None:
        """On the loop, under the deadline's lock: 503, close, log, count."""
        data = answer_timeout(deadline, request, self.addr, "on the asyncio model's thread pool")
        self.write(data)
        self.log_access(request, 503, len(data))
        self.close()

    def _unwatch(self) -> bool:
        """The WSGI call returned: stop its clock; True if the timeout answered instead."""
        deadline, timer = self.request_deadline, self.request_timer
        if deadline is None or timer is None:
            return False
        self.request_deadline = self.request_timer = None
        timer.cancel()
        deadline.finish()
        return deadline.expired

    def _wsgi_finished(self, future: asyncio.Future[tuple[Request, Outcome, bool]]) -> None:
        if self._unwatch():
            self.busy = False
            self.close()
            return
        try:
            request, outcome, body_ok = future.result()
        except Exception:
            log.exception("serving a request failed unexpectedly")
            self.busy = False
            self.close()
            return
        self.remote, self.request_id = outcome.remote, outcome.request_id
        self.finished(request, outcome.status, outcome.sent, outcome.keep_alive and body_ok)

    def log_access(self, request: Request, status: int, sent: int) -> None:
        if self.settings.access_log.active():
            self.settings.access_log.write(
                request,
                self.remote or self.addr,
                status,
                sent,
                time.perf_counter() - self.began,
                self.request_id,
            )
        self.remote = self.request_id = None

    # -- WebSocket (loop thread; see engine/ws_aio.py) --------------------------------------

    def is_websocket_upgrade(self, request: Request) -> bool:
        """Whether ``request`` is the Upgrade that ended HTTP on this connection."""
        return self.core.is_websocket_upgrade(request)

    def check_websocket(self, request: Request) -> None:
        check_request(request.method.encode("ascii"), request.http_version, request.headers)

    def accept_websocket(
        self,
        request: Request,
        settings: WSSettings,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> WebSocketConnection:
        head, conn = handshake(request, settings, subprotocol, extra_headers)
        self.write(head)
        self.log_access(request, 101, 0)
        return conn

    def refuse_websocket(self, request: Request, exc: HandshakeError) -> None:
        self.write(reject_response(exc))
        self.finished(request, exc.status, 0, False)

    def deny_websocket(self, request: Request, status: int) -> None:
        """No WebSocket after all (the app closed before accepting, or failed): the
        connection closes after this answer."""
        data, _ = full_response(request, status, [(b"Content-Type", b"text/plain")], b"")
        self.write(data)
        self.finished(request, status, len(data), False)

    def start_websocket(self, websocket: AsyncWebSocket) -> AsyncWebSocket:
        """The handshake is answered: from now on every byte goes to ``websocket``."""
        self._cancel_timer()
        self.ws = websocket
        early, self.conn.trailing_data = self.conn.trailing_data, b""
        if early:
            websocket.feed(early)
        return websocket

    def pause_ws_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_ws_reading(self) -> None:
        if self.transport is not None and self.reading_paused and not self.lost:
            self.reading_paused = False
            self.transport.resume_reading()

    def wake(self) -> None:
        """Wake whoever awaits :meth:`wait` (a WebSocket's state changed)."""
        self._wake()

    def take(self, body: RequestBody, size: int) -> bytes:
        """Body bytes for an ASGI app (on the loop), under the bridge's rule 2."""
        return self.bridge.take(body, size)

    # -- shared helpers (loop thread) ---------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data`` behind what waits and hand the transport what it takes now; the
        first small write of a pass is held until the pass ends (engine/cork.py)."""
        if self.transport is None or self.transport.is_closing() or not data:
            return
        if not self.pending and not self.write_paused and len(data) <= self.slice:
            if self.held is None and self.cork.busy and self.cork.hold(self):
                self.held = data  # (the common case under load)
                return
            self.release_held()
            self.transport.write(data)
            return
        self.bridge.queued(len(data))
        self.pending.append(memoryview(data))
        self._pump()  # (which hands the transport what is held first)

    def release_held(self) -> None:
        """Hand the transport the write held back in this pass, if any (engine/cork.py)."""
        held = self.held
        if held is not None:
            self.held = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(held)

    def _pump(self) -> None:
        """Hand the transport slices of what waits, until it pauses us."""
        self.release_held()  # (ahead of a file the kernel would send past it)
        pending, transport = self.pending, self.transport
        while pending and not self.write_paused:
            if transport is None or transport.is_closing():
                self._drop_pending()
                return
            first = pending[0]
            if isinstance(first, FileSegment):
                piece: bytes | memoryview | None = self._file_piece(first, transport)
                if piece is None:
                    continue  # the kernel took the whole file
            else:
                piece = first[: self.slice]
                if len(first) > self.slice:
                    pending[0] = first[self.slice :]
                else:
                    pending.popleft()
            if not piece:
                return  # the file ended early: the connection is being dropped
            self.budget.took(len(piece), self.loop.time())
            self.bridge.took(len(piece))
            transport.write(piece)  # may call pause_writing at once

    def queue_file(self, segment: FileSegment) -> None:
        """A file's bytes wait behind what waits (closed at once if the peer left)."""
        if self.lost or self.transport is None or self.transport.is_closing():
            segment.close()
            return
        self.bridge.queued(segment.remaining)
        self.pending.append(segment)
        self._pump()

    def _file_piece(self, segment: FileSegment, transport: asyncio.Transport) -> bytes | None:
        """What of a waiting file goes through the transport now. With nothing ahead of it
        in the transport's buffer the kernel copies the file (``os.sendfile``: no read, no
        copy in the transport): None once it took the whole file; else a short piece read,
        whose flush the transport reports (its limits set to pause at once), so that the
        kernel copies the rest on the next writable edge. Otherwise a slice read, as where
        the kernel cannot (TLS); b"" if the file failed (the connection is then dropped)."""
        if transport.get_write_buffer_size() or not self._kernel_copies(transport):
            return self._read_file(segment, self.slice)
        try:
            sent = segment.send(self.file_sink)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self._file_failed(exc)
        if sent:
            self.budget.took(sent, self.loop.time())
            self.bridge.took(sent)
        if not segment.remaining:
            self.pending.popleft()
            segment.close()
            if self.waking:
                self._stop_waking()
            return None
        if not self.waking:
            self.waking = True
            transport.set_write_buffer_limits(high=0)
        return self._read_file(segment, WAKE_PIECE)

    def _kernel_copies(self, transport: asyncio.Transport) -> bool:
        """Whether ``os.sendfile`` may copy files to this connection's socket (asked once)."""
        if self.file_sink is None:
            sock = transport.get_extra_info("socket")
            plain = transport.get_extra_info("sslcontext") is None
            ok = plain and sock is not None and portable.kernel_sends_files()
            self.file_sink = sock if ok else False
        return self.file_sink is not False

    def _stop_waking(self) -> None:
        """Give the transport back its usual limits (a file's wake piece has drained)."""
        self.waking = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.set_write_buffer_limits()

    def _read_file(self, segment: FileSegment, most: int) -> bytes:
        """The next slice of a waiting file; b"" (and the connection dropped, as its
        framing is broken) if the file ended before its promised length."""
        try:
            piece = segment.read(most)
        except OSError as exc:
            return self._file_failed(exc)
        if not segment.remaining:
            self.pending.popleft()
            segment.close()
        return piece

    def _file_failed(self, exc: OSError) -> bytes:
        """A file being sent failed (or ended early, or the peer left): drop the connection,
        as the response's framing is broken."""
        log.warning("%s: a file being sent failed: %s; connection dropped", self.addr, exc)
        self.abort()
        self._drop_pending()
        return b""

    def _drop_pending(self) -> None:
        """Forget what waits (the connection is gone), closing the files' descriptors."""
        for part in self.pending:
            if type(part) is FileSegment:
                part.close()
        self.pending.clear()

    def close(self) -> None:
        self._cancel_timer()
        self.release_held()
        if self.pending and not self.lost:
            self.close_when_sent = True  # after the response (resume_writing); SendBudget
            return  # bounds how long that takes
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():  # close() waits for a flush: bound it
                self.loop.call_later(self.settings.timeout_io, self.abort)

    def abort(self) -> None:
        """Drop the connection and whatever it still buffers: the peer stopped reading."""
        self.held = None
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def blocked(self) -> bool:
        """Whether a sender must :meth:`drain` before writing more."""
        return self.write_paused or self.transport is None or self.transport.is_closing()

    async def drain(self) -> bool:
        """Wait while writing is paused, ``timeout_io`` at most (then abort): a peer that
        never reads costs a bounded buffer and a bounded wait. False if the peer is gone."""
        if self.transport is None or self.transport.is_closing():
            # writes are dropped now: yield, so that connection_lost can run, and say so;
            # else a handler sending in a loop would never let the loop run again
            await asyncio.sleep(0)
            return False
        if self.write_paused and not self.lost:
            deadline = self.loop.time() + self.settings.timeout_io
            while self.write_paused and not self.lost:
                left = deadline - self.loop.time()
                if left <= 0:
                    self.abort()
                    return False
                if self.waiter is None or self.waiter.done():
                    self.waiter = self.loop.create_future()
                await asyncio.wait((self.waiter,), timeout=left)
        return not self.lost

    async def wait(self) -> None:
        """ASGI side: sleep until data arrives, writing resumes or the connection is lost."""
        if self.waiter is None or self.waiter.done():
            self.waiter = self.loop.create_future()
        await self.waiter

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def maybe_resume_reading(self) -> None:
        if self.reading_paused and not self.conn.paused and not self.lost and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()

    def _refuse(self) -> None:
        """The core refused what came (and counted it, unless an exchange is under way)."""
        self.write(self.core.take_refusal())
        self.close()

    def _arm(self) -> None:
        """Aim the timer at the core's deadline. A timer exists at most once per connection
        and is re-aimed lazily when it fires, so a request costs a float, not a TimerHandle."""
        core = self.core
        if core.in_exchange:
            return  # no deadline runs (core.deadline(), read without a call on the hot path)
        deadline = core.deadline_at
        if deadline is None:
            return
        # (the core's clock is time.monotonic(), the timer's the loop's: uvloop's moves in
        # steps of a millisecond, so a deadline must be TIMER_SLACK earlier to re-aim)
        if self.timer is not None and deadline >= self.timer_deadline - TIMER_SLACK:
            return  # the usual case: a later deadline, found by the timer when it fires
        at = self.loop.time() + (deadline - time.monotonic())
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at, self.timer_deadline = at, deadline
        self.timer = self.loop.call_at(at, self._expire)

    def _cancel_timer(self) -> None:
        """No HTTP deadline applies from here on: the connection closes, or is a WebSocket's
        (the armed timer then finds no deadline and does nothing)."""
        self.core.in_exchange = True

    def _expire(self) -> None:
        self.timer = None
        deadline = self.core.deadline()
        if deadline is None or self.busy or self.lost:
            return
        now = time.monotonic()
        if deadline > now:
            self.timer_at, self.timer_deadline = self.loop.time() + (deadline - now), deadline
            self.timer = self.loop.call_at(self.timer_at, self._expire)
            return
        self.write(self.core.expire())
        self.close()
