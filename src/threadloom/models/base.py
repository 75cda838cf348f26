"""What every model shares: the stop protocol, the connection registry and the accept gate.

Stopping is the same for every thread-based model: :meth:`ThreadModel.stop` shuts the
listening sockets down at once (the kernel refuses new connections), closes connections that
sit idle between requests, and wakes the model's loop. In-flight work then has
``graceful_timeout`` seconds; a watchdog timer shuts down whatever is still open after that.
A second, non-graceful stop shuts everything down at once. ``stop`` is safe from any thread
and from signal handlers.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from threadloom import portable
from threadloom.config import Config
from threadloom.engine.session import ExchangeRunner, Service, Session
from threadloom.net.listeners import FD_BACKOFF_S, Listener, OutOfDescriptors, accept
from threadloom.net.waker import Waker
from threadloom.stats import STATS, Load

log = logging.getLogger("threadloom.server")


class Model(ABC):
    """Who runs connections: accepts, reads, schedules; knows nothing of protocols.

    A model declares what sets it apart in the class attributes below; the server, the
    engine (through the server), the demo, the bench and the testing kit ask them, never the
    model's name.
    """

    name = "model"
    #: Runs coroutines: async apps and handlers (ASGI, ``handle(reader, writer)``, async
    #: WebSocket handlers) run on its event loop. Its own threads must never block.
    runs_coroutines = False
    #: Serves several connections at once, so a sync app may be called by several threads at
    #: the same time (WSGI's ``wsgi.multithread``). False: one connection at a time.
    serves_concurrently = True
    #: Sync code runs on a pool of ``--threads`` threads, which bounds how much runs at once
    #: (False: a thread per connection, or the one thread).
    runs_sync_on_pool = False

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        self.config = config
        self.service = service
        self.listeners = listeners
        #: Set once the model accepts connections (after ASGI lifespan startup, under asyncio).
        self.ready = threading.Event()

    @abstractmethod
    def serve(self) -> None:
        """Serve until stopped and drained; blocks the calling thread."""

    @abstractmethod
    def stop(self, graceful: bool = True) -> None:
        """Ask the model to stop; returns at once, safe from any thread."""

    def describe(self) -> str:
        """A few words for the start-up log line."""
        return self.name


class Refusals:
    """The requests a model refuses with 503 in one overload episode, and the two log lines
    an episode gets (its start, with why, and its end, with how many were refused).

    One line per episode rather than one per request: under overload the log is written at
    the refusal rate otherwise, which is itself load. Any thread may call both methods;
    ``count`` is read without the lock on the hot path (a stale read only delays ``over``
    by one request).
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def refuse(self, why: Callable[[], str]) -> None:
        """One more refused; the first of an episode logs ``why()``."""
        with self._lock:
            self.count += 1
            first = self.count == 1
        if first:
            log.warning("overloaded: %s; new requests get 503 until it catches up", why())

    def over(self) -> None:
        """A request was admitted again: the episode, if one was under way, has ended."""
        with self._lock:
            refused, self.count = self.count, 0
        if refused:
            log.warning("overload over: %d requests were refused with 503", refused)


#: How much of each new item's time the moving average of an item's time takes.
SERVICE_WEIGHT = 0.05


class QueueBound:
    """The bound on a queue of work for ``--threads`` threads (``pool``'s workers, the
    ``asyncio`` model's pool for sync code): a newcomer joins only while fewer than
    ``--max-queue`` wait and the wait it can expect, those ahead of it times an item's
    average time over the threads, is within ``--max-queue-wait``; else it is refused,
    and :attr:`refusals` counts and logs it.

    The threads fold each item's time into the average (:meth:`took`: a float store; two
    threads' updates may overwrite each other, it is an estimate) and the admitting thread
    reads it. Bounding by the waits already seen instead lags by a whole queue: a burst
    gets in as soon as the queue empties, and waits past the bound.
    """

    def __init__(self, config: Config, taker: str) -> None:
        self.threads = config.threads
        self.max_queue = config.max_queue
        self.max_wait = config.max_queue_wait or float("inf")
        self.bound = config.max_queue_wait  # (as the user gave it, for the log)
        self.taker = taker  # what takes the items, for the log: "worker", "thread"
        self.service_s = 0.0
        self.refusals = Refusals()

    def took(self, seconds: float) -> None:
        """An item took ``seconds``; the first one is the average (a server that starts
        under load has no other)."""
        service = self.service_s
        self.service_s = service + (seconds - service) * SERVICE_WEIGHT if service else seconds

    def admits(self, waiting: int) -> bool:
        """Whether a newcomer may join ``waiting`` items; else it is counted as refused."""
        expected = waiting * self.service_s / self.threads
        if waiting < self.max_queue and expected <= self.max_wait:
            if self.refusals.count:
                self.refusals.over()
            return True
        self.refusals.refuse(
            lambda: (
                f"{waiting} requests wait for a {self.taker} (--max-queue {self.max_queue})"
                if waiting >= self.max_queue
                else f"a new request would wait {expected:.1f}s for a {self.taker} "
                f"(--max-queue-wait {self.bound:g})"
            )
        )
        return False


