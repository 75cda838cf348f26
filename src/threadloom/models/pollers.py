"""The pool's pollers: what its I/O thread waits on, behind one small interface.

``pool`` hands connections between its I/O thread and its workers (models/pool.py states
the rules). A poller tells the I/O thread which connections have something for it, and is
told each hand-off, so that it watches exactly the connections the I/O thread owns:

============================ ================ ==============================================
the pool says                 thread            watch from then on
============================ ================ ==============================================
``add(fd, conn)``             I/O thread        reads (a new connection)
``serving(fd)``               I/O thread        nothing: a worker owns it
``parked(fd, sock)``          a worker          reads (handed back)
``writing(fd, sock)``         a worker          writes (handed back with a response to send)
``watch_writes(fd)``          I/O thread        writes (output it made itself waits)
``written(fd)``               I/O thread        reads (the response is out)
``forget(fd)``                the owner         nothing (before the socket closes)
============================ ================ ==============================================

Listeners and the waker are watched for reading through ``register``/``unregister`` (the
part of the ``selectors`` interface :class:`~threadloom.models.base.AcceptGate` uses).
``poll(timeout)`` answers ``(fd, events)`` pairs whose bits are epoll's on every platform
(:data:`IN`, :data:`OUT`, ...), so the pool's rules read the same over both pollers.

Two pollers keep those rules:

* :class:`EpollPoller` (Linux, the default): connections are registered once, edge-
  triggered, so a hand-off costs no system call; ``serving`` and ``parked`` do nothing.
  An edge is reported once, which is why the pool notes events for a connection a worker
  owns in ``_missed`` and reads on after a read that fills the buffer.
* :class:`SelectorPoller` (``selectors.DefaultSelector``: kqueue on macOS and the BSDs,
  ``select`` on Windows; forced on Linux by ``THREADLOOM_POLLER``): level-triggered, so a
  connection a worker owns is unregistered (its bytes would be reported on every wait), and
  a connection being written to is watched for writes only (bytes that arrive meanwhile
  are read once the response is out, as under epoll). A selector may only be changed by
  the thread that waits on it, so the workers' hand-backs are queued and the I/O thread is
  woken to apply them before it waits again (a system call per hand-off, the price of
  level triggering). A queued hand-back is applied only if the connection is still the
  one handed back (the I/O thread may have closed it meanwhile, and its number reused).
"""

from __future__ import annotations

import queue
import select
import selectors
from typing import Any, Protocol

from threadloom import portable
from threadloom.net.waker import Waker

# epoll's bit values, used by every poller's answers (the epoll poller passes them through)
IN = 0x001
OUT = 0x004
ERR = 0x008
HUP = 0x010
RDHUP = 0x2000
_ET = 1 << 31
#: ``select`` watches at most 512 sockets on Windows (CPython's FD_SETSIZE there; on Linux,
#: descriptors below 1024): room for the listeners and the waker.
SELECT_CAPACITY = 500


class Poller(Protocol):
    """What the pool's I/O thread waits on (see the module docstring for who calls what)."""

    #: fd -> what it is: a ``(sock, session)`` tuple, a Listener, or None (the waker)
    data: dict[int, Any]
    #: for the start-up line: ``epoll``, ``KqueueSelector``, ``SelectSelector``, ...
    name: str
    #: connections it can watch at once (None: as many as descriptors allow)
    capacity: int | None
    #: whether :meth:`serving` and :meth:`parked` do anything (a level-triggered poller must
    #: stop watching what a worker owns; epoll's edges need no word): the pool skips the
    #: two calls per request when not
    hands_off: bool

    def register(self, fileobj: Any, events: int, data: Any) -> None: ...
    def unregister(self, fileobj: Any) -> None: ...
    def add(self, fd: int, conn: Any) -> None: ...
    def serving(self, fd: int) -> None: ...
    def parked(self, fd: int, sock: Any) -> None: ...
    def writing(self, fd: int, sock: Any) -> None: ...
    def watch_writes(self, fd: int) -> None: ...
    def written(self, fd: int) -> None: ...
    def forget(self, fd: int) -> None: ...
    def poll(self, timeout: float | None) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


