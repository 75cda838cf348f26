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
``EINTR`` and the pending handlers run. The count stays the Python handler's alone, so a
signal is never counted twice (uvloop takes the wakeup fd over while it runs; it wakes the
main thread for handlers itself).

One nudge was not always enough: CI once caught a ``--model pool`` server whose main thread
slept in ``epoll`` 30 s after a SIGTERM with the signal's byte read and the handler never
run (the race was not reproduced here in 1,800 tries). So the nudger holds on until the
handler has been heard, nudging again on a short back-off, and a main thread that has not
run it after :data:`NUDGE_FOR_S` (a main thread stuck in C, or a wakeup lost in CPython's
eval-breaker bookkeeping) no longer leaves the signal unheard: the nudger hands the watcher
the delivery itself and logs why. The wakeup byte is one per delivery; the handler may fold
two quick deliveries into one run. The watcher therefore counts per signal the most that
either side has seen, so a late handler run for a delivery already acted on is not a second
signal, and two deliveries folded into one still count two.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import threading
import time
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
#: How long the nudger keeps nudging a main thread that has not run the handler before it
#: acts on the delivery itself, and its first and longest pause between nudges.
NUDGE_FOR_S = 2.0
NUDGE_FIRST_PAUSE_S = 0.005
NUDGE_LONGEST_PAUSE_S = 0.25

log = logging.getLogger(__name__)


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
        #: dispatch: handler runs the watcher has taken, per signal (the nudger waits on it)
        self._heard: Counter[int] = Counter()
        self._heard_changed = threading.Condition()

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
        # (0: "the handler ran"; the nudger puts how many bytes it has read, from 1.)
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

        Call before :meth:`install`: the inbox then owns the process's wakeup fd, and a
        nudger thread makes sure the main thread runs the handler, or acts for it (module
        docstring).
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
        """The watcher: counts each delivery once, whoever reported it, and acts on it."""
        counted: Counter[int] = Counter()  # deliveries acted on, per signal
        while True:
            signum, delivered = self._queue.get()
            if not delivered:  # the handler ran
                with self._heard_changed:
                    self._heard[signum] += 1
                    self._heard_changed.notify_all()
                delivered = self._heard[signum]
            while counted[signum] < delivered:
                counted[signum] += 1
                self.received += 1
                threading.Thread(
                    target=act, args=(signum, self.received), name=f"{name}-act", daemon=True
                ).start()

    def _nudge(self, nudger_end: socket.socket, nudge_with: int) -> None:
        """The nudger: reads the bytes the C handler writes, one per delivery, and sees
        each watched one heard by the main thread's handler or handed to the watcher."""
        main = threading.main_thread().ident
        assert main is not None
        delivered: Counter[int] = Counter()
        with nudger_end:
            while arrived := nudger_end.recv(64):
                for signum in arrived:
                    if signum in self.signals:
                        delivered[signum] += 1
                        self._see_heard(main, nudge_with, signum, delivered[signum])

    def _see_heard(self, main: int, nudge_with: int, signum: int, delivered: int) -> None:
        """Nudge the main thread on a back-off until its handler has run ``delivered``
        times for ``signum``; past :data:`NUDGE_FOR_S`, tell the watcher ourselves."""
        give_up = time.monotonic() + NUDGE_FOR_S
        pause = NUDGE_FIRST_PAUSE_S
        with self._heard_changed:
            while self._heard[signum] < delivered:
                left = give_up - time.monotonic()
                if left <= 0:
                    log.warning(
                        "%s: the main thread has not run its signal handler after %gs; "
                        "acting on it without",
                        signal.Signals(signum).name,
                        NUDGE_FOR_S,
                    )
                    self._queue.put((signum, delivered))
                    return
                signal.pthread_kill(main, nudge_with)
                self._heard_changed.wait(min(pause, left))
                pause = min(pause * 2, NUDGE_LONGEST_PAUSE_S)


def _nothing(signum: int, frame: FrameType | None) -> None:
    """The handler of :data:`NUDGE`: being interrupted was the point."""
