"""The pool's pollers keep the hand-off table of models/pollers.py, on real sockets.

Both pollers answer in epoll's bits; what differs is what a connection a worker owns
reports: nothing under the level-triggered selector (it is not watched), an edge under
epoll (which the pool notes in ``_missed``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from threadloom.models.pollers import IN, OUT, EpollPoller, Poller, make_poller
from threadloom.net.waker import Waker

POLLERS = ["epoll", "selectors", "select"]


WAKERS: dict[int, Waker] = {}  # poller id -> its waker


@pytest.fixture(params=POLLERS)
def poller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Poller]:
    monkeypatch.setenv("THREADLOOM_POLLER", request.param)
    waker = Waker()
    poller = make_poller(waker)
    poller.register(waker.fileno(), 1, None)
    WAKERS[id(poller)] = waker
    yield poller
    del WAKERS[id(poller)]
    poller.close()
    waker.close()


def events(poller: Poller, fd: int, timeout: float = 0.05) -> int:
    """What ``fd`` reports now (the waker drained on the way, as the I/O thread does)."""
    found = 0
    for ready, bits in poller.poll(timeout):
        if ready == fd:
            found |= bits
        elif ready == WAKERS[id(poller)].fileno():
            WAKERS[id(poller)].drain()
    return found


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_the_hand_off_table(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    fd = ours.fileno()
    edge = isinstance(poller, EpollPoller)
    poller.add(fd, (ours, None))
    assert events(poller, fd) == 0
    theirs.send(b"a")
    assert events(poller, fd) & IN  # a parked connection's bytes are reported

    poller.serving(fd)  # a worker owns it: the selector stops watching it
    theirs.send(b"b")
    assert bool(events(poller, fd) & IN) == edge  # (epoll: an edge, for _missed)
    ours.recv(10)

    handed = threading.Thread(target=poller.parked, args=(fd, ours))  # from a worker
    handed.start()
    handed.join()
    theirs.send(b"c")
    assert events(poller, fd) & IN
    ours.recv(10)

    poller.serving(fd)
    handed = threading.Thread(target=poller.writing, args=(fd, ours))  # back, writing
    handed.start()
    assert events(poller, fd, 1.0) & OUT
    handed.join()
    poller.written(fd)
    assert not events(poller, fd) & OUT
    poller.watch_writes(fd)  # the I/O thread's own output waits
    assert events(poller, fd) & OUT
    poller.written(fd)

    poller.forget(fd)
    assert fd not in poller.data
    theirs.send(b"d")
    assert bool(events(poller, fd)) == edge  # (epoll: until the socket closes)


def test_a_hand_back_for_a_connection_closed_meanwhile_is_dropped(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = pair
    fd = ours.fileno()
    poller.add(fd, (ours, None))
    poller.serving(fd)
    poller.parked(fd, ours)  # queued (selectors) ...
    poller.forget(fd)  # ... but the I/O thread closed it first
    other = socket.socket()  # (a socket that is not the one handed back, same number)
    try:
        poller.data[fd] = (other, None)
        theirs.send(b"x")
        found = events(poller, fd)
        assert bool(found) == isinstance(poller, EpollPoller)
    finally:
        other.close()
        poller.data.pop(fd, None)
