"""``pool``: the tutorial's section 3, without its starvation problem.

Ownership passes by hand-off, never by sharing:

* the **I/O thread** (the one that calls :meth:`PoolModel.serve`) accepts, reads from
  *parked* connections until their session has a complete unit of work, and expires
  deadlines. Idle keep-alive clients and slow senders therefore never hold a worker.
* a **worker** owns a connection while it runs :meth:`Session.serve` (the app runs there).
  Afterwards it closes the connection, or parks it again.

Connections are registered once, edge-triggered (``EPOLLET``): epoll reports each arrival of
bytes, and nothing has to be re-armed when a worker hands a connection back (that was one
``epoll_ctl`` system call per request). Who may act on a connection is decided by the
``_serving`` set, under the ``_handoff`` lock:

* the I/O thread takes an event for a connection a worker owns as a note in ``_missed``
  and does not touch the connection;
* a worker handing a connection back checks ``_missed`` under the same lock: if bytes came
  while it served, it keeps the connection and reads them itself, else it parks it.

So bytes are never left unread behind an edge that was already reported. Two more cases
would leave something unread after a read: a read that fills the buffer (more may wait), and
a peer that has shut down its side (``EPOLLRDHUP``: the end of input follows the bytes, and
it is reported with them, not again). Both are read on at once, or, when the session has
a request to serve first, noted in ``_missed`` for the worker to read afterwards.
Deadlines of parked connections are swept when the earliest of them is due (found by the
previous sweep, or noted when the I/O thread parks one), batched to ``SWEEP_MIN_S`` and at
least every ``SWEEP_MAX_S`` (for connections a worker parked since), and only while there
are connections. A connection is thus closed within ``SWEEP_MIN_S`` of its deadline, not
up to half a second late as with a fixed period.

A response the socket did not take whole (a slow reader) is not waited for by its worker:
the session answers ``WRITE`` and the worker hands the connection to the I/O thread, which
watches it for ``EPOLLOUT`` too and calls ``Session.flush`` on each edge until it is sent,
then reads what came meanwhile. Such connections sit in ``_writing``; their deadline (the
reader's ``--min-send-rate``) is swept like the parked ones'.

Overload: work waits in one queue, and a request joins it only if its
:class:`~threadloom.models.base.QueueBound` says so: fewer than ``--max-queue`` wait, and
the wait it can expect (those ahead of it times the time a worker takes for one, a moving
average that workers keep, over the workers) is within ``--max-queue-wait``. Otherwise it
is answered 503 with ``Retry-After`` at once, without reaching the app. A queue bounded by
its length alone lets every wait grow with the app's slowness until clients give up; this
bound keeps the wait of what is served near the bound and refuses the rest while it lasts,
logging the start and the end of each episode.

Raw handlers own their socket for its whole life, so they hold a worker until they return,
exactly as in the tutorial.

The rules above are written for epoll, Linux's poller. Elsewhere (or with
``THREADLOOM_POLLER``) a level-triggered ``selectors`` poller keeps the same hand-offs by
watching only the connections the I/O thread owns (models/pollers.py): every hand-off is
told to ``self.mux``, which does nothing under epoll.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from threadloom import portable
from threadloom.config import Config
from threadloom.engine.session import (
    CLOSE,
    READ,
    READ_SIZE,
    SERVE,
    WRITE,
    ExchangeRunner,
    Service,
    Session,
    Want,
)
from threadloom.models.base import QueueBound, ThreadModel, log
from threadloom.models.pollers import ERR, HUP, IN, OUT, RDHUP, Poller, make_poller
from threadloom.net.listeners import Listener
from threadloom.stats import Load

#: Sweeps are at least this far apart (deadlines due close together expire together) ...
SWEEP_MIN_S = 0.05
#: ... and at most this far: a worker parks a connection without telling the I/O thread
#: its deadline, which is a keep-alive one, seconds away.
SWEEP_MAX_S = 0.5
_HANGUP = RDHUP | HUP | ERR
_FULL = IN  # in _missed: a read filled the buffer
_WRITABLE = OUT | ERR | HUP
Conn = tuple[socket.socket, Session]
#: a connection's request, an HTTP/2 exchange, or None (stop)
WorkItem = tuple[int, socket.socket, Session] | Callable[[], None] | None


class PoolModel(ThreadModel):
    """One I/O thread (epoll, or a selector: models/pollers.py) feeding ``--threads``
    workers through a queue."""

    name = "pool"
    runs_sync_on_pool = True

    def __init__(self, config: Config, service: Service, listeners: list[Listener]) -> None:
        self.mux: Poller
        super().__init__(config, service, listeners)
        self._work: queue.SimpleQueue[WorkItem] = queue.SimpleQueue()
        self._parked: set[int] = set()  # connections the I/O thread looks after
        self._serving: set[int] = set()  # connections a worker owns
        self._missed: dict[int, int] = {}  # ... and the events it missed meanwhile
        self._writing: set[int] = set()  # connections the I/O thread sends a response on
        self._handoff = threading.Lock()  # guards _serving and _missed together
        self._workers: list[threading.Thread] = []
        self._busy = [False] * config.threads  # slot n is written by worker n only
        self._next_sweep = 0.0
        self._queue = QueueBound(config, "worker")  # what may join _work (overload)
        self._to_flush: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()

    def make_selector(self) -> Any:
        self.mux = make_poller(self.waker)
        capacity = self.mux.capacity
        if capacity is not None and self.connections.limit > capacity:
            log.info(
                "--max-connections %d lowered to %d: %s watches no more sockets",
                self.connections.limit,
                capacity,
                self.mux.name,
            )
            self.connections.limit = capacity
        return self.mux

    def exchanges(self) -> ExchangeRunner:
        return self

    def submit(self, work: Callable[[], None]) -> bool:
        """An exchange of a multiplexed connection (HTTP/2), queued like a connection's
        request (admitted as one is: _admits); the I/O thread keeps reading the connection."""
        if not self._admits():
            return False
        self._work.put(work)
        return True

    def _admits(self) -> bool:
        """Whether a request may wait for a worker (see the module docstring)."""
        return self._queue.admits(self._work.qsize())

    def flush_later(self, sock: socket.socket) -> bool:
        """A worker's exchange left bytes the socket did not take: the I/O thread sends
        them (it moves the connection to ``_writing`` if the socket stays full)."""
        self._to_flush.put(sock)
        self.waker.wake()
        return True

    def describe(self) -> str:
        threads = self.config.threads
        return f"pool ({threads} worker threads + 1 I/O thread on {self.mux.name})"

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
        data, serving, missed, handoff = self.mux.data, self._serving, self._missed, self._handoff
        while True:
            if self.stopping.is_set():
                if not draining:
                    draining = True
                    self.gate.close()
                    self._sweep(time.monotonic(), close_idle=True)
                if not len(self.connections):
                    return
            timeout = _earliest(self.gate.update(), self._sweep_timeout())
            ready = self.mux.poll(timeout)
            for fd, events in ready:
                target = data.get(fd)
                if type(target) is tuple:  # a connection (the most common)
                    if fd in serving:  # (only this thread adds: if not, it stays not)
                        with handoff:
                            if fd in serving:
                                missed[fd] = missed.get(fd, 0) | events  # its worker reads
                                continue
                    sock, session = target
                    try:
                        if fd in self._writing:
                            self._write(fd, sock, session, events)
                            continue
                        want = self._receive(fd, sock, session, events & _HANGUP)
                        self._dispatch(fd, sock, session, want)
                    except Exception:  # one connection's bug must not end the I/O thread
                        log.exception("connection failed unexpectedly; closed")
                        self._parked.discard(fd)
                        self._close(fd, sock, session)
                elif target is None:
                    self.waker.drain()
                    self._flush_asked()
                elif not self.stopping.is_set():  # a Listener
                    for sock, addr in self.gate.accept(target):
                        self._begin(sock, addr)
            now = time.monotonic()
            if now >= self._next_sweep and len(self.connections):
                self._sweep(now, close_idle=draining)

    def _flush_asked(self) -> None:
        """Connections whose workers asked for their output to be sent (flush_later)."""
        while not self._to_flush.empty():
            sock = self._to_flush.get()
            fd = sock.fileno()
            conn = self.mux.data.get(fd)
            if fd < 0 or conn is None or conn[0] is not sock or fd not in self._parked:
                continue  # closed, or being written or served already
            want = conn[1].flush()
            if want is WRITE:
                self._parked.discard(fd)
                self._writing.add(fd)
                try:
                    self.mux.watch_writes(fd)
                except OSError:
                    self._writing.discard(fd)
                    self._close(fd, sock, conn[1])
            elif want is CLOSE:
                self._parked.discard(fd)
                self._close(fd, sock, conn[1])

    def _begin(self, sock: socket.socket, addr: Any) -> None:
        session = self.service.session(sock, addr)
        self.connections.add(sock, session)
        fd = sock.fileno()
        want = session.start()
        if want is READ:
            self._parked.add(fd)
            self.mux.add(fd, (sock, session))
        else:
            self.mux.data[fd] = (sock, session)  # known, never watched: a worker owns it
            self._dispatch(fd, sock, session, want)

    def _receive(self, fd: int, sock: socket.socket, session: Session, hangup: int) -> Want:
        """Read what has arrived and feed it; on the thread that owns the connection.

        Reads on while a read fills the buffer or the peer has shut down its side (the
        edge for what is left was already reported); when the session has a request to
        serve first, notes what is left in ``_missed`` for the worker to read afterwards.
        """
        while True:
            try:
                received = sock.recv(READ_SIZE)
            except BlockingIOError:
                return READ  # nothing after all: the next arrival is reported
            except OSError:
                received = b""
            want = session.feed(received)
            if not received or (len(received) < READ_SIZE and not hangup):
                return want
            if want is not READ:
                with self._handoff:
                    self._missed[fd] = self._missed.get(fd, 0) | _FULL | hangup
                return want

    def _write(self, fd: int, sock: socket.socket, session: Session, events: int) -> None:
        """An event for a connection whose response the I/O thread sends: send more on a
        writable edge; once all is sent, stop watching for EPOLLOUT and read what came."""
        if not events & _WRITABLE:
            return  # bytes arrived: read once the response is out
        want = session.flush()
        if want is WRITE:
            return
        self._writing.discard(fd)
        if want is not CLOSE:
            try:
                self.mux.written(fd)
            except OSError:
                want = CLOSE
        if want is READ:
            want = self._receive(fd, sock, session, events & _HANGUP)
        self._dispatch(fd, sock, session, want)

    def _dispatch(self, fd: int, sock: socket.socket, session: Session, want: Want) -> None:
        """Act on what a session wants, from the I/O thread."""
        if want is READ:
            self._parked.add(fd)
            deadline = session.deadline()
            if deadline is not None and deadline < self._next_sweep:
                self._next_sweep = deadline
            return
        self._parked.discard(fd)
        if want is WRITE:  # (HTTP/2: frames the owner made, a PING's answer, a window's worth)
            self._writing.add(fd)
            try:
                self.mux.watch_writes(fd)
                return
            except OSError:
                self._writing.discard(fd)
        # (an empty queue admits, unless an overload episode has yet to be logged as over:
        # the usual case, decided without a call)
        if want is SERVE and (
            not (self._work.qsize() or self._queue.refusals.count) or self._admits()
        ):
            self._serving.add(fd)  # only this thread adds, and only for what it owns
            if self.mux.hands_off:
                self.mux.serving(fd)
            self._work.put((fd, sock, session))
            return
        if want is SERVE:
            session.overloaded()
        self._close(fd, sock, session)

    def _sweep_timeout(self) -> float | None:
        if not len(self.connections):
            return None  # nothing to expire, and a new connection wakes us anyway
        return max(self._next_sweep - time.monotonic(), 0.0)

    def _sweep(self, now: float, close_idle: bool) -> None:
        """Expire parked connections whose deadline passed (and idle ones when draining);
        the next sweep is due at the earliest deadline left (see the module docstring)."""
        earliest = now + SWEEP_MAX_S
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
            if deadline is None:
                continue
            if deadline <= now:
                self._parked.discard(fd)
                self._dispatch(fd, sock, session, session.expire())
            elif deadline < earliest:
                earliest = deadline
        for fd in list(self._writing):
            sock, session = data[fd]
            deadline = session.deadline()
            if deadline is not None and deadline <= now:
                self._writing.discard(fd)
                session.expire()  # (counts and logs the slow reader; always CLOSE)
                self._close(fd, sock, session)
            elif deadline is not None and deadline < earliest:
                earliest = deadline
        self._next_sweep = max(earliest, now + SWEEP_MIN_S)

    def _close(self, fd: int, sock: socket.socket, session: Session) -> None:
        self.mux.forget(fd)  # before close: the fd number may be reused at once
        self._writing.discard(fd)
        with self._handoff:
            self._serving.discard(fd)
            self._missed.pop(fd, None)
        try:
            session.close()
        finally:
            self.connections.remove(sock)

    def _work_loop(self, n: int) -> None:
        portable.worker_waits_its_turn()  # (woken by the I/O thread: see its docstring)
        busy, get, put, stopping = self._busy, self._work.get, self._work.put, self.stopping
        while True:
            item = get()
            if item is None:
                return
            began = time.monotonic()
            if not isinstance(item, tuple):  # an exchange of a multiplexed connection
                busy[n] = True
                try:
                    item()
                except Exception:
                    log.exception("exchange failed unexpectedly")
                busy[n] = False
                self._took(began)
                continue
            fd, sock, session = item
            busy[n] = True
            try:
                want = session.serve()
            except Exception:
                log.exception("session failed unexpectedly; connection closed")
                want = CLOSE
            parked = False
            # READ: park it, unless bytes came while it was served (then read them here)
            while want is READ and not (stopping.is_set() and session.idle):
                missed = self._hand_back(fd)
                if missed is None:
                    parked = True
                    if self.mux.hands_off:
                        self.mux.parked(fd, sock)
                    break  # from here on the I/O thread may act on it: hands off
                want = self._receive(fd, sock, session, missed & _HANGUP)
            busy[n] = False
            self._took(began)
            if parked:
                continue
            if want is WRITE and self._hand_over_writing(fd, sock):
                continue  # the I/O thread sends the rest: this worker serves someone else
            if want is SERVE:
                put(item)  # behind the work already queued, as a new request would be
            else:
                self._close(fd, sock, session)

    def _took(self, began: float) -> None:
        """A worker finished an item it began at ``began``: the queue's bound learns."""
        self._queue.took(time.monotonic() - began)

    def _hand_over_writing(self, fd: int, sock: socket.socket) -> bool:
        """Give the I/O thread a connection whose response waits for its reader; False if
        the socket is gone (then the worker closes it)."""
        with self._handoff:
            self._missed.pop(fd, None)  # read after the response is out, whatever came
            self._serving.discard(fd)
            self._writing.add(fd)
        try:
            self.mux.writing(fd, sock)
        except OSError:
            with self._handoff:
                self._writing.discard(fd)
            return False
        return True

    def _hand_back(self, fd: int) -> int | None:
        """Park a connection a worker is done with (None), unless events came meanwhile:
        then it stays with the worker, which gets the events to read on."""
        with self._handoff:
            missed = self._missed.pop(fd, None)
            if missed is None:
                self._serving.discard(fd)
                self._parked.add(fd)
            return missed


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