class Connections:
    """Open connections of a thread-based model, counted against ``--max-connections``."""

    def __init__(self, limit: int, on_release: Waker) -> None:
        self.limit = limit
        self._open: dict[socket.socket, Session] = {}
        self._lock = threading.Lock()
        self._empty = threading.Condition(self._lock)
        self._waker = on_release

    def __len__(self) -> int:
        return len(self._open)

    @property
    def at_cap(self) -> bool:
        return len(self._open) >= self.limit

    def add(self, sock: socket.socket, session: Session) -> None:
        with self._lock:
            self._open[sock] = session
        STATS.opened()

    def remove(self, sock: socket.socket) -> None:
        """Forget a closed connection; wakes the accept loop, which may be paused at the cap."""
        with self._lock:
            was_at_cap = len(self._open) >= self.limit
            known = self._open.pop(sock, None) is not None
            if not self._open:
                self._empty.notify_all()
        if known:
            STATS.closed()
        if was_at_cap or not self._open:
            self._waker.wake()

    def busy(self) -> int:
        """Connections in the middle of a request (for the threads gauge of ``threads``)."""
        with self._lock:
            return sum(1 for session in self._open.values() if not session.idle)

    def wait_empty(self) -> None:
        """Block until every connection is gone (the stop watchdog guarantees it ends)."""
        with self._lock:
            while self._open:
                self._empty.wait()

    def shutdown(self, idle_only: bool) -> None:
        """Shut sockets down so threads blocked on them return; ``idle_only`` spares busy ones."""
        with self._lock:
            targets = [s for s, sess in self._open.items() if sess.idle or not idle_only]
        for sock in targets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ThreadModel(Model):
    """Base of ``single``, ``threads`` and ``pool``: a selector thread that accepts."""

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        super().__init__(config, service, listeners)
        self.waker = Waker()
        self.connections = Connections(config.max_connections, self.waker)
        self.stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._watchdog: threading.Timer | None = None
        self.selector = self.make_selector()
        self.selector.register(self.waker.fileno(), selectors.EVENT_READ, None)
        shared = config.workers > 1 and not config.reuse_port  # siblings accept too
        self.gate = AcceptGate(self.selector, listeners, self.connections, shared)
        STATS.add_source(self.load)
        service.lend(self.exchanges())

    def exchanges(self) -> ExchangeRunner | None:
        """How a connection runs several exchanges at once (HTTP/2 streams), or None: then
        the connection's own thread runs them one after another (``single``)."""
        return None

    def load(self) -> Load:
        """Threads, busy ones and queued work, for :mod:`threadloom.stats` (a thread each)."""
        return Load(len(self.connections), self.connections.busy(), 0)

    def make_selector(self) -> Any:
        """The selector the accept loop waits on (pool swaps in its own poller)."""
        return selectors.DefaultSelector()

    def stop(self, graceful: bool = True) -> None:
        with self._stop_lock:
            first = not self.stopping.is_set()
            self.stopping.set()
            if first:
                for listener in self.listeners:
                    _shutdown_listener(listener)
                self.service.going_away()
                if graceful:
                    self._watchdog = threading.Timer(
                        self.config.graceful_timeout, self._force_close
                    )
                    self._watchdog.daemon = True
                    self._watchdog.start()
        if graceful:
            self.connections.shutdown(idle_only=True)
        else:
            self._force_close()
        self.waker.wake()

    def _force_close(self) -> None:
        if len(self.connections):
            log.warning("closing %d connection(s) still open", len(self.connections))
        self.connections.shutdown(idle_only=False)

    def finish(self) -> None:
        """After the loop: wait for in-flight work (bounded by the watchdog), release all."""
        self.gate.close()
        self.connections.wait_empty()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.selector.close()
        self.waker.close()
        STATS.remove_source(self.load)


