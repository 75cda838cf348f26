"""HTTP/1.1 sessions for the thread-based models: the HTTP core driven by the engine's pump.

Theory of operation
-------------------
One :class:`HTTPSession` per connection owns a sans-I/O ``ServerConnection`` and follows the
engine contract (:mod:`threadloom.engine.session`):

* ``feed`` runs wherever the model reads (the pool's I/O thread, or the connection's own
  thread). It parses, answers protocol errors (400/413/414/431/501, then CLOSE), and asks to
  SERVE once a request is ready: its head is complete and its body is complete, or large, or
  awaited behind ``Expect: 100-continue``. Small bodies are thus read by the I/O thread, so a
  slow sender never holds a worker.
* ``serve`` runs on a thread that may block: it serves every request ready (pipelining keeps
  order), reading further body bytes from the socket on demand through ``wsgi.input``, and
  answers READ (keep-alive) or CLOSE.
* Deadlines: a head must arrive within ``timeout_header`` of its first byte (or of accept);
  an idle keep-alive connection closes after ``timeout_keep_alive``; a stalled body read or
  response write gives up after ``timeout_io``.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import IO, Any

from threadloom.config import Config
from threadloom.engine.accesslog import AccessLog
from threadloom.engine.body import EMPTY_INPUT, BodyReader
from threadloom.engine.outbox import STREAM_QUEUE_MAX, Outbox
from threadloom.engine.request_timeout import Deadline, GuardedSink, Watchdog, answer_timeout
from threadloom.engine.session import CLOSE, READ, SERVE, WRITE, Want
from threadloom.engine.sockio import recv_waiting, reset_on_close
from threadloom.engine.ws import (
    BlockingLink,
    WSSettings,
    handshake,
    run_sync_handler,
    upgrade_required,
)
from threadloom.errors import RemoteProtocolError
from threadloom.interfaces.wsgi import Outcome, WSGIRunner
from threadloom.protocols.forwarded import TrustedProxies
from threadloom.protocols.http1 import (
    HTTPLimits,
    Request,
    RequestBody,
    ServerConnection,
    error_response,
)
from threadloom.protocols.websocket import HandshakeError, is_upgrade_request, reject_response
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

#: A request whose body is still arriving is handed to a worker once this much is buffered.
DISPATCH_BODY_BYTES = 64 * 1024
#: Unread request body a worker will discard to keep the connection alive; more -> close.
DRAIN_LIMIT = 256 * 1024


def body_wait(settings: HTTPSettings, since: float, received: int, now: float) -> float:
    """Seconds the next wait for request body bytes may take (<= 0: give up now).

    Never more than ``timeout_io`` (a stall), and never past the body's budget: the
    ``timeout_io`` of grace it began with plus a second per ``min_body_rate`` bytes received
    since. A sender that dribbles a byte now and then to dodge the stall bound (slow POST)
    is thus cut off, while any upload faster than the rate never meets the budget.
    """
    wait = settings.timeout_io
    if settings.min_body_rate:
        wait = min(wait, since + settings.timeout_io + received / settings.min_body_rate - now)
    return wait


class ASGIApp:
    """An ASGI app with what its request scopes share (built by the service).

    ``proxies`` may speak for the client (X-Forwarded-*); ``request_ids`` gives every
    request an X-Request-ID (see :mod:`threadloom.interfaces.asgi`).
    """

    def __init__(
        self,
        app: Any,
        template: dict[str, Any],
        proxies: TrustedProxies | None = None,
        request_ids: bool = False,
    ) -> None:
        self.app = app
        self.template = template
        self.proxies = proxies
        self.request_ids = request_ids


class HTTPSettings:
    """Per-server constants every session shares (limits, timeouts, the app)."""

    def __init__(
        self,
        config: Config,
        runner: WSGIRunner | None = None,
        asgi: ASGIApp | None = None,
        ws: WSSettings | None = None,
    ) -> None:
        self.runner = runner
        self.asgi = asgi
        self.ws = ws  # WebSocket: a bare handler, or the limits of an ASGI app's routes
        self.limits = HTTPLimits(
            max_header_size=config.max_header_size, max_body_size=config.max_body_size
        )
        self.timeout_header = config.timeout_header
        self.timeout_keep_alive = config.timeout_keep_alive
        self.timeout_io = config.timeout_io
        self.min_body_rate = config.min_body_rate
        self.min_send_rate = config.min_send_rate
        #: --timeout-request: thread models share a watchdog thread; asyncio uses loop timers
        self.timeout_request = config.timeout_request
        self.watchdog = Watchdog(config.timeout_request) if config.timeout_request else None
        self.access_log = AccessLog(config.access_log, config.access_log_format)


class HTTPSession:
    """One HTTP connection under a thread-based model (see the module docstring)."""

    __slots__ = (
        "addr",
        "after_write",
        "body_of",
        "body_since",
        "conn",
        "deadline_at",
        "head_since",
        "outbox",
        "served",
        "serving",
        "settings",
        "sock",
    )

    def __init__(self, settings: HTTPSettings, sock: socket.socket, addr: Any) -> None:
        self.settings = settings
        self.sock = sock
        self.addr = addr
        self.conn = ServerConnection(settings.limits)
        sock.setblocking(False)  # for life: see engine/sockio.py
        self.deadline_at = time.monotonic() + settings.timeout_header
        self.head_since: float | None = None
        self.served = 0
        self.serving = False
        self.body_of: RequestBody | None = None  # the body whose budget body_since starts
        self.body_since = 0.0
        self.outbox = Outbox(sock, settings.timeout_io, settings.min_send_rate)
        self.after_write = CLOSE  # what comes once the outbox is empty

    # -- the engine contract ---------------------------------------------------------------

    def start(self) -> Want:
        return READ

    def feed(self, data: bytes) -> Want:
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._refuse(exc)
            return CLOSE
        requests = self.conn.requests
        if requests:
            body = requests[0].body
            if body.complete or requests[0].expect_continue or body.buffered >= DISPATCH_BODY_BYTES:
                return SERVE
            self.deadline_at = self._body_deadline(body)
            return READ
        if not data:
            return CLOSE
        if self.head_since is None and self.conn.head_started:
            self.head_since = time.monotonic()
            self.deadline_at = self.head_since + self.settings.timeout_header
        return READ

    def serve(self) -> Want:
        self.serving = True  # for `idle`: a request is being served
        try:
            want = self._serve_ready()
        finally:
            self.serving = False
        if self.outbox.waiting:
            self.after_write = want
            return WRITE  # the owner sends the rest: this thread is free
        return want

    def flush(self) -> Want:
        try:
            if not self.outbox.flush():
                return WRITE
        except OSError:
            self.outbox.clear()
            return CLOSE
        return self.after_write

    def deadline(self) -> float | None:
        return self.outbox.deadline() if self.outbox.waiting else self.deadline_at

    def expire(self) -> Want:
        if self.outbox.waiting:
            log.info("%s reads its response too slowly (--min-send-rate): dropped", self.addr)
            STATS.slow_reader()
            self.outbox.clear()
            reset_on_close(self.sock)
            return CLOSE
        if self.served == 0 or self.conn.head_started or self.conn.requests:
            self._send_quietly(error_response(408))
        return CLOSE

    def overloaded(self) -> None:
        STATS.request(503, 0.0)
        self._send_quietly(error_response(503))

    @property
    def idle(self) -> bool:
        # A fresh connection is not idle: its first request is on its way, and closing it
        # on shutdown would lose it (a worker replaced on SIGHUP must not drop anything).
        return (
            self.served > 0
            and not self.serving
            and not self.outbox.waiting
            and not self.conn.requests
            and not self.conn.head_started
        )

    def close(self) -> None:
        self.sock.close()

    # -- serving -----------------------------------------------------------------------------

    def _serve_ready(self) -> Want:
        settings = self.settings
        runner = settings.runner
        log_access = settings.access_log.active()
        requests = self.conn.requests
        conn = self.conn
        while requests:
            if self.outbox.waiting:
                return SERVE  # one whole response waits at most: the next once it is sent
            request = requests.popleft()
            # only a request with an Upgrade field can be a WebSocket handshake
            if settings.ws is not None and (
                runner is None or (request.upgrade is not None and self._is_websocket(request))
            ):
                if not self._serve_websocket(request):
                    return CLOSE
                continue
            assert runner is not None, "an HTTP session serves WSGI or WebSocket handlers"
            received = request.body
            if received.complete and not received.buffered:
                body = EMPTY_INPUT
            else:
                body = BodyReader(request, self)
            began = time.perf_counter()
            if settings.watchdog is None:
                outcome = runner.run(request, body, self, self.addr)
            elif (watched := self._run_watched(settings.watchdog, request, body)) is None:
                return CLOSE  # --timeout-request answered 503, logged and counted it
            else:
                outcome = watched
            self.served += 1
            elapsed = time.perf_counter() - began
            STATS.request(outcome.status, elapsed)
            if log_access:
                settings.access_log.write(
                    request,
                    outcome.remote or self.addr,
                    outcome.status,
                    outcome.sent,
                    elapsed,
                    outcome.request_id,
                )
            if not outcome.keep_alive or body.failed:
                return CLOSE
            if (received.buffered or not received.complete) and not body.drain(DRAIN_LIMIT):
                return CLOSE
            if conn.upgraded and not self._decline_upgrade():
                return CLOSE
        if conn.peer_closed:
            return CLOSE
        now = time.monotonic()
        if conn.head_started:
            self.head_since = now
            self.deadline_at = now + settings.timeout_header
        else:
            self.head_since = None
            self.deadline_at = now + settings.timeout_keep_alive
        return READ

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

    def _is_websocket(self, request: Request) -> bool:
        """Whether ``request`` is the WebSocket Upgrade that ended HTTP on this connection."""
        return not self.conn.requests and self.conn.upgraded and is_upgrade_request(request.headers)

    def _serve_websocket(self, request: Request) -> bool:
        """Run the bare sync handler on an Upgrade; answer 426 to anything else.

        Returns whether the connection lives on (only after a 426 to a keep-alive request).
        """
        ws = self.settings.ws
        assert ws is not None, "thread models serve WSGI apps or WebSocket handlers only"
        last = not self.conn.requests
        if not self._is_websocket(request):
            data, keep_alive = upgrade_required(request)
            self.send(data)
            self._log(request, 426, len(data))
            if not (keep_alive and request.body.complete and not request.body.buffered):
                return False
            return not (last and self.conn.upgraded) or self._decline_upgrade()
        try:
            head, core = handshake(request, ws)
        except HandshakeError as exc:
            log.info("refused a WebSocket handshake from %s: %s", self.addr, exc)
            self._send_quietly(reject_response(exc))
            self._log(request, exc.status, 0)
            return False
        self.send(head)
        self._log(request, 101, 0)
        self.outbox.drain_below(0)  # the WebSocket writes to the socket itself from here
        link = BlockingLink(self.sock, core, request, self.addr, ws)
        run_sync_handler(ws, link, self.conn.trailing_data)
        return False

    def _log(self, request: Request, status: int, sent: int) -> None:
        access_log = self.settings.access_log
        if access_log.active():
            access_log.write(request, self.addr, status, sent)

    def receive_more(self, body: RequestBody) -> bool:
        """Blocking read for ``wsgi.input``: feed one read to the core; False at EOF or error."""
        wait = self._body_deadline(body) - time.monotonic()
        if wait <= 0:
            log.info("request body from %s too slow (--min-body-rate): cut off", self.addr)
            return False
        try:
            data = recv_waiting(self.sock, 65536, wait)
        except OSError:
            data = b""
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            log.info("bad request body from %s: %s", self.addr, exc)
            return False
        return bool(data)

    def _body_deadline(self, body: RequestBody) -> float:
        """When waiting for more of ``body`` must end (see :func:`body_wait`)."""
        now = time.monotonic()
        if body is not self.body_of:
            self.body_of, self.body_since = body, now
        return now + body_wait(self.settings, self.body_since, body.received, now)

    def take(self, body: RequestBody, size: int) -> bytes:
        return body.take(size)

    def _decline_upgrade(self) -> bool:
        """The app answered an Upgrade request as plain HTTP: go on parsing what follows."""
        try:
            self.conn.decline_upgrade()
        except RemoteProtocolError as exc:
            self._refuse(exc)
            return False
        return True

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
        self.outbox.drain_below(0)  # the head first
        self.sock.settimeout(self.settings.timeout_io)  # socket.sendfile needs a timeout mode
        try:
            return self.sock.sendfile(file, file.tell(), count)
        finally:
            self.sock.setblocking(False)

    # -- errors ------------------------------------------------------------------------------

    def _refuse(self, exc: RemoteProtocolError) -> None:
        log.info("refused a request from %s with %d: %s", self.addr, exc.status, exc)
        STATS.request(exc.status, 0.0)
        self._send_quietly(error_response(exc.status))

    def _send_quietly(self, data: bytes) -> None:
        """Best effort, never blocking for long: the connection is about to close anyway."""
        try:
            self.sock.send(data)
        except OSError:
            pass