def make_poller(waker: Waker) -> Poller:
    """The poller ``THREADLOOM_POLLER`` asks for, else the platform's best."""
    name = portable.poller_name()
    if name == "epoll":
        return EpollPoller()
    if name == "select":
        return SelectorPoller(waker, selectors.SelectSelector())
    return SelectorPoller(waker, selectors.DefaultSelector())


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class EpollPoller:
    """One epoll: listeners and the waker level-triggered, connections edge-triggered."""

    name = "epoll"
    capacity: int | None = None
    hands_off = False

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.data: dict[int, Any] = {}
        self.poll = self.epoll.poll  # (the hot path: no frame of ours)

    def register(self, fileobj: Any, events: int, data: Any) -> None:
        fd = _fd(fileobj)
        self.data[fd] = data
        self.epoll.register(fd, IN)

    def unregister(self, fileobj: Any) -> None:
        fd = _fd(fileobj)
        self.data.pop(fd, None)
        self.epoll.unregister(fd)

    def add(self, fd: int, conn: Any) -> None:
        self.data[fd] = conn
        self.epoll.register(fd, IN | RDHUP | _ET)

    def serving(self, fd: int) -> None:
        pass  # edges for it are noted in the pool's _missed

    def parked(self, fd: int, sock: Any) -> None:
        pass  # still registered

    def writing(self, fd: int, sock: Any) -> None:
        self.epoll.modify(fd, IN | RDHUP | _ET | OUT)

    def watch_writes(self, fd: int) -> None:
        self.epoll.modify(fd, IN | RDHUP | _ET | OUT)

    def written(self, fd: int) -> None:
        self.epoll.modify(fd, IN | RDHUP | _ET)

    def forget(self, fd: int) -> None:
        self.data.pop(fd, None)  # closing the socket removes it from the epoll

    def close(self) -> None:
        self.epoll.close()


class SelectorPoller:
    """A level-triggered ``selectors`` selector that watches only what the I/O thread owns."""

    hands_off = True

    def __init__(self, waker: Waker, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.name = type(selector).__name__
        self.capacity = SELECT_CAPACITY if isinstance(selector, selectors.SelectSelector) else None
        self.data: dict[int, Any] = {}
        self._waker = waker
        #: hand-backs from workers, applied by the I/O thread: (fd, sock, events)
        self._handed: queue.SimpleQueue[tuple[int, Any, int]] = queue.SimpleQueue()
        self._watched: dict[int, int] = {}  # fd -> selectors events; I/O thread only

    def register(self, fileobj: Any, events: int, data: Any) -> None:
        fd = _fd(fileobj)
        self.data[fd] = data
        self.selector.register(fd, selectors.EVENT_READ)

    def unregister(self, fileobj: Any) -> None:
        fd = _fd(fileobj)
        self.data.pop(fd, None)
        self.selector.unregister(fd)

    def add(self, fd: int, conn: Any) -> None:
        self.data[fd] = conn
        self._watch(fd, selectors.EVENT_READ)

    def serving(self, fd: int) -> None:
        self._watch(fd, 0)

    def parked(self, fd: int, sock: Any) -> None:
        self._handed.put((fd, sock, selectors.EVENT_READ))
        self._waker.wake()

    def writing(self, fd: int, sock: Any) -> None:
        self._handed.put((fd, sock, selectors.EVENT_WRITE))
        self._waker.wake()

    def watch_writes(self, fd: int) -> None:
        self._watch(fd, selectors.EVENT_WRITE)

    def written(self, fd: int) -> None:
        self._watch(fd, selectors.EVENT_READ)

    def forget(self, fd: int) -> None:
        """Before the socket closes; from a worker, the connection is not watched (it
        owns it), so only the I/O thread ever changes the selector."""
        if fd in self._watched:
            self._watch(fd, 0)
        self.data.pop(fd, None)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        self._apply_hand_backs()
        ready = []
        for key, mask in self.selector.select(timeout):
            events = (IN if mask & selectors.EVENT_READ else 0) | (
                OUT if mask & selectors.EVENT_WRITE else 0
            )
            ready.append((key.fd, events))
        return ready

    def close(self) -> None:
        self.selector.close()

    def _apply_hand_backs(self) -> None:
        while True:
            try:
                fd, sock, events = self._handed.get_nowait()
            except queue.Empty:
                return
            conn = self.data.get(fd)  # (not closed meanwhile, its number reused?)
            if type(conn) is tuple and conn[0] is sock:
                self._watch(fd, events)

    def _watch(self, fd: int, events: int) -> None:
        was = self._watched.get(fd, 0)
        if events == was:
            return
        if not events:
            del self._watched[fd]
            self.selector.unregister(fd)
            return
        self._watched[fd] = events
        if was:
            self.selector.modify(fd, events)
        else:
            self.selector.register(fd, events)
