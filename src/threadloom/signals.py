"""Signals, handled one way everywhere: the handler only records; a thread or a loop acts.

Why
---
A Python signal handler runs on the main thread between two bytecodes, wherever that
thread happens to be: inside ``Connections.remove`` holding the registry's lock, inside a
WebSocket send holding its send lock, inside ``logging`` or ``threading`` holding theirs. A
handler that takes any lock the interrupted code may hold deadlocks the process on itself,
and a second signal only nests the same frames again. A ``--workers`` worker once wedged
exactly so (its SIGTERM handler called ``Server.stop``, which waited for the connections
lock the main thread held), outlived its supervisor and hung the test suite.

So the handler installed here does one thing: ``SimpleQueue.put``, the one call CPython
documents as safe from a signal handler (it is reentrant and takes no Python-level lock).
Whoever acts on the signal does it elsewhere, in one of two ways:

* :meth:`SignalInbox.dispatch`: a watcher thread takes each signal and runs the action on
  a thread of its own, so a second signal acts while the first one's drain is under way
  (the server and the workers);
* :meth:`SignalInbox.take`: a selector loop woken through ``signal.set_wakeup_fd`` drains
  what was recorded (the supervisor, which never starts a thread).

The main thread must wake up to run the handler at all. A process-directed signal may be
delivered to any thread that does not block it; CPython's C-level handler then only notes
it, and the Python handler waits for the main thread to run bytecode again, which a main
thread asleep in ``epoll.poll(-1)`` with nothing to serve never does (``threadloom serve
--model pool`` ignored a SIGTERM so, now and then). Under :meth:`SignalInbox.dispatch`
the inbox therefore owns the process's ``set_wakeup_fd`` socket, which the C handler
writes in whichever thread it ran, and a nudger thread that reads it sends ``NUDGE`` (a
signal whose handler does nothing) to the main thread itself: its system call returns with
``EINTR`` and the pending handlers run (uvloop takes the wakeup fd over while it runs; it
wakes the main thread for handlers itself).

One nudge was not always enough: CI once caught a ``--model pool`` server whose main thread
slept in ``epoll`` 30 s after a SIGTERM, the handler never run (the race was not reproduced
here in 1,800 tries). So acting no longer waits for the main thread at all where the inbox
owns the wakeup fd: the C handler writes one byte per delivery, whichever thread it ran
on, and the nudger passes each on to the watcher. The Python handler reports too (it is
the only report while uvloop holds the wakeup fd), and it may fold two quick deliveries
into one run or run late. The watcher therefore counts, per signal, the larger of the two
tallies: every delivery is acted on once, as soon as either side reports it, and a late
handler run is never a second signal.
"""

from __future__ import annotations

import queue
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from threadloom import portable

#: ``act(signum, count)``: ``count`` is how many signals this inbox had received, this one
#: included, when it arrived (1 for the first: a graceful stop; more: stop now).
Action = Callable[[int, int], None]
#: Sent by the nudger to the main thread to interrupt its system call (see above): a signal
#: a server never otherwise needs, ignored by default, and present on every POSIX system.
#: Windows has neither it nor ``pthread_kill``: there is no nudger, and the thread models'
#: loops wake every ``portable.SIGNAL_WAKE_S`` instead, so the handler runs (Ctrl-C).
NUDGE: int | None = getattr(signal, "SIGURG", None) if portable.interrupts_main_thread() else None


class SignalInbox:
    """Records the given signals; see the module docstring for who acts, and where."""

    def __init__(self, signals: Iterable[int], wakeup_fd: int | None = None) -> None:
        self.signals = tuple(signals)
        self.received = 0
        self._queue: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._wakeup_fd = wakeup_fd
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd = -1
        #: The nudger's end and the C handler's end of the wakeup socket pair (dispatch).
        self._wakeup_pair: tuple[socket.socket, socket.socket] | None = None

    def install(self) -> None:
        """Put the recording handler in place (on the main thread, as Python requires)."""
        if self._wakeup_pair is not None and NUDGE is not None:  # (mypy: set together)
            self._wakeup_fd = self._wakeup_pair[1].fileno()
            self._previous[NUDGE] = signal.signal(NUDGE, _nothing)
        if self._wakeup_fd is not None:
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._wakeup_fd, warn_on_full_buffer=False
            )
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`; end the nudger."""
        if self._wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._wakeup_pair is not None:
            self._wakeup_pair[1].close()  # the nudger reads the end of input and returns

    def _record(self, signum: int, frame: FrameType | None) -> None:
        # The only statement a handler may run here: no lock, no logging, no thread start.
        # (0: "the handler ran"; the nudger puts how many bytes it has read, from 1)
        self._queue.put((signum, 0))

    def take(self) -> list[tuple[int, int]]:
        """What arrived since the last call, ``(signum, count)`` each; never blocks."""
        taken: list[tuple[int, int]] = []
        while True:
            try:
                signum, _ = self._queue.get_nowait()
            except queue.Empty:
                return taken
            self.received += 1
            taken.append((signum, self.received))

    def dispatch(self, act: Action, name: str = "threadloom-signals") -> None:
        """Act on every signal from now on, each on a daemon thread of its own.

        Call before :meth:`install`: the inbox then owns the process's wakeup fd, read by a
        nudger thread that reports each delivery at once (module docstring).
        """
        threading.Thread(target=self._watch, args=(act, name), name=name, daemon=True).start()
        nudge_with = NUDGE
        if nudge_with is None:
            return  # no nudger here: the loops wake every portable.SIGNAL_WAKE_S instead
        nudger_end, handler_end = socket.socketpair()
        handler_end.setblocking(False)  # set_wakeup_fd requires it
        self._wakeup_pair = (nudger_end, handler_end)
        threading.Thread(
            target=self._nudge, args=(nudger_end, nudge_with), name=f"{name}-nudger", daemon=True
        ).start()

    def _watch(self, act: Action, name: str) -> None:
        """The watcher: acts on each delivery once, whichever side reported it first."""
        handled: Counter[int] = Counter()  # Python handler runs, per signal
        counted: Counter[int] = Counter()  # deliveries acted on, per signal
        while True:
            signum, delivered = self._queue.get()
            if not delivered:  # the handler ran
                handled[signum] += 1
                delivered = handled[signum]
            while counted[signum] < delivered:
                counted[signum] += 1
                self.received += 1
                threading.Thread(
                    target=act, args=(signum, self.received), name=f"{name}-act", daemon=True
                ).start()

    def _nudge(self, nudger_end: socket.socket, nudge_with: int) -> None:
        """The nudger: passes each watched byte the C handler wrote (one per delivery) to
        the watcher, and interrupts the main thread so that its handler runs too."""
        main = threading.main_thread().ident
        assert main is not None
        delivered: Counter[int] = Counter()
        with nudger_end:
            while arrived := nudger_end.recv(64):
                watched = [signum for signum in arrived if signum in self.signals]
                for signum in watched:
                    delivered[signum] += 1
                    self._queue.put((signum, delivered[signum]))
                if watched:
                    signal.pthread_kill(main, nudge_with)


def _nothing(signum: int, frame: FrameType | None) -> None:
    """The handler of :data:`NUDGE`: being interrupted was the point."""
