"""``pool``: the tutorial's section 3, without its starvation problem.

Ownership passes by hand-off, never by sharing:

* the **I/O thread** (the one that calls :meth:`PoolModel.serve`) owns listeners and every
  *parked* connection: it accepts, reads until the session has a complete unit of work, and
  watches deadlines. Idle keep-alive clients and slow senders therefore never hold a worker.
* a **worker** owns a connection while it runs :meth:`Session.serve` (the app runs there).
  Afterwards it closes the connection, or hands it back through ``_handback`` and wakes the
  I/O thread, which parks it again.

Raw handlers own their socket for its whole life, so they hold a worker until they return,
exactly as in the tutorial.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import queue
import selectors
import socket
import threading
import time
from typing import Any

from threadloom.config import Config
from threadloom.engine.session import READ_SIZE, Service, Session, Want
from threadloom.models.base import ThreadModel, log
from threadloom.net.listeners import Listener

WorkItem = tuple[socket.socket, Session] | None


class PoolModel(ThreadModel):
    """One selector I/O thread feeding ``--threads`` workers through a queue."""

    name = "pool"

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        super().__init__(config, service, listeners)
        self._work: queue.SimpleQueue[WorkItem] = queue.SimpleQueue()
        self._handback: collections.deque[tuple[socket.socket, Session, Want]] = collections.deque()
        self._parked: dict[socket.socket, Session] = {}
        self._deadlines: list[tuple[float, int, socket.socket, Session]] = []
        self._seq = itertools.count()
        self._workers: list[threading.Thread] = []

    def describe(self) -> str:
        return f"pool ({self.config.threads} worker threads + 1 I/O thread)"

    def serve(self) -> None:
        for n in range(self.config.threads):
            worker = threading.Thread(
                target=self._work_loop, daemon=True, name=f"threadloom-worker-{n}"
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
        while True:
            if self.stopping.is_set():
                if not draining:
                    draining = True
                    self.gate.close()
                    self._close_idle_parked()
                if not len(self.connections):
                    return
            timeout = _earliest(self.gate.update(), self._next_deadline())
            for key, _ in self.selector.select(timeout):
                data = key.data
                if data is None:
                    self.waker.drain()
                    self._take_handbacks(draining)
                elif isinstance(data, Listener):
                    if not self.stopping.is_set():
                        for sock, addr in self.gate.accept(data):
                            self._begin(sock, addr)
                else:
                    self._read(key.fileobj, data)  # type: ignore[arg-type]
            self._expire_deadlines()

    def _begin(self, sock: socket.socket, addr: Any) -> None:
        session = self.service.session(sock, addr)
        self.connections.add(sock, session)
        self._dispatch(sock, session, session.start())

    def _dispatch(self, sock: socket.socket, session: Session, want: Want) -> None:
        """Act on what the session wants, from the I/O thread."""
        if want is Want.READ:
            if sock not in self._parked:
                sock.setblocking(False)
                self._parked[sock] = session
                self.selector.register(sock, selectors.EVENT_READ, session)
            deadline = session.deadline()
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, next(self._seq), sock, session))
            return
        if sock in self._parked:
            del self._parked[sock]
            self.selector.unregister(sock)
        if want is Want.SERVE:
            self._work.put((sock, session))
        else:
            self._close(sock, session)

    def _read(self, sock: socket.socket, session: Session) -> None:
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._dispatch(sock, session, session.feed(data))

    def _take_handbacks(self, draining: bool) -> None:
        while self._handback:
            sock, session, want = self._handback.popleft()
            if draining and want is Want.READ and session.idle:
                want = Want.CLOSE
            self._dispatch(sock, session, want)

    def _close_idle_parked(self) -> None:
        for sock, session in list(self._parked.items()):
            if session.idle:
                self._dispatch(sock, session, Want.CLOSE)

    def _next_deadline(self) -> float | None:
        if not self._deadlines:
            return None
        return max(self._deadlines[0][0] - time.monotonic(), 0.0)

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, sock, session = heapq.heappop(self._deadlines)
            if self._parked.get(sock) is not session:
                continue  # served or closed since: a stale entry
            current = session.deadline()
            if current is not None and current > now:
                heapq.heappush(self._deadlines, (current, next(self._seq), sock, session))
                continue
            self._dispatch(sock, session, session.expire())

    def _close(self, sock: socket.socket, session: Session) -> None:
        try:
            session.close()
        finally:
            self.connections.remove(sock)

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            sock, session = item
            try:
                want = session.serve()
            except Exception:
                log.exception("session failed unexpectedly; connection closed")
                want = Want.CLOSE
            if want is Want.CLOSE:
                self._close(sock, session)
            else:
                self._handback.append((sock, session, want))
                self.waker.wake()


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
