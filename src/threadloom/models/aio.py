"""``asyncio``: the tutorial's section 7. One event loop; sync apps on a bounded pool.

Async interfaces run on the loop. Sync ones (a raw ``handle(sock, addr)``, later WSGI) run
on a ``ThreadPoolExecutor`` of ``--threads`` threads, lent to services as an
:class:`AsyncRuntime`. Each listener has an accept coroutine that waits while the
connection cap is reached and backs off when descriptors run out.

Overload: on one loop, the loop is the queue. A timer set every ``LAG_SAMPLE_S`` runs late
by as long as the callbacks ahead of it take (a pass of the loop), and a new request's
bytes wait about as long to be read. So a request that comes once the next sample is
overdue by more than a pass's share of ``--max-queue-wait`` is answered 503 with
``Retry-After`` at once (a few microseconds each, which is what lets the loop catch up).
The share is a quarter (``PASSES_A_WAIT``): a request's bytes wait up to a pass to be
read, and a new connection's up to about four (the accept, the connection's task, its
transport, the read); with the whole bound a pass, p99 was 3.4-4x the bound in a probe.
Counting from the overdue sample, not from the last one's lateness, caps each pass: a loop
busy with a thousand CPU-bound requests read in one pass serves a share's worth of them
and refuses the rest of that pass, and the next pass starts afresh. (Refusing every
request until a sample is on time again, after a late one, refused whole passes: served
clients that came back at once were refused with the others, and the loop then idled while
all of them waited out their ``Retry-After``; in a probe that halved what was served.)
What goes to the thread pool is bounded as ``pool`` bounds its queue
(:class:`~threadloom.models.base.QueueBound`). Apps that await I/O add no lag, so they are
never refused for their waits. :class:`~threadloom.models.base.Refusals` logs each
episode once.

Stopping: listeners close at once; connections get ``graceful_timeout`` seconds; what is
left is cancelled and its socket shut down, which also frees pool threads blocked on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from threadloom import portable
from threadloom.config import Config
from threadloom.engine.session import Service
from threadloom.models.base import Model, QueueBound, log
from threadloom.models.loops import loop_factory
from threadloom.net.listeners import (
    FD_BACKOFF_S,
    OUT_OF_FDS,
    TRANSIENT,
    Listener,
    tune_connection,
)
from threadloom.stats import STATS, Load

T = TypeVar("T")
#: How often the loop's lag is sampled (at most; twice a pass's share of the bound, if that
#: is more often) ...
LAG_SAMPLE_S = 0.1
#: ... and how many passes of the loop a request's wait may span (see the module docstring):
#: a pass may overrun its sample by the bound over this.
PASSES_A_WAIT = 4


class AsyncioModel(Model):
    """One event loop (uvloop when installed) plus a bounded thread pool for sync apps."""

    name = "asyncio"
    runs_coroutines = True
    runs_sync_on_pool = True

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        super().__init__(config, service, listeners)
        self.loop_name, self._new_loop = loop_factory(config.loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: bool | None = None  # None: running; True/False: graceful?
        self._lock = threading.Lock()
        self._stop_event: asyncio.Event | None = None
        self._force_event: asyncio.Event | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: dict[asyncio.Task[None], socket.socket] = {}
        self._slot_free: asyncio.Event | None = None
        self._cap_logged = False
        self._count_lock = threading.Lock()
        self._submitted = 0  # sync calls handed to the pool (loop thread only)
        self._started = 0  # ... that a pool thread has started (under _count_lock)
        self._busy = 0  # ... that are running now (under _count_lock)
        # Overload (see the module docstring): the sync pool's queue, and the loop's lag
        # (read and written on the loop)
        self._queue = QueueBound(config, "thread")
        self._pass_s = self._queue.max_wait / PASSES_A_WAIT  # a pass's share of the bound
        self._sample_s = min(LAG_SAMPLE_S, self._pass_s / 2)
        self._sample_due = float("inf")  # when the next one should run (time.perf_counter())
        #: (AsyncRuntime) until when a request on the loop is admitted without a look (the
        #: hot path): the next sample's time plus a pass's share, outside an overload episode
        self.admit_until = float("inf") if self._pass_s == float("inf") else 0.0

    def describe(self) -> str:
        return f"asyncio ({self.loop_name} loop, {self.config.threads} threads for sync code)"

    def serve(self) -> None:
        with asyncio.Runner(loop_factory=self._new_loop) as runner:
            runner.run(self._main())

    def stop(self, graceful: bool = True) -> None:
        with self._lock:
            if self._stop_requested is None or not graceful:
                self._stop_requested = graceful
            loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._apply_stop)
            except RuntimeError:
                pass  # the loop closed meanwhile: nothing left to stop

    def _apply_stop(self) -> None:
        assert self._stop_event is not None and self._force_event is not None
        self._stop_event.set()
        if self._stop_requested is False:
            self._force_event.set()

    def run_sync(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """The :class:`AsyncRuntime` lent to services: run blocking code on our pool."""
        assert self._loop is not None
        self._submitted += 1
        return self._loop.run_in_executor(self._executor, self._counted, fn, args)

    def _counted(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._count_lock:
            self._started += 1
            self._busy += 1
        began = time.monotonic()
        try:
            return fn(*args)
        finally:
            took = time.monotonic() - began
            with self._count_lock:
                self._busy -= 1
                self._queue.took(took)

    def admits(self, on_pool: bool, now: float) -> bool:
        """Whether a request beginning ``now`` may start (see the module docstring); else
        it is counted as refused, and the caller answers 503."""
        late = now - self._sample_due
        if late > self._pass_s:
            self._queue.refusals.refuse(
                lambda: (
                    f"a pass of the event loop ran {late:.2f}s past its time, more than "
                    f"--max-queue-wait {self._queue.bound:g} over {PASSES_A_WAIT}"
                )
            )
            return False
        return self._queue.admits(self._submitted - self._started if on_pool else 0)

    def _sample_lag(self) -> None:
        """Sets the next sample of the loop's lag (see the module docstring)."""
        assert self._loop is not None
        self._sample_due = time.perf_counter() + self._sample_s
        # (while an episode is under way, requests take the slow path, which ends it)
        self.admit_until = 0.0 if self._queue.refusals.count else self._sample_due + self._pass_s
        self._loop.call_later(self._sample_s, self._sample_lag)

    def load(self) -> Load:
        """The pool's threads, busy ones and calls waiting, for :mod:`threadloom.stats`."""
        return Load(self.config.threads, self._busy, max(self._submitted - self._started, 0))

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._force_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.config.threads,
            thread_name_prefix="threadloom-aio",
            initializer=portable.worker_waits_its_turn,  # woken by the loop's thread
        )
        with self._lock:
            self._loop = asyncio.get_running_loop()
            if self._stop_requested is not None:
                self._apply_stop()
        try:
            await self.service.startup()
        except BaseException:
            for listener in self.listeners:
                listener.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            raise
        STATS.add_source(self.load)
        if self._pass_s != float("inf"):
            self._sample_due = time.perf_counter()
            self._sample_lag()
        accepting = [asyncio.create_task(self._accept_loop(lst)) for lst in self.listeners]
        self.ready.set()
        try:
            await self._stop_event.wait()
        finally:
            for task in accepting:
                task.cancel()
            await asyncio.gather(*accepting, return_exceptions=True)  # see _accept
            for listener in self.listeners:
                listener.close()
            self.service.going_away()
            await self._drain()
            await self.service.shutdown()
            self._executor.shutdown(wait=False, cancel_futures=True)
            STATS.remove_source(self.load)

    async def _drain(self) -> None:
        """Give open connections ``graceful_timeout`` (less if forced), then cancel them."""
        assert self._force_event is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.graceful_timeout
        force = asyncio.create_task(self._force_event.wait())
        while self._tasks and not force.done() and loop.time() < deadline:
            await asyncio.wait(
                [*self._tasks, force],
                timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        force.cancel()
        if self._tasks:
            log.warning("closing %d connection(s) still open", len(self._tasks))
            for task, sock in list(self._tasks.items()):
                _shutdown(sock)
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept_loop(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        assert self._slot_free is not None
        while True:
            while len(self._tasks) >= self.config.max_connections:
                if not self._cap_logged:
                    self._cap_logged = True
                    log.warning(
                        "reached --max-connections (%d); new connections wait in the backlog",
                        self.config.max_connections,
                    )
                self._slot_free.clear()
                await self._slot_free.wait()
            try:
                sock, addr = await self._accept(loop, listener)
            except OSError as exc:
                if exc.errno in OUT_OF_FDS:
                    log.warning(
                        "accept failed: %s; pausing accept for %.0f ms",
                        exc.strerror,
                        FD_BACKOFF_S * 1000,
                    )
                    await asyncio.sleep(FD_BACKOFF_S)
                elif exc.errno not in TRANSIENT:
                    log.error("accept on %s failed: %s", listener.url, exc)
                    await asyncio.sleep(FD_BACKOFF_S)
                continue
            self._open(sock, addr or listener.url)

    async def _accept(
        self, loop: asyncio.AbstractEventLoop, listener: Listener
    ) -> tuple[socket.socket, Any]:
        """``loop.sock_accept``, but a stop never loses a connection already accepted.

        asyncio's and uvloop's drop the accepted socket when the task is cancelled between
        the accept and its resumption; its client, whose request is on the way, gets a
        reset. A graceful stop under load (each old worker on SIGHUP) hit that window.
        Here a connection accepted before the cancellation is served like any other.
        """
        sock = listener.sock
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            pass
        else:
            conn.setblocking(False)
            return conn, addr
        accepted: asyncio.Future[tuple[socket.socket, Any]] = loop.create_future()

        def readable() -> None:
            if accepted.done():
                return
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                accepted.set_exception(exc)
            else:
                conn.setblocking(False)
                accepted.set_result((conn, addr))
            loop.remove_reader(sock)

        loop.add_reader(sock, readable)
        try:
            return await accepted
        except asyncio.CancelledError:
            loop.remove_reader(sock)
            if accepted.done() and not accepted.cancelled() and accepted.exception() is None:
                conn, addr = accepted.result()
                self._open(conn, addr or listener.url)
            raise

    def _open(self, sock: socket.socket, addr: Any) -> None:
        """Serve a new connection on a task of its own."""
        if sock.family != portable.AF_UNIX:
            tune_connection(sock)
        task = asyncio.create_task(self._serve_connection(sock, addr))
        self._tasks[task] = sock
        task.add_done_callback(self._forget)
        STATS.opened()

    async def _serve_connection(self, sock: socket.socket, addr: Any) -> None:
        try:
            await self.service.serve_async(sock, addr, self)
        except asyncio.CancelledError:
            _shutdown(sock)
            raise
        except Exception:
            log.exception("connection from %s failed unexpectedly", addr)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if self._tasks.pop(task, None) is not None:
            STATS.closed()
        assert self._slot_free is not None
        self._slot_free.set()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        if exc.errno not in (errno.ENOTCONN, errno.EBADF):
            log.debug("shutdown failed: %s", exc)
