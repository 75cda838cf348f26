"""``--workers N``: the supervisor process that binds once, forks N workers and keeps them up.

Theory of operation
-------------------
The supervisor binds every listener once and forks the workers, which inherit them
(:mod:`threadloom.supervisor.worker`). Who imports the app:

* by default each worker, after the fork, so that a worker forked later (on SIGHUP, after
  ``--max-requests``, in place of one that died) runs the code on disk at that moment: the
  supervisor never imports it. A broken app is still one line and exit status 2 at start:
  every worker reports its import error on its channel (``fatal``) and the first such report
  before the server ever served stops it. No throwaway child checks the import first: it
  would pay the app's import time once more on every start, for an error the workers
  report anyway, and an app given as an object (not ``module:attribute``) cannot be
  imported afresh, so it is always preloaded;
* with ``--preload`` the supervisor, exactly as a single-process server does (so a broken
  app fails before anything forks), and workers inherit the imported code: memory shared
  copy-on-write and faster starts, but every later worker runs the code imported at start.

It never starts a thread: everything it does happens in one selector loop whose selector data
are callbacks ``f(mask)``, fed by

* signals, through ``signal.set_wakeup_fd`` (the handlers only record the number:
  :mod:`threadloom.signals`);
* each worker's channel (:mod:`threadloom.supervisor.channel`): ``ready``, ``fatal``,
  ``recycle``, ``stats``;
* the ``--metrics-bind`` endpoint (:mod:`threadloom.metrics`), if any;
* timers: delayed restarts, the end of ``--shutdown-delay``, the kill deadline.

Rules:

* A worker that dies unexpectedly is restarted at once; one that keeps dying young (before
  it was ready, or within ``EARLY_S``) waits 0.5 s, 1 s, 2 s ... up to 30 s. If workers
  keep dying before any was ever ready, or a worker reports ``fatal`` (the app does not
  import, its ASGI lifespan failed) before the server ever served, the whole server stops
  with that one line instead of looping.
* SIGHUP and ``--max-requests`` *replace* workers: the new one is forked first, and the old
  one gets SIGTERM only once the new one is ready (after its ASGI lifespan startup), so
  capacity never drops. A replacement that fails before it is ready (its ``fatal`` reason:
  the import error, a failed lifespan; or how it exited) is not retried: its old worker
  keeps serving, and one line says why. On SIGHUP the first such failure also stops the
  round's other new workers, so the old code keeps serving everywhere; a second SIGHUP
  supersedes a round still starting. After the server has served, a ``fatal`` from a
  *restart* (new code on disk that no longer imports, say) backs off like a crash.
* SIGTERM/SIGINT: ``/readyz`` turns 503 at once; after ``--shutdown-delay`` every worker
  gets SIGTERM and drains within ``--graceful-timeout``; a worker still alive 5 s after
  that is killed. A second signal sends SIGQUIT (stop now). The supervisor exits only
  after reaping every worker, and workers die with it even if it is SIGKILLed.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from threadloom import __version__, portable
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.metrics import Endpoint, Health, require_prometheus
from threadloom.net.listeners import Listener, bind, parse_bind, reuse_port_available
from threadloom.net.reuseport import reserve
from threadloom.server import Server, freeze_loaded_objects
from threadloom.signals import SignalInbox
from threadloom.stats import counters_only, merge, rss_bytes
from threadloom.supervisor.channel import Channel, Message, channel_pair
from threadloom.supervisor.worker import KILL_GRACE_S, die_with_parent, finish_child, run_worker

log = logging.getLogger("threadloom.supervisor")

COLLECT_TIMEOUT_S = 1.0
EARLY_S = 1.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_START_FAILURES = 5
#: (by name: SIGHUP and SIGCHLD are missing on Windows, where this module must import,
#: to say in one line that --workers needs fork)
_HANDLED = tuple(
    getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP", "SIGCHLD") if hasattr(signal, n)
)


@dataclass(eq=False)
class Worker:
    """The supervisor's record of one worker process."""

    pid: int
    slot: int
    channel: Channel
    started: float
    replaces: Worker | None = None  # the worker this one takes over from, once ready
    ready: bool = False
    retiring: bool = False  # a replacement is on its way
    stopping: bool = False  # told to stop: its exit is expected
    fatal: str | None = None
    hup: int = 0  # the SIGHUP round that forked it (0: none)
    listening: bool = True  # its channel is still registered
    stats: dict[str, Any] = field(default_factory=dict)
    stats_seq: int = -1


