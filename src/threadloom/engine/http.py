"""HTTP/1.1 for the thread-based models: the engine's pump driving :class:`HTTP1Core`.

Theory of operation
-------------------
One :class:`HTTPSession` per connection follows the engine contract
(:mod:`threadloom.engine.session`) and moves bytes; every rule of the connection (when a
request goes to the app, deadlines, 408 or a silent close, refusals, upgrades, routing)
is :mod:`threadloom.engine.http1_core`'s. The session adds what only a blocking driver has:

* ``feed`` runs wherever the model reads (the pool's I/O thread, or the connection's own
  thread); the core says READ, SERVE or CLOSE (after a refusal, sent here).
* ``serve`` runs one exchange on a thread that may block, reading further body bytes from
  the socket on demand through ``wsgi.input``, and answers SERVE (the next pipelined
  request is ready), READ (keep-alive), WRITE (the response waits for a slow reader: the
  owner sends it, and serves the next request once it is out; :mod:`threadloom.engine.outbox`)
  or CLOSE.
* ``--timeout-request`` runs the app under the shared watchdog thread.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import IO, Any

from threadloom.engine.body import EMPTY_INPUT, BodyReader
from threadloom.engine.h2 import H2Session
from threadloom.engine.http1_core import (
    DRAIN_LIMIT,
    HTTP1Core,
    HTTPSettings,
    Route,
)
from threadloom.engine.outbox import STREAM_QUEUE_MAX, FileSegment, Outbox, file_segment
from threadloom.engine.request_timeout import Deadline, GuardedSink, Watchdog, answer_timeout
from threadloom.engine.session import CLOSE, READ, WRITE, Want
from threadloom.engine.sockio import recv_waiting, reset_on_close
from threadloom.engine.ws import BlockingLink, handshake, run_sync_handler, upgrade_required
from threadloom.interfaces.wsgi import Outcome
from threadloom.protocols.http1 import Request, RequestBody, error_response
from threadloom.protocols.http2 import looks_like_preface
from threadloom.protocols.websocket import HandshakeError, reject_response
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")
#: (module globals: reading a member through the enum class costs ~70 ns)
WSGI, STATIC = Route.WSGI, Route.STATIC

__all__ = ["HTTPSession", "HTTPSettings"]


class HTTPSession:
    """One HTTP connection under a thread-based model (see the module docstring)."""

    __slots__ = ("addr", "after_write", "core", "h2", "outbox", "settings", "sniff", "sock")

    def __init__(self, settings: HTTPSettings, sock: socket.socket, addr: Any) -> None:
        self.settings = settings
        self.sock = sock
        self.addr = addr
        self.core = HTTP1Core(settings, time.monotonic(), addr)
        sock.setblocking(False)  # for life: see engine/sockio.py
        self.outbox = Outbox(sock, settings.timeout_io, settings.min_send_rate)
        self.after_write = CLOSE  # what comes once the outbox is empty
        #: the first bytes, until they say whether this is HTTP/2 (its preface) or not
        self.sniff: bytes | None = b"" if settings.h2 else None
        self.h2: H2Session | None = None  # the HTTP/2 connection this one became

    # -- the engine contract ---------------------------------------------------------------

    def start(self) -> Want:
        return READ

    def feed(self, data: bytes) -> Want:
        if self.sniff is not None:
            return self._sniff(data)
        if self.h2 is not None:
            return self.h2.feed(data)
        want = self.core.feed(data, time.monotonic())
        if want is CLOSE:
            self._send_quietly(self.core.take_refusal())
        return want

    def _sniff(self, data: bytes) -> Want:
        """The connection's first bytes: HTTP/2's preface makes it an :class:`H2Session`
        (RFC 9113 3.3, prior knowledge; over TLS the client sends it after ALPN's h2)."""
        first = self.sniff + data if self.sniff else data
        preface = looks_like_preface(first) if data else False
        if preface is None:
            self.sniff = first
            return READ
        self.sniff = None
        if preface:
            self.h2 = H2Session(self.settings, self.sock, self.addr, self.outbox)
            self.settings.h2_connections.add(self.h2)
            return self.h2.feed(first)
        if self.settings.http == "2":
            log.info("refused HTTP/1.1 from %s: --http 2 serves HTTP/2 only", self.addr)
            self._send_quietly(error_response(505))
            return CLOSE
        return self.feed(first)

    def serve(self) -> Want:
        """Run one exchange (the next request, in order) on this thread that may block.
        The want after it may be SERVE again (a pipelined request is ready): the model
        then runs that one as a new unit of work (``pool`` queues it behind the others)."""
        if self.h2 is not None:
            return self.h2.serve()  # (only under a model without an ExchangeRunner)
        core = self.core
        request, route = core.begin()
        if route is WSGI:
            want = self._serve_wsgi(request)
        elif route is STATIC:
            want = self._serve_static(request)
        else:
            want = self._serve_websocket(request)
        if want is CLOSE and core.refusal:
            self._send_quietly(core.take_refusal())
        if self.outbox.waiting:
            self.after_write = want
            return WRITE  # the owner sends the rest: this thread is free
        return want

    def flush(self) -> Want:
        if self.h2 is not None:
            return self.h2.flush()
        try:
            if not self.outbox.flush():
                return WRITE
        except OSError:
            self.outbox.clear()
            return CLOSE
        return self.after_write

    def deadline(self) -> float | None:
        if self.h2 is not None:
            return self.h2.deadline()
        return self.outbox.deadline() if self.outbox.waiting else self.core.deadline()

    def expire(self) -> Want:
        if self.h2 is not None:
            return self.h2.expire()
        if self.outbox.waiting:
            log.info("%s reads its response too slowly (--min-send-rate): dropped", self.addr)
            STATS.slow_reader()
            self.outbox.clear()
            reset_on_close(self.sock)
            return CLOSE
        self._send_quietly(self.core.expire())
        return CLOSE

    def overloaded(self) -> None:
        self._send_quietly(self.core.overloaded())

    @property
    def idle(self) -> bool:
        if self.h2 is not None:
            return self.h2.idle
        return self.core.idle and not self.outbox.waiting

    def close(self) -> None:
        if self.h2 is not None:
            self.h2.close()
        self.sock.close()

    # -- serving -----------------------------------------------------------------------------

    def _serve_static(self, request: Request) -> Want:
        """A ``--static`` file: its head, then the kernel copies the file from the outbox
        (which owns the descriptor from here on)."""
        static = self.settings.static
        assert static is not None
        began = time.perf_counter()
        answer = static.answer(request)
        segment = None
        if answer.fd is not None:
            segment = FileSegment(answer.fd, answer.offset, answer.length)
        try:
            self.outbox.send(answer.head)
            if segment is not None:
                self.outbox.send_file(segment)
                segment = None
        except OSError:
            return CLOSE  # the client is gone
        finally:
            if segment is not None:
                segment.close()
        body = request.body
        keep_alive = answer.keep_alive and body.complete and not body.buffered
        elapsed = time.perf_counter() - began
        return self.core.finish(
            request, answer.status, answer.length, elapsed, keep_alive, time.monotonic()
        )

    def _serve_wsgi(self, request: Request) -> Want:
        runner = self.settings.runner
        assert runner is not None, "an HTTP session serves WSGI or WebSocket handlers"
        received = request.body
        body = (
            EMPTY_INPUT
            if received.complete and not received.buffered
            else BodyReader(request, self)
        )
        began = time.perf_counter()
        watchdog = self.settings.watchdog
        if watchdog is None:
            outcome = runner.run(request, body, self, self.addr)
        elif (watched := self._run_watched(watchdog, request, body)) is None:
            return CLOSE  # --timeout-request answered 503, logged and counted it
        else:
            outcome = watched
        keep_alive = outcome.keep_alive and not body.failed
        if keep_alive and (received.buffered or not received.complete):
            keep_alive = body.drain(DRAIN_LIMIT)
        return self.core.finish(
            request,
            outcome.status,
            outcome.sent,
            time.perf_counter() - began,
            keep_alive,
            time.monotonic(),
            outcome.remote,
            outcome.request_id,
        )

    def _run_watched(
        self, watchdog: Watchdog, request: Request, body: BodyReader
    ) -> Outcome | None:
        """Run the app under ``--timeout-request``; None if the timeout answered instead."""
        assert self.settings.runner is not None
        deadline = watchdog.watch(lambda d: self._timed_out(d, request))
        try:
            sink = GuardedSink(self, deadline)
            outcome = self.settings.runner.run(request, body, sink, self.addr)
        finally:
            watchdog.done(deadline)
        return None if deadline.expired else outcome

    def _timed_out(self, deadline: Deadline, request: Request) -> None:
        """On the watchdog thread, under the deadline's lock: 503, shut down, log, count."""
        data = answer_timeout(deadline, request, self.addr, "under a thread model")
        self._send_quietly(data)
        self._log(request, 503, len(data))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the app if it waits on the body
        except OSError:
            pass

    def _serve_websocket(self, request: Request) -> Want:
        """Run the bare sync handler on an Upgrade; answer 426 to anything else."""
        ws = self.settings.ws
        assert ws is not None, "thread models serve WSGI apps or WebSocket handlers only"
        core = self.core
        if not core.is_websocket_upgrade(request):
            data, keep_alive = upgrade_required(request)
            self.send(data)
            body = request.body
            keep_alive = keep_alive and body.complete and not body.buffered
            return core.finish(request, 426, len(data), 0.0, keep_alive, time.monotonic())
        try:
            head, protocol = handshake(request, ws)
        except HandshakeError as exc:
            log.info("refused a WebSocket handshake from %s: %s", self.addr, exc)
            self._send_quietly(reject_response(exc))
            self._log(request, exc.status, 0)
            return CLOSE
        self.send(head)
        self._log(request, 101, 0)
        self.outbox.drain_below(0)  # the WebSocket writes to the socket itself from here
        link = BlockingLink(self.sock, protocol, request, self.addr, ws)
        run_sync_handler(ws, link, core.conn.trailing_data)
        return CLOSE

    def _log(self, request: Request, status: int, sent: int) -> None:
        access_log = self.settings.access_log
        if access_log.active():
            access_log.write(request, self.addr, status, sent)

    # -- the body reader's side (wsgi.input) -----------------------------------------------

    def receive_more(self, body: RequestBody) -> bool:
        """Blocking read for ``wsgi.input``: feed one read to the core; False at EOF or error."""
        wait = self.core.body_deadline(body, time.monotonic()) - time.monotonic()
        if wait <= 0:
            log.info("request body from %s too slow (--min-body-rate): cut off", self.addr)
            return False
        try:
            data = recv_waiting(self.sock, 65536, wait)
        except OSError:
            data = b""
        return self.core.receive_body(data)

    def take(self, body: RequestBody, size: int) -> bytes:
        return body.take(size)

    # -- the ResponseSink the WSGI runner writes to -------------------------------------------

    can_sendfile = True

    def send(self, data: bytes) -> None:
        """Part of a response: what the socket does not take waits in the outbox; a
        streamed response that has queued too much waits for the reader (see outbox.py)."""
        outbox = self.outbox
        outbox.send(data)
        if outbox.waiting > STREAM_QUEUE_MAX:
            outbox.drain_below(STREAM_QUEUE_MAX)

    def send_whole(self, head: bytes, body: bytes) -> None:
        """A whole response, head and body side by side: never blocks, never copies."""
        self.outbox.send_parts(head, body)

    def sendfile(self, file: IO[bytes], count: int) -> int:
        """``wsgi.file_wrapper`` over a real file: the kernel copies it (under TLS the
        outbox reads and seals it piece by piece), and what the socket does not take waits
        in the outbox like any response (never for this thread).
        Returns what will be sent: ``count``, or less if the file is shorter."""
        segment = file_segment(file, count)
        count = segment.remaining
        self.outbox.send_file(segment)
        return count

    # -- errors ------------------------------------------------------------------------------

    def _send_quietly(self, data: bytes) -> None:
        """Best effort, never blocking for long: the connection is about to close anyway."""
        if not data:
            return
        try:
            self.sock.send(data)
        except OSError:
            pass