def _shutdown_listener(listener: Listener) -> None:
    """Refuse new connections now; the fd stays valid for whichever thread still uses it."""
    if listener.shared:
        return  # other workers accept on it: only this process stops (the gate closes it)
    try:
        listener.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


#: Connections a model takes from a listener per wake-up when no sibling process shares it.
ACCEPT_BURST = 64


class AcceptGate:
    """Keeps listeners registered with a selector only while accepting is allowed.

    Accepting pauses at the connection cap (logged once) and for a short back-off after the
    process runs out of descriptors, so a listener that stays readable never makes the loop
    spin; the kernel backlog holds new clients meanwhile.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector,
        listeners: list[Listener],
        connections: Connections,
        shared: bool = False,
    ) -> None:
        self.selector = selector
        self.listeners = listeners
        self.connections = connections
        #: connections taken per wake-up: one where sibling processes accept from the same
        #: sockets (--workers without --reuse-port), else a burst (see accept)
        self.per_wake = 1 if shared else ACCEPT_BURST
        self._registered = False
        self._closed = False
        self._backoff_until = 0.0
        self._cap_logged = False

    def update(self) -> float | None:
        """(Un)register listeners for the current state; returns seconds until it may change
        (at most ``portable.SIGNAL_WAKE_S`` where a signal cannot interrupt the wait: the
        loops that wait this long are on the main thread, which must run the handler)."""
        wait = None
        if not self._closed:
            now = time.monotonic()
            at_cap = self.connections.at_cap
            if at_cap and not self._cap_logged:
                self._cap_logged = True
                log.warning(
                    "reached --max-connections (%d); new connections wait in the backlog",
                    self.connections.limit,
                )
            want = not at_cap and now >= self._backoff_until
            if want != self._registered:
                self._register_listeners(want)
            wait = None if want or at_cap else self._backoff_until - now
        cap = portable.SIGNAL_WAKE_S
        return wait if cap is None or (wait is not None and wait < cap) else cap

    def _register_listeners(self, want: bool) -> None:
        for listener in self.listeners:
            if want:
                self.selector.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                self.selector.unregister(listener.sock)
        self._registered = want

    def accept(
        self, listener: Listener, most: int | None = None
    ) -> list[tuple[socket.socket, Any]]:
        """Take up to ``most`` (else :attr:`per_wake`) waiting connections, within the cap;
        back off when out of fds.

        Where sibling processes share the listening sockets, every one of them is woken by
        a new connection, and the first to run would take a whole burst (wrk's 64 at once:
        one process then served nearly all of them while the other idled, half the rate
        of ``--reuse-port``'s kernel spread). Taking one per wake-up leaves the rest to
        whichever sibling runs next, and the listener, level-triggered, wakes us again.
        """
        most = self.per_wake if most is None else most
        taken: list[tuple[socket.socket, Any]] = []
        while len(self.connections) + len(taken) < self.connections.limit and len(taken) < most:
            try:
                conn = accept(listener)
            except OutOfDescriptors as exc:
                log.warning(
                    "accept failed: %s; pausing accept for %.0f ms", exc, FD_BACKOFF_S * 1000
                )
                self._backoff_until = time.monotonic() + FD_BACKOFF_S
                break
            except OSError as exc:
                if self._closed:
                    break
                log.error("accept on %s failed: %s", listener.url, exc)
                break
            if conn is None:
                break
            taken.append(conn)
        return taken

    def close(self) -> None:
        """Stop accepting for good and close the listening sockets."""
        if self._closed:
            return
        if self._registered:
            for listener in self.listeners:
                self.selector.unregister(listener.sock)
        self._registered = False
        self._closed = True
        for listener in self.listeners:
            listener.close()