class Supervisor:
    """N worker processes of one server (see the module docstring)."""

    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config
        self.plan: list[Listener | str] = []  # per listener: inherited, or an address to bind
        self.listeners: list[Listener] = []
        self.reservations: list[socket.socket] = []
        self.urls: list[str] = []
        self.workers: dict[int, Worker] = {}
        self.pending: list[tuple[float, int]] = []  # (due, slot): restarts after a back-off
        self.failures: dict[int, int] = {}
        self.start_failures = 0
        self.restarts = 0
        self.retired: list[dict[str, Any]] = []  # counters of exited workers, last seen
        self.stop_signals = 0
        self.stop_at: float | None = None
        self.kill_at: float | None = None
        self.draining = False
        self.fatal: str | None = None
        self.announced = False
        self.preload = config.preload or not isinstance(app, str)
        self.hups = 0  # SIGHUP rounds so far
        self.hup_failed = 0  # the last round whose new code failed to start
        self.name = str(app)
        self.health = Health(lambda: any(w.ready for w in self.workers.values()))
        self.endpoint: Endpoint | None = None
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self.signals = SignalInbox(_HANDLED, wakeup_fd=self._wake_w.fileno())
        self._seq = 0
        self.cpus = self._cpus_to_pin()

    def _cpus_to_pin(self) -> list[int] | None:
        """``--pin-workers``: the CPUs the workers are spread over (worker n on the n-th,
        round), or None (not asked, or this platform cannot pin: then one log line)."""
        if not self.config.pin_workers:
            return None
        cpus = portable.usable_cpus()
        if cpus is None:
            log.warning("--pin-workers ignored: this platform cannot pin a process to a CPU")
        else:
            log.info("--pin-workers: each worker runs on one of CPUs %s", ",".join(map(str, cpus)))
        return cpus

    # -- the whole life ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit status (ConfigError when a worker cannot serve)."""
        if self.preload:  # the one-line errors, pre-fork; else the first worker's (see above)
            self.name = Server(self.app, self.config).load().name
        self._bind()
        if self.config.gc_freeze:  # before any fork: a worker's collections then never
            freeze_loaded_objects()  # write to these objects, whose pages stay shared
        try:
            if self.config.metrics_bind:
                require_prometheus()
                self.endpoint = Endpoint(bind(self.config.metrics_bind), self.health, self._collect)
                self.endpoint.attach(self.selector)
                log.info("metrics, health and readiness on %s", self.endpoint.url)
            self._install_signals()
            for slot in range(self.config.workers):
                self._spawn(slot)
            self._loop()
        finally:
            self._cleanup()
        if self.fatal is not None:
            raise ConfigError(self.fatal)
        return 1 if self.stop_signals > 1 else 0

    def _bind(self) -> None:
        try:
            for address in self.config.bind:
                reuse_port = reuse_port_available(self.config.reuse_port)
                if reuse_port and parse_bind(address).family == "tcp":
                    sock, text = reserve(address)
                    self.reservations.append(sock)
                    self.urls.append(text)
                    self.plan.append(text)
                else:
                    listener = bind(address)
                    self.listeners.append(listener)
                    self.urls.append(listener.url)
                    self.plan.append(listener)
        except ConfigError:
            self._close_sockets()
            raise

    def _loop(self) -> None:
        while not ((self.draining or self.fatal) and not self.workers):
            for key, mask in self.selector.select(self._timeout()):
                key.data(mask)
            self._reap()
            self._handle_signals()
            self._tick(time.monotonic())

    def _timeout(self) -> float | None:
        now = time.monotonic()
        times = [due for due, _ in self.pending]
        times += [t for t in (self.stop_at, self.kill_at) if t is not None]
        if self.endpoint is not None and (client := self.endpoint.sweep(now)) is not None:
            times.append(now + client)
        return max(min(times) - now, 0.0) if times else None

    def _tick(self, now: float) -> None:
        if self.stop_at is not None and now >= self.stop_at:
            self.stop_at = None
            self._drain_all(graceful=True)
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            for worker in self.workers.values():
                log.warning("worker %d did not stop within --graceful-timeout: killed", worker.pid)
                _kill(worker.pid, signal.SIGKILL)
        due = [p for p in self.pending if p[0] <= now]
        self.pending = [p for p in self.pending if p[0] > now]
        for _, slot in due:
            self._spawn(slot)

    # -- workers -------------------------------------------------------------------------------

    def _spawn(self, slot: int, replaces: Worker | None = None, hup: int = 0) -> None:
        ours, theirs = channel_pair()
        limit = self.config.max_requests
        if limit:
            limit += random.randint(0, self.config.max_requests_jitter)
        parent = os.getpid()
        # Signals wait until the child has its own handlers: one that reached it with ours
        # (the SIGTERM of a superseded replacement, say) would be recorded and forgotten.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*_HANDLED, signal.SIGQUIT})
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            status = 1
            try:
                ours.close()
                self._become_worker(parent)
                if self.cpus:
                    portable.pin_to_cpu(self.cpus[slot % len(self.cpus)])
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what waited acts now
                status = run_worker(self.app, self.config, self.plan, theirs, limit)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                finish_child(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        worker = Worker(pid, slot, ours, time.monotonic(), replaces, hup=hup)
        self.workers[pid] = worker
        self.selector.register(
            ours.sock, selectors.EVENT_READ, functools.partial(self._on_message, worker)
        )
        log.debug("worker %d started (slot %d)", pid, slot)

    def _become_worker(self, parent: int) -> None:
        """In the child: drop the supervisor's signals and descriptors, follow its death."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent(parent)
        for worker in self.workers.values():
            worker.channel.close()
        if self.endpoint is not None:
            self.endpoint.abandon()
        for sock in (*self.reservations, self._wake_r, self._wake_w):
            sock.close()
        self.selector.close()

    def _on_message(self, worker: Worker, mask: int) -> bool:
        """Read and act on what a worker said; False when there was nothing more."""
        messages = worker.channel.receive() if worker.listening else None
        if messages is None:
            self._unlisten(worker)
            return False
        for message in messages:
            self._handle_message(worker, message)
        return bool(messages)

    def _handle_message(self, worker: Worker, message: Message) -> None:
        kind = message.get("t")
        if kind == "ready":
            self._ready(worker, message)
        elif kind == "fatal":
            worker.fatal = str(message.get("error", "a worker could not start"))
        elif kind == "recycle":
            log.info("worker %d served its --max-requests: replacing it", worker.pid)
            self._replace(worker)
        elif kind == "stats" and message.get("seq") == self._seq:
            worker.stats = message.get("data") or {}
            worker.stats_seq = self._seq

    def _ready(self, worker: Worker, message: Message) -> None:
        worker.ready = True
        log.info("worker %d ready", worker.pid)
        if worker.stopping:
            return  # superseded while it started (its round failed, say): its old one stays
        old, worker.replaces = worker.replaces, None
        if old is not None and old.pid in self.workers and not old.stopping:
            log.info("worker %d replaced by %d: draining it", old.pid, worker.pid)
            old.stopping = True
            _kill(old.pid, signal.SIGTERM)
        if worker.hup and worker.hup != self.hup_failed and not self._starting(worker.hup):
            log.info("SIGHUP: every worker replaced (round %d)", worker.hup)
        serving = sum(1 for w in self.workers.values() if w.ready and not w.stopping)
        if not self.announced and serving >= self.config.workers:
            self.announced = True
            log.info(
                "threadloom %s serving %s (%s) on %s with %d workers, model %s",
                __version__,
                self.name,
                message.get("service", "app"),
                ", ".join(self.urls),
                self.config.workers,
                message.get("model", self.config.model),
            )

    def _replace(self, worker: Worker, hup: int = 0) -> None:
        if worker.retiring or worker.stopping or self.draining or self.fatal:
            return
        worker.retiring = True
        self._spawn(worker.slot, replaces=worker, hup=hup)

    def _starting(self, hup: int) -> list[Worker]:
        """The new workers of a SIGHUP round not ready yet (and not given up on)."""
        return [w for w in self.workers.values() if w.hup == hup and not w.ready and not w.stopping]

    def _abandon(self, worker: Worker) -> None:
        """Stop a replacement that is still starting; its old worker goes on serving."""
        worker.stopping = True
        old, worker.replaces = worker.replaces, None
        if old is not None:
            old.retiring = False
        _kill(worker.pid, signal.SIGTERM)  # the default action, or a graceful stop if ready

    def _unlisten(self, worker: Worker) -> None:
        if worker.listening:
            worker.listening = False
            self.selector.unregister(worker.channel.sock)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                while self._on_message(worker, selectors.EVENT_READ):
                    pass  # what it said last (a fatal reason, say) may still be unread
                worker.channel.close()
                if worker.stats:
                    self.retired = [merge([*self.retired, counters_only(worker.stats)])]
                self._exited(worker, _describe(status))

    def _exited(self, worker: Worker, how: str) -> None:
        if worker.stopping or self.draining or self.fatal:
            quiet = self.fatal is not None and not self.announced  # the error line says it all
            log.log(
                logging.DEBUG if quiet else logging.INFO, "worker %d exited (%s)", worker.pid, how
            )
            return
        old = worker.replaces
        if not worker.ready and old is not None and old.pid in self.workers:
            reason = worker.fatal or f"worker {worker.pid} exited before it was ready ({how})"
            self._replacement_failed(worker, old, reason)
            return
        if worker.fatal is not None and not self.announced:  # the app cannot start at all
            self.fatal = worker.fatal
            self._drain_all(graceful=True)
            return
        if worker.fatal is not None:
            how = f"could not start: {worker.fatal}"
        self.restarts += 1
        early = not worker.ready or time.monotonic() - worker.started < EARLY_S
        failures = self.failures.get(worker.slot, 0) + 1 if early else 0
        self.failures[worker.slot] = failures
        if early and not self.announced:
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                self.fatal = f"workers keep exiting before they serve (last: {how}); see above"
                self._drain_all(graceful=True)
                return
        delay = min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S) if failures else 0.0
        later = f" in {delay:g}s" if delay else ""
        if worker.retiring:
            log.warning("worker %d died (%s) while being replaced", worker.pid, how)
            return
        log.warning("worker %d died (%s); starting another%s", worker.pid, how, later)
        self.pending.append((time.monotonic() + delay, worker.slot))

    def _replacement_failed(self, worker: Worker, old: Worker, reason: str) -> None:
        """A new worker gave up before it was ready: its old one keeps serving, one line."""
        old.retiring = False
        if not worker.hup:
            log.error(
                "worker %d: its replacement %d failed to start: %s; it keeps serving",
                old.pid,
                worker.pid,
                reason,
            )
        elif worker.hup != self.hup_failed:
            self.hup_failed = worker.hup
            log.error("SIGHUP: new code failed to start: %s; old workers keep serving", reason)
            for sibling in self._starting(worker.hup):
                self._abandon(sibling)

    # -- signals and stopping ------------------------------------------------------------------

    def _install_signals(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.signals.install()

    def _drain_wake(self, mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _handle_signals(self) -> None:
        for signum, _ in self.signals.take():
            if signum == signal.SIGHUP and not (self.draining or self.fatal):
                self._hup()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self._stop_signal(signal.Signals(signum).name)

    def _hup(self) -> None:
        """A new round: supersede replacements still starting, then replace every worker."""
        self.hups += 1
        for worker in list(self.workers.values()):
            if not worker.ready and worker.replaces is not None and not worker.stopping:
                self._abandon(worker)
        current = [
            w for w in self.workers.values() if w.ready and not w.retiring and not w.stopping
        ]
        log.info(
            "SIGHUP received: replacing %d workers (%s)",
            len(current),
            "on the code imported at start: --preload" if self.preload else "importing the app",
        )
        for worker in current:
            self._replace(worker, hup=self.hups)

    def _stop_signal(self, name: str) -> None:
        self.stop_signals += 1
        self.health.draining = True
        if self.stop_signals > 1:
            log.warning("%s received again: stopping now", name)
            self.stop_at = None
            self._drain_all(graceful=False)
            return
        delay = self.config.shutdown_delay
        log.info(
            "%s received: /readyz answers 503; serving %gs more, then draining (up to %gs)",
            name,
            delay,
            self.config.graceful_timeout,
        )
        if delay > 0 and not self.draining:
            self.stop_at = time.monotonic() + delay
        else:
            self._drain_all(graceful=True)

    def _drain_all(self, graceful: bool) -> None:
        """Tell every worker to stop (SIGTERM, or SIGQUIT: at once); refuse new clients."""
        if not self.draining:
            self.draining = True
            self.health.draining = True
            self.pending.clear()
            self.kill_at = time.monotonic() + self.config.graceful_timeout + KILL_GRACE_S
            self._close_sockets()
        for worker in self.workers.values():
            if not graceful or not worker.stopping:
                worker.stopping = True
                now = signal.SIGQUIT if worker.ready else signal.SIGKILL  # no handler yet
                _kill(worker.pid, signal.SIGTERM if graceful else now)

    def _close_sockets(self) -> None:
        """Our copies of the listeners: workers keep theirs until they stop."""
        for listener in self.listeners:
            listener.close()
        for sock in self.reservations:
            sock.close()
        self.listeners, self.reservations = [], []

    def _cleanup(self) -> None:
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGKILL)
        for pid in list(self.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.workers.pop(pid).channel.close()
        if self.endpoint is not None:
            self.endpoint.close()
        self._close_sockets()
        self.signals.restore()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- metrics -------------------------------------------------------------------------------

    def _collect(self) -> tuple[dict[str, Any], dict[str, float]]:
        """Ask every ready worker for its snapshot (1 s at most) and sum them."""
        self._seq += 1
        asked = [
            w
            for w in self.workers.values()
            if w.ready and w.listening and w.channel.send({"t": "stats", "seq": self._seq})
        ]
        deadline = time.monotonic() + COLLECT_TIMEOUT_S
        with selectors.DefaultSelector() as waiting:
            for worker in asked:
                waiting.register(worker.channel.sock, selectors.EVENT_READ, worker)
            while waiting.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in waiting.select(left):
                    worker = key.data
                    self._on_message(worker, selectors.EVENT_READ)
                    if worker.stats_seq == self._seq or not worker.listening:
                        waiting.unregister(key.fileobj)
        answered = [w.stats for w in asked if w.stats_seq == self._seq and w.stats]
        total = merge(answered + self.retired)  # so counters never go down when one exits
        total["rss_bytes"] += rss_bytes()
        live = sum(1 for w in self.workers.values() if w.ready)
        return total, {"worker_restarts": self.restarts, "workers": live}


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        except ValueError:
            return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_supervised(app: Any, config: Config) -> int:
    """Serve ``app`` with ``config.workers`` processes until SIGTERM/SIGINT."""
    if not portable.can_fork():
        raise ConfigError(
            "--workers needs fork (POSIX); on Windows run one process per port,"
            " or one process with --model threads or pool"
        )
    return Supervisor(app, config).run()
