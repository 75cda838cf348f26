"""Server lifecycle: load the app, bind the listeners, run the model, stop gracefully.

``Server`` is what the CLI, :func:`threadloom.serve`, tests and embedders share:

* :meth:`Server.start` imports and checks the app and binds every listener, so every
  configuration mistake surfaces here, as a :class:`ConfigError`, before anything is served;
  afterwards :attr:`Server.urls` holds the real addresses (port 0 resolved).
* :meth:`Server.serve_forever` runs the model on the calling thread until stopped.
* :meth:`Server.stop` may be called from any thread, even before ``serve_forever`` has
  started; never from a signal handler (see :mod:`threadloom.signals`).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import Any

from threadloom import __version__
from threadloom.config import Config
from threadloom.engine.service import build_service
from threadloom.errors import ConfigError
from threadloom.loading import LoadedApp, detect, import_app
from threadloom.log import configure_logging
from threadloom.metrics import Operations
from threadloom.models import model_class, model_flags, models_where
from threadloom.models.base import Model
from threadloom.net.listeners import Listener, bind
from threadloom.net.tls import server_context
from threadloom.signals import SignalInbox

log = logging.getLogger("threadloom.server")


class Server:
    """One server: an app, a config, listeners and a model."""

    def __init__(self, app: Any, config: Config | None = None, **options: Any) -> None:
        base = config or Config()
        self.config = base.replace(**options) if options else base.validated()
        self.app = app
        self.listeners: list[Listener] = []
        self.model: Model | None = None
        #: ``--metrics-bind`` and ``--shutdown-delay`` (made by :meth:`start`).
        self.ops: Operations | None = None
        self._stop_lock = threading.Lock()
        self._stopped_early: bool | None = None

    @property
    def urls(self) -> list[str]:
        """Where the server listens, with real ports."""
        return [listener.url for listener in self.listeners]

    @property
    def addresses(self) -> list[Any]:
        """The bound socket addresses."""
        return [listener.address for listener in self.listeners]

    def load(self) -> LoadedApp:
        """Import (if given as text) and classify the app, checking it fits the model."""
        app = import_app(self.app) if isinstance(self.app, str) else self.app
        name = self.app if isinstance(self.app, str) else getattr(app, "__name__", "app")
        loaded = detect(app, self.config.interface, name)
        if loaded.is_async:
            self._needs_coroutines(f"{name} is a coroutine function ({loaded.interface})")
        return loaded

    def _needs_coroutines(self, what: str) -> None:
        """ConfigError unless the model runs coroutines; the message names those that do."""
        if not model_class(self.config.model).runs_coroutines:
            able = model_flags(models_where(lambda cls: cls.runs_coroutines))
            raise ConfigError(f"{what}; it needs {able}, not --model {self.config.model}")

    def start(self) -> None:
        """Load the app and bind the listeners; raises ConfigError on any mistake."""
        if self.model is not None:
            return
        loaded = self.load()
        try:
            if not self.listeners:  # a supervisor's worker arrives with them bound
                for address in self.config.bind:
                    self.listeners.append(bind(address, self.config.reuse_port))
            tls = server_context(
                self.config,
                alpn=loaded.interface != "raw",
                h2=loaded.interface in ("wsgi", "asgi"),
            )
            model_cls = model_class(self.config.model)
            service = build_service(
                loaded,
                self.config,
                self.listeners[0].address,
                tls,
                multithread=model_cls.serves_concurrently,
            )
            if service.needs_loop:  # an async part the app's own signature did not show
                self._needs_coroutines(f"{loaded.name} ({service.description}) runs coroutines")
            ops = Operations(
                self.config, lambda: self.model is not None and self.model.ready.is_set()
            )
        except ConfigError:
            for listener in self.listeners:
                listener.close()
            self.listeners.clear()
            raise
        model = model_cls(self.config, service, self.listeners)
        self.ops = ops
        with self._stop_lock:
            self.model = model
            if self._stopped_early is not None:
                model.stop(self._stopped_early)
        log.info(
            "threadloom %s serving %s (%s) on %s, model %s",
            __version__,
            loaded.name,
            service.description,
            ", ".join(self.urls),
            model.describe(),
        )

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop`; drains before returning."""
        self.start()
        assert self.model is not None
        assert self.ops is not None
        try:
            self.ops.begin()
            if self.config.gc_freeze:
                freeze_loaded_objects()
            tune_collector(self.config.gc_threshold)
            self.model.serve()
        finally:
            self.ops.close()
            log.info("server stopped")

    def stop(self, graceful: bool = True) -> None:
        """Stop accepting now; in-flight work gets ``graceful_timeout`` unless not graceful."""
        with self._stop_lock:
            model = self.model
            if model is None:
                self._stopped_early = graceful
                return
        model.stop(graceful)

    def drain(self) -> None:
        """Stop as SIGTERM asks: ``/readyz`` turns 503 at once, the server goes on serving
        for ``--shutdown-delay`` seconds (so load balancers move away first), then stops
        gracefully."""
        if self.ops is None:
            self.stop()
        else:
            self.ops.drain(self.stop)


