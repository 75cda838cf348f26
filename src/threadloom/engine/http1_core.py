"""The rules of an HTTP/1.1 connection, written once: sans-I/O, with the time passed in.

Why
---
Two drivers run HTTP/1.1: :mod:`threadloom.engine.http` for the thread models (a blocking
pump) and :mod:`threadloom.engine.http_aio` for the asyncio model (callbacks on a loop).
Each used to hold its own copy of when a request goes to the app, the head and keep-alive
deadlines, 408 or a silent close, the body's time budget, refusing a bad request, declining
an upgrade the app answered as plain HTTP, and routing to WSGI, ASGI or a WebSocket
handler, and the copies drifted. :class:`HTTP1Core` holds those rules; the drivers move
bytes, run timers and run the app, and ask the core what to do next.

The core never reads a clock: every call that depends on time takes ``now`` (seconds on the
monotonic clock, ``time.monotonic()``), so ``tests/engine/test_http1_core.py`` checks every
deadline with a fake clock, without sleeping. It never touches a socket either: what it
wants sent (a refusal, a 408) it returns as bytes.

The contract, from a driver's side::

    core = HTTP1Core(settings, now)          # on accept: the first head's deadline runs
    want = core.feed(data, now)              # READ (honour core.deadline()), SERVE, CLOSE
    if want is CLOSE: send(core.take_refusal()) and close
    if want is SERVE: request, route = core.begin(); run the app on that route
    want = core.finish(request, status, ...)  # the exchange is done: keep-alive or CLOSE
    on core.deadline() passing: send(core.expire()) and close

One exchange (a request and its response) is in flight at a time, in order, as HTTP/1.1
requires of pipelined requests; the next one waits in the parser until :meth:`finish`.
"""

from __future__ import annotations

import enum
import logging
import weakref
from typing import Any

from threadloom.config import Config
from threadloom.engine.accesslog import AccessLog
from threadloom.engine.request_timeout import Watchdog
from threadloom.engine.session import CLOSE, READ, SERVE, ExchangeRunner, Want
from threadloom.engine.ws import WSSettings
from threadloom.errors import RemoteProtocolError
from threadloom.interfaces.static import StaticFiles
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.forwarded import TrustedProxies
from threadloom.protocols.http1 import (
    HTTPLimits,
    Request,
    RequestBody,
    ServerConnection,
    error_response,
)
from threadloom.protocols.websocket import is_upgrade_request
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

#: A request whose body is still arriving goes to a sync app once this much is buffered;
#: smaller bodies are awaited by the connection's owner, so a slow sender holds no worker.
DISPATCH_BODY_BYTES = 64 * 1024
#: Unread request body a worker will discard to keep the connection alive; more -> close.
DRAIN_LIMIT = 256 * 1024


class Route(enum.Enum):
    """Who answers a request (:meth:`HTTP1Core.begin`)."""

    WSGI = "wsgi"
    ASGI = "asgi"
    ASGI_WEBSOCKET = "asgi-websocket"  # an ASGI app's websocket scope
    WEBSOCKET = "websocket"  # a bare WebSocket handler: its handshake, or a 426
    STATIC = "static"  # a --static mount's, before the app (interfaces/static.py)


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
    """Per-server constants every connection shares (limits, timeouts, the app)."""

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
        #: --static mounts, answered before the app (None: none, and no cost per request)
        self.static = StaticFiles(config.static) if config.static else None
        #: the route of a request without an Upgrade field when no --static mount could
        #: claim it (None: ask begin()); and whether a request goes to the app before its
        #: body has come (an ASGI app streams it; a bare WebSocket handler has none)
        self.plain_route = None if self.static is not None else _plain_route(asgi, runner)
        self.dispatch_at_once = asgi is not None or runner is None
        #: HTTP/2: offered when there is an HTTP app (--http auto or 2), and how
        self.http = config.http
        self.h2 = config.http != "1" and (asgi is not None or runner is not None)
        self.h2_max_streams = config.h2_max_streams
        #: a thread model's way to run a connection's exchanges at once (Service.lend)
        self.exchanges: ExchangeRunner | None = None
        #: live HTTP/2 connections, told to GOAWAY when the server stops
        self.h2_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def _plain_route(asgi: ASGIApp | None, runner: WSGIRunner | None) -> Route:
    if asgi is not None:
        return Route.ASGI
    return Route.WSGI if runner is not None else Route.WEBSOCKET


