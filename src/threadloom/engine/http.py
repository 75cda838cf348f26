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
from threadloom.engine.body import BodyReader
from threadloom.engine.session import Want
from threadloom.engine.sockio import recv_waiting, send_all
from threadloom.errors import RemoteProtocolError
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import (
    HTTPLimits,
    RequestBody,
    ServerConnection,
    error_response,
)

log = logging.getLogger("threadloom.http")

#: A request whose body is still arriving is handed to a worker once this much is buffered.
DISPATCH_BODY_BYTES = 64 * 1024
#: Unread request body a worker will discard to keep the connection alive; more -> close.
DRAIN_LIMIT = 256 * 1024


class ASGIApp:
    """An ASGI app with what its request scopes share (built by the service)."""

    def __init__(self, app: Any, template: dict[str, Any]) -> None:
        self.app = app
        self.template = template


class HTTPSettings:
    """Per-server constants every session shares (limits, timeouts, the app)."""

    def __init__(
        self, config: Config, runner: WSGIRunner | None = None, asgi: ASGIApp | None = None
    ) -> None:
        self.runner = runner
        self.asgi = asgi
        self.limits = HTTPLimits(
            max_header_size=config.max_header_size, max_body_size=config.max_body_size
        )
        self.timeout_header = config.timeout_header
        self.timeout_keep_alive = config.timeout_keep_alive
        self.timeout_io = config.timeout_io
        self.access_log = AccessLog(config.access_log)


class HTTPSession:
    """One HTTP connection under a thread-based model (see the module docstring)."""

    __slots__ = (
        "addr",
        "conn",
        "deadline_at",
        "head_since",
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

    # -- the engine contract ---------------------------------------------------------------

    def start(self) -> Want:
        return Want.READ

    def feed(self, data: bytes) -> Want:
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._refuse(exc)
            return Want.CLOSE
        requests = self.conn.requests
        if requests:
            body = requests[0].body
            if body.complete or requests[0].expect_continue or body.buffered >= DISPATCH_BODY_BYTES:
                return Want.SERVE
            self.deadline_at = time.monotonic() + self.settings.timeout_io
            return Want.READ
        if not data:
            return Want.CLOSE
        if self.head_since is None and self.conn.head_started:
            self.head_since = time.monotonic()
            self.deadline_at = self.head_since + self.settings.timeout_header
        return Want.READ

    def serve(self) -> Want:
        self.serving = True
        try:
            return self._serve_ready()
        finally:
            self.serving = False

    def deadline(self) -> float | None:
        return self.deadline_at

    def expire(self) -> Want:
        if self.served == 0 or self.conn.head_started or self.conn.requests:
            self._send_quietly(error_response(408))
        return Want.CLOSE

    def overloaded(self) -> None:
        self._send_quietly(error_response(503))

    @property
    def idle(self) -> bool:
        return not self.serving and not self.conn.requests and not self.conn.head_started

    def close(self) -> None:
        self.sock.close()

    # -- serving -----------------------------------------------------------------------------

    def _serve_ready(self) -> Want:
        settings = self.settings
        runner = settings.runner
        assert runner is not None, "thread models serve WSGI apps only"
        log_access = settings.access_log.active()
        requests = self.conn.requests
        while requests:
            request = requests.popleft()
            body = BodyReader(request, self)
            outcome = runner(request, body, self, self.addr)
            self.served += 1
            if log_access:
                settings.access_log.write(
                    self.addr,
                    request.method,
                    request.target,
                    request.http_version,
                    outcome.status,
                    outcome.sent,
                )
            if not outcome.keep_alive or body.failed:
                return Want.CLOSE
            unread = not request.body.complete or request.body.buffered
            if unread and not body.drain(DRAIN_LIMIT):
                return Want.CLOSE
            if self.conn.upgraded and not self._decline_upgrade():
                return Want.CLOSE
        if self.conn.peer_closed:
            return Want.CLOSE
        self.head_since = None
        now = time.monotonic()
        if self.conn.head_started:
            self.head_since = now
            self.deadline_at = now + settings.timeout_header
        else:
            self.deadline_at = now + settings.timeout_keep_alive
        return Want.READ

    def receive_more(self, body: RequestBody) -> bool:
        """Blocking read for ``wsgi.input``: feed one read to the core; False at EOF or error."""
        try:
            data = recv_waiting(self.sock, 65536, self.settings.timeout_io)
        except OSError:
            data = b""
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            log.info("bad request body from %s: %s", self.addr, exc)
            return False
        return bool(data)

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
        send_all(self.sock, data, self.settings.timeout_io)

    def sendfile(self, file: IO[bytes], count: int) -> int:
        self.sock.settimeout(self.settings.timeout_io)  # socket.sendfile needs a timeout mode
        try:
            return self.sock.sendfile(file, file.tell(), count)
        finally:
            self.sock.setblocking(False)

    # -- errors ------------------------------------------------------------------------------

    def _refuse(self, exc: RemoteProtocolError) -> None:
        log.info("refused a request from %s with %d: %s", self.addr, exc.status, exc)
        self._send_quietly(error_response(exc.status))

    def _send_quietly(self, data: bytes) -> None:
        """Best effort, never blocking for long: the connection is about to close anyway."""
        try:
            self.sock.send(data)
        except OSError:
            pass