def run_with_signals(server: Server, *others: Server) -> int:
    """Serve until SIGTERM or SIGINT: the first drains gracefully, a second stops at once.

    ``others`` (the demo's second port) serve on threads of their own; signals reach them
    all, and they stop when ``server`` does. Returns the process exit status: 0 after a
    graceful stop, 1 when a second signal cut the drain short.
    """
    everyone = (server, *others)

    def act(signum: int, count: int) -> None:
        name = signal.Signals(signum).name
        if count == 1:
            log.info(
                "%s received: stopping gracefully (up to %gs); send again to stop now",
                name,
                server.config.graceful_timeout,
            )
            for each in everyone:
                each.drain()
        else:
            log.warning("%s received again: stopping now", name)
            for each in everyone:
                each.stop(graceful=False)

    inbox = SignalInbox((signal.SIGTERM, signal.SIGINT))
    inbox.dispatch(act)
    inbox.install()
    threads = [
        threading.Thread(target=other.serve_forever, name="threadloom-serve", daemon=True)
        for other in others
    ]
    try:
        for thread in threads:
            thread.start()
        server.serve_forever()
    finally:
        for other in others:
            other.stop()
        for thread in threads:
            thread.join()
        inbox.restore()
    return 1 if inbox.received > 1 else 0


def freeze_loaded_objects() -> None:
    """Collect once, then freeze what is left (``gc.freeze``): everything the process holds
    before it serves (the interpreter's modules, the app and its framework, our own) lives
    for good, yet every full collection of the cyclic collector would walk it again, with
    the GIL held, while requests wait. Under load with many connections those pauses were
    the p99 (asyncio, 512 connections waiting on I/O: 47 ms with the default collector,
    34-36 ms frozen, BENCHMARKS.md). What the app creates later is collected as usual; a
    cycle among the frozen objects that becomes garbage later is never freed, the price
    CPython's docs name for this use. A ``--workers`` supervisor freezes too before it
    forks, so that the workers' collections leave the pages they share unwritten."""
    gc.collect()
    gc.freeze()


#: The collector's thresholds when threadloom was imported (before the app): if they differ
#: when serving starts, the app chose its own.
STARTING_THRESHOLDS = gc.get_threshold()


def tune_collector(young: int) -> None:
    """Collect the young generation every ``young`` allocations (``--gc-threshold``).

    Python's 700 suits a program whose objects die young. A server with hundreds of
    requests in flight keeps thousands alive for the length of a request, so nearly every
    young collection walks them, finds them alive and promotes them, and the older
    generations' collections follow: at 512 connections waiting on I/O that was about an
    eighth of the CPU and the p99's largest part (BENCHMARKS.md). With 10,000, those
    objects are gone before a collection comes. What it costs is the cyclic garbage that
    waits longer to be freed: at most ``young`` objects' worth, a few megabytes. An app
    that set its own thresholds at import keeps them; 0 leaves Python's.
    """
    if not young:
        return
    current = gc.get_threshold()
    if current != STARTING_THRESHOLDS:
        log.info("keeping the collector's thresholds the app set: %s", current)
        return
    gc.set_threshold(young, *current[1:])


def serve(app: Any, **options: Any) -> int:
    """Serve ``app`` (an object or ``"module:attribute"``) until SIGTERM/SIGINT.

    Keyword options are :class:`Config` fields (``bind``, ``model``, ``threads``, ...); a single
    ``bind`` string is accepted as well as a list.
    """
    if isinstance(options.get("bind"), str):
        options["bind"] = (options["bind"],)
    server = Server(app, **options)
    if server.config.workers or server.config.reload:
        raise ConfigError("workers and reload need the threadloom command or run_supervised()")
    configure_logging(
        server.config.log_level, server.config.log_config, server.config.access_log_format
    )
    server.start()
    return run_with_signals(server)