class HTTP1Core:
    """One HTTP/1.1 connection's rules (see the module docstring); not thread-safe: the
    driver calls it from the thread that owns the connection at the time."""

    __slots__ = (
        "addr",
        "body_of",
        "body_since",
        "conn",
        "deadline_at",
        "head_since",
        "in_exchange",
        "refusal",
        "served",
        "settings",
    )

    def __init__(self, settings: HTTPSettings, now: float, addr: Any = None) -> None:
        self.settings = settings
        self.addr = addr  # for log lines (a PROXY header may set it later)
        self.conn = ServerConnection(settings.limits)
        #: when the connection's current wait ends (the first head's counts from accept)
        self.deadline_at: float | None = now + settings.timeout_header
        self.head_since: float | None = None  # the first byte of the head being received
        self.served = 0
        self.in_exchange = False
        self.body_of: RequestBody | None = None  # the body whose budget body_since starts
        self.body_since = 0.0
        self.refusal = b""  # what to send before closing, after a refused request

    # -- bytes in ----------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> Want:
        """Parse ``data`` (``b""``: the peer's end of input) and say what comes next.

        While an exchange is in flight the bytes only wait in the parser (READ): the
        driver asks again through :meth:`finish`.
        """
        conn = self.conn
        try:
            conn.receive_data(data)
        except RemoteProtocolError as exc:
            self.refuse(exc)
            return CLOSE
        if self.in_exchange:
            return READ
        requests = conn.requests
        if requests and (self.settings.dispatch_at_once or requests[0].body.complete):
            return SERVE  # (_ready's two common yeses, without a call: the hot path)
        return self.next_step(now)

    def receive_body(self, data: bytes) -> bool:
        """Body bytes read by the app's own thread during an exchange (``wsgi.input``);
        False at the end of input or when they are malformed (the read then fails)."""
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            log.info("bad request body from %s: %s", self.addr, exc)
            return False
        return bool(data)

    def next_step(self, now: float) -> Want:
        """With no exchange in flight: SERVE the next request once it is ready for the
        app, else READ with the right deadline, or CLOSE when the peer is done."""
        conn = self.conn
        if conn.requests:
            request = conn.requests[0]
            if self._ready(request):
                return SERVE
            self.deadline_at = self.body_deadline(request.body, now)
            return READ
        if conn.peer_closed:
            return CLOSE
        if conn.head_started and self.head_since is None:
            # counted from the head's first byte, never pushed back by more bytes: else a
            # client dribbling a header line now and then holds the connection (slowloris)
            self.head_since = now
            self.deadline_at = now + self.settings.timeout_header
        return READ

    def _ready(self, request: Request) -> bool:
        """Whether a request goes to the app now. An ASGI app streams its body on the
        loop, so at once; a sync app gets it once complete, large, or awaited behind
        ``Expect: 100-continue``, so that a slow sender never holds a thread."""
        if self.settings.dispatch_at_once:
            return True  # (and a --static request is answered before its body is read)
        body = request.body
        return body.complete or request.expect_continue or body.buffered >= DISPATCH_BODY_BYTES

    # -- deadlines -----------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When the current wait ends (None while an exchange is in flight)."""
        return None if self.in_exchange else self.deadline_at

    def body_deadline(self, body: RequestBody, now: float) -> float:
        """When waiting for more of ``body`` must end (see :func:`body_wait`)."""
        if body is not self.body_of:
            self.body_of, self.body_since = body, now
        return now + body_wait(self.settings, self.body_since, body.received, now)

    def expire(self) -> bytes:
        """The deadline passed: what to send before closing. A 408 when a request was
        under way (or none was ever sent: the client may be waiting to), else nothing:
        an idle keep-alive connection closes silently."""
        if self.served == 0 or self.conn.head_started or self.conn.requests:
            return error_response(408)
        return b""

    # -- exchanges -----------------------------------------------------------------------------

    def begin(self) -> tuple[Request, Route]:
        """Take the next request and who answers it: an exchange is in flight until
        :meth:`finish`.

        Who answers: a ``--static`` mount before anyone; only a request with an Upgrade
        field can open a WebSocket, and only the last one HTTP parsed (what follows it is
        WebSocket). A request with no Upgrade field, when no mount could claim it, goes
        where ``settings.plain_route`` says without asking further (the hot path).
        """
        self.in_exchange = True
        self.head_since = None
        request = self.conn.requests.popleft()
        settings = self.settings
        if request.upgrade is None and settings.plain_route is not None:
            return request, settings.plain_route
        return request, self._route(request)

    def _route(self, request: Request) -> Route:
        """:meth:`begin`'s answer to who answers ``request``, past the plain case."""
        settings = self.settings
        if settings.static is not None and settings.static.claims(request):
            return Route.STATIC
        websocket = request.upgrade is not None and self.is_websocket_upgrade(request)
        if settings.asgi is not None:
            return Route.ASGI_WEBSOCKET if websocket and settings.ws is not None else Route.ASGI
        if settings.ws is not None and (settings.runner is None or websocket):
            return Route.WEBSOCKET
        return Route.WSGI

    def is_websocket_upgrade(self, request: Request) -> bool:
        """Whether ``request`` is the WebSocket Upgrade that ended HTTP on this connection."""
        return not self.conn.requests and self.conn.upgraded and is_upgrade_request(request.headers)

    def finish(
        self,
        request: Request,
        status: int,
        sent: int,
        elapsed: float,
        keep_alive: bool,
        now: float,
        remote: Any = None,
        request_id: str | None = None,
    ) -> Want:
        """The app answered ``request``: count and log it, then keep the connection
        (the next request, or the keep-alive wait) or CLOSE."""
        self.in_exchange = False
        self.served += 1
        STATS.request(status, elapsed)
        access_log = self.settings.access_log
        if access_log.enabled and access_log.active():
            access_log.write(request, remote or self.addr, status, sent, elapsed, request_id)
        if not keep_alive or request.body.truncated:
            return CLOSE
        conn = self.conn
        if conn.upgraded and not self.decline_upgrade():
            return CLOSE
        if conn.requests or conn.head_started or conn.peer_closed:
            return self.next_step(now)
        self.deadline_at = now + self.settings.timeout_keep_alive  # (the common case)
        return READ

    def decline_upgrade(self) -> bool:
        """The app answered an Upgrade request as plain HTTP: parse what follows as HTTP
        again; False (with a refusal to send) if that is not HTTP."""
        try:
            self.conn.decline_upgrade()
        except RemoteProtocolError as exc:
            self.refuse(exc)
            return False
        return True

    @property
    def idle(self) -> bool:
        """Between requests, with nothing under way. A fresh connection is not idle: its
        first request is on its way, and closing it on shutdown would lose it."""
        conn = self.conn
        return (
            self.served > 0 and not self.in_exchange and not conn.requests and not conn.head_started
        )

    # -- refusals ------------------------------------------------------------------------------

    def refuse(self, exc: RemoteProtocolError) -> None:
        """A bad request: logged, counted (unless an exchange will count its own answer),
        and its error response kept in :attr:`refusal` for the driver to send."""
        log.info("refused a request from %s with %d: %s", self.addr, exc.status, exc)
        if not self.in_exchange:
            STATS.request(exc.status, 0.0)
            self.refusal = error_response(exc.status)

    def overloaded(self) -> bytes:
        """The model has no room for the request that is ready (or just begun): it is
        counted, and answered 503 with ``Retry-After``; the connection then closes."""
        STATS.request(503, 0.0)
        return error_response(503)

    def take_refusal(self) -> bytes:
        """What :meth:`refuse` left to send (once), or ``b""``."""
        refusal, self.refusal = self.refusal, b""
        return refusal
