"""Small writes made during one pass of the event loop go out together, at its end.

Why
---
On the ``asyncio`` model one pass of the loop reads every connection that has a request
and runs the app for each (eagerly: see :mod:`threadloom.engine.asgi_run`). Written at
once, each response woke its client separately: the client (wrk, a proxy on the same
host) read one response, went back to sleep, and was woken again ~20 us later by the next.
Waking a sleeping task on another CPU is an inter-processor interrupt, and on a virtual
machine, where the other vCPU has halted, a trip through the hypervisor: the hello world
benchmark measured 0.25-0.55 of them a request (``/proc/interrupts``, ``CAL`` on the
client's CPU), and the cost of sending them showed as a fifth of the server's CPU. Held
until the end of the pass, the responses leave back to back and the client, woken once,
finds them all: 0.03 a request, and 1.16-1.28x the requests a second at 64 connections on
this machine (BENCHMARKS.md, "Responses that leave together"). Netty's flush consolidation
does the same for the same reason.

The rule
--------
Only while the loop is busy: a request that begins within :data:`BUSY_GAP_S` of the end
of the one before (or of the last release) finds others queued behind it, and there is
someone to leave with. A lone request on a quiet loop is written at once, as before: held,
its response would only wait for the server's own bookkeeping after it (one client alone
measured 8% fewer requests a second so).

While busy, a connection's writer (``http_aio.HTTPProtocol.write``) holds back the first
small write it makes in a pass (``hold``) and :class:`Cork` releases all of them when the
pass ends (a ``call_soon`` callback, which runs after the pass's I/O callbacks). The pass's
first response still goes at once (it wakes the client, which then sends its next request
while the pass goes on), and :data:`SMALL_PASSES` passes in a row that each held fewer than
:data:`HOLD_LEAST` pause holding for :data:`COOL_BEGINS` requests (a few clients gain less
than the callback costs). One such pass is not enough: at 64 connections a pass now and then
holds only two or three, and pausing on each left a fifth to a half of the requests of the
JSON benchmark unheld, written one by one, so the client came back one by one and made the
next passes small too (requests a second swung between 21k and 35k from run to run; waiting
for three small passes in a row: 1.21-1.26x, BENCHMARKS.md). A response
therefore waits at most for the app calls of the other requests read in the same pass,
never longer than :data:`HOLD_MOST_S` once another request begins (:meth:`Cork.begin`),
nor behind more than :data:`HOLD_MOST` others. Everything else a writer does releases its
own held bytes first, so its output keeps its order: a second write, a large or queued one,
a file, a close; an abort drops them with the rest. One cork per event loop
(:func:`cork_for`); everything here runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Protocol

#: Responses held at most at once: the next one releases them all.
HOLD_MOST = 64
#: A request that begins this long after the first held response releases them all.
HOLD_MOST_S = 0.001
#: A request that begins within this of the previous one's end follows it back to back.
BUSY_GAP_S = 0.00002
#: A pass that held fewer than this was not worth its ``call_soon`` ...
HOLD_LEAST = 4
#: ... and after so many such passes in a row ...
SMALL_PASSES = 3
#: ... so many requests begin before writers hold again.
COOL_BEGINS = 64


class Holder(Protocol):
    """A connection's writer that holds bytes back (``http_aio.HTTPProtocol``)."""

    def release_held(self) -> None:
        """Hand what it holds to its transport (or nothing, if it holds nothing now)."""
        ...


class Cork:
    """The writers holding bytes back in the current pass of one loop."""

    __slots__ = ("_holders", "_loop", "busy", "cooling", "ended", "since", "small_passes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: (weakly: the loop is the key that keeps this cork in ``_CORKS``)
        self._loop = weakref.ref(loop)
        self._holders: list[Holder] = []
        #: ``time.perf_counter()`` when the first of them was held (0.0: none is)
        self.since = 0.0
        #: ... when the last exchange ended, or the last release wrote
        self.ended = 0.0
        #: requests left to begin before writers may hold again (see HOLD_LEAST)
        self.cooling = 0
        #: passes in a row, up to the last release, that held fewer than HOLD_LEAST
        self.small_passes = 0
        #: whether writers hold their first small write of this pass back (see the rule)
        self.busy = False

    def begin(self, now: float) -> None:
        """A request begins (``now``: ``time.perf_counter()``): is the loop busy, and has
        what is held waited long enough?"""
        if self.cooling:
            self.cooling -= 1
            self.busy = False
        else:
            self.busy = now - self.ended < BUSY_GAP_S
        if self.since and now - self.since > HOLD_MOST_S:
            self.release()

    def hold(self, holder: Holder) -> bool:
        """Whether ``holder`` holds its write back until :meth:`release` (at the end of
        this pass); False for the pass's first, which goes at once (see the rule)."""
        if not self.since:
            loop = self._loop()
            if loop is not None:  # (else the loop is gone, and with it every pass)
                self.since = time.perf_counter()
                loop.call_soon(self.release)
            return False
        holders = self._holders
        holders.append(holder)
        if len(holders) >= HOLD_MOST:
            self.release()
        return True

    def release(self) -> None:
        """Every holder writes what it holds, in the order they began holding."""
        holders, self._holders = self._holders, []
        self.since = 0.0
        if len(holders) >= HOLD_LEAST:
            self.small_passes = 0
        else:
            self.small_passes += 1
            if self.small_passes >= SMALL_PASSES:
                self.small_passes = 0
                self.cooling = COOL_BEGINS
        for holder in holders:
            holder.release_held()
        self.ended = time.perf_counter()


_CORKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Cork] = weakref.WeakKeyDictionary()


def cork_for(loop: asyncio.AbstractEventLoop) -> Cork:
    """The cork of ``loop`` (made the first time a connection on it asks)."""
    cork = _CORKS.get(loop)
    if cork is None:
        cork = _CORKS[loop] = Cork(loop)
    return cork
