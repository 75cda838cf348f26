"""``pool``: the tutorial's section 3, without its starvation problem.

Ownership passes by hand-off, never by sharing:

* the **I/O thread** (the one that calls :meth:`PoolModel.serve`) accepts, reads from
  *parked* connections until their session has a complete unit of work, and expires
  deadlines. Idle keep-alive clients and slow senders therefore never hold a worker.
* a **worker** owns a connection while it runs :meth:`Session.serve` (the app runs there).
  Afterwards it closes the connection, or parks it again by re-arming it in epoll.

Connections are registered with ``EPOLLONESHOT``: an event disarms the connection, so the
I/O thread and a worker can never both act on it, and a worker hands a connection back with
one ``epoll_ctl`` call, without a queue or a wake-up. Deadlines of parked connections are
swept twice a second, and only while there are connections.

Raw handlers own their socket for its whole life, so they hold a worker until they return,
exactly as in the tutorial.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from typing import Any

from threadloom.config import Config
from threadloom.engine.session import CLOSE, READ, READ_SIZE, SERVE, Service, Session, Want
from threadloom.models.base import ThreadModel, log
from threadloom.net.listeners import Listener
from threadloom.stats import Load

SWEEP_INTERVAL_S = 0.5
_ARMED = select.EPOLLIN | select.EPOLLONESHOT
Conn = tuple[socket.socket, Session]
WorkItem = tuple[int, socket.socket, Session] | None


class EpollMux:
    """One epoll for listeners, the waker (level-triggered) and connections (one-shot)."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.data: dict[int, Any] = {}

    def register(self, fileobj: Any, events: int, data: Any) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.data[fd] = data
        self.epoll.register(fd, select.EPOLLIN)

    def unregister(self, fileobj: Any) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        self.data.pop(fd, None)
        self.epoll.unregister(fd)

    def add(self, fd: int, conn: Conn) -> None:
        self.data[fd] = conn
        self.epoll.register(fd, _ARMED)

    def rearm(self, fd: int) -> None:
        """Watch a connection again; safe from any thread (epoll_ctl is)."""
        self.epoll.modify(fd, _ARMED)

    def close(self) -> None:
        self.epoll.close()


class PoolModel(ThreadModel):
    """One epoll I/O thread feeding ``--threads`` workers through a queue."""

    name = "pool"

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        self.mux = EpollMux()
        super().__init__(config, service, listeners)
        self._work: queue.SimpleQueue[WorkItem] = queue.SimpleQueue()
        self._parked: set[int] = set()
        self._workers: list[threading.Thread] = []
        self._busy = [False] * config.threads  # slot n is written by worker n only
        self._next_sweep = 0.0
        self._max_queue = config.max_queue

    def make_selector(self) -> Any:
        return self.mux

    def describe(self) -> str:
        return f"pool ({self.config.threads} worker threads + 1 I/O thread)"

    def load(self) -> Load:
        return Load(self.config.threads, sum(self._busy), self._work.qsize())

    def serve(self) -> None:
        for n in range(self.config.threads):
            worker = threading.Thread(
                target=self._work_loop, args=(n,), daemon=True, name=f"threadloom-worker-{n}"
            )
            worker.start()
            self._workers.append(worker)
        self.ready.set()
        try:
            self._io_loop()
        finally:
            self.finish()
            for _ in self._workers:
                self._work.put(None)
            for worker in self._workers:
                worker.join(timeout=1.0)

    def _io_loop(self) -> None:
        draining = False
        data, parked, put = self.mux.data, self._parked, self._work.put
        while True:
            if self.stopping.is_set():
                if not draining:
                    draining = True
                    self.gate.close()
                    self._sweep(time.monotonic(), close_idle=True)
                if not len(self.connections):
                    return
            timeout = _earliest(self.gate.update(), self._sweep_timeout())
            events = self.mux.epoll.poll(-1 if timeout is None else timeout)
            for fd, _ in events:
                target = data.get(fd)
                if type(target) is tuple:  # a connection (the most common): read, feed, act
                    sock, session = target
                    try:
                        received = sock.recv(READ_SIZE)
                    except BlockingIOError:
                        self.mux.rearm(fd)
                        continue
                    except OSError:
                        received = b""
                    want = session.feed(received)
                    if want is SERVE and self._work.qsize() < self._max_queue:
                        parked.discard(fd)
                        put((fd, sock, session))  # _dispatch's common case, inline
                    else:
                        self._dispatch(fd, sock, session, want)
                elif target is None:
                    self.waker.drain()
                elif not self.stopping.is_set():  # a Listener
                    for sock, addr in self.gate.accept(target):
                        self._begin(sock, addr)
            now = time.monotonic()
            if now >= self._next_sweep and len(self.connections):
                self._sweep(now, close_idle=draining)

    def _begin(self, sock: socket.socket, addr: Any) -> None:
        session = self.service.session(sock, addr)
        self.connections.add(sock, session)
        fd = sock.fileno()
        self.mux.data[fd] = (sock, session)
        want = session.start()
        if want is READ:
            self._parked.add(fd)
            self.mux.epoll.register(fd, _ARMED)
        else:
            self._dispatch(fd, sock, session, want)

    def _dispatch(self, fd: int, sock: socket.socket, session: Session, want: Want) -> None:
        """Act on what a session wants, from the I/O thread."""
        if want is READ:
            self._parked.add(fd)
            self.mux.rearm(fd)
            return
        self._parked.discard(fd)
        if want is SERVE and self._work.qsize() < self._max_queue:
            self._work.put((fd, sock, session))
            return
        if want is SERVE:
            log.warning(
                "work queue full (--max-queue %d): refusing a request", self.config.max_queue
            )
            session.overloaded()
        self._close(fd, sock, session)

    def _sweep_timeout(self) -> float | None:
        if not len(self.connections):
            return None  # nothing to expire, and a new connection wakes us anyway
        return max(self._next_sweep - time.monotonic(), 0.0)

    def _sweep(self, now: float, close_idle: bool) -> None:
        """Expire parked connections whose deadline passed (and idle ones when draining)."""
        self._next_sweep = now + SWEEP_INTERVAL_S
        data = self.mux.data
        for fd in list(self._parked):
            conn = data.get(fd)
            if conn is None:
                self._parked.discard(fd)
                continue
            sock, session = conn
            if close_idle and session.idle:
                self._parked.discard(fd)
                self._close(fd, sock, session)
                continue
            deadline = session.deadline()
            if deadline is not None and deadline <= now:
                self._parked.discard(fd)
                self._dispatch(fd, sock, session, session.expire())

    def _close(self, fd: int, sock: socket.socket, session: Session) -> None:
        self.mux.data.pop(fd, None)  # before close: the fd number may be reused at once
        try:
            session.close()
        finally:
            self.connections.remove(sock)

    def _work_loop(self, n: int) -> None:
        busy, parked, get = self._busy, self._parked, self._work.get
        modify, stopping = self.mux.epoll.modify, self.stopping
        while True:
            item = get()
            if item is None:
                return
            fd, sock, session = item
            busy[n] = True
            try:
                want = session.serve()
            except Exception:
                log.exception("session failed unexpectedly; connection closed")
                want = CLOSE
            busy[n] = False
            if want is READ and not (stopping.is_set() and session.idle):
                parked.add(fd)
                try:
                    modify(fd, _ARMED)  # EpollMux.rearm, inline: hand it back to the I/O thread
                    continue
                except OSError:
                    parked.discard(fd)
            elif want is SERVE:
                self._work.put(item)
                continue
            self._close(fd, sock, session)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
