"""``--timeout-request``: a sync app that has not started its response in time gets a 503.

Theory of operation
-------------------
A Python thread cannot be killed. What a per-request timeout *can* do for a sync app (WSGI)
that hangs is free the client: answer ``503`` (with ``Retry-After``), shut the connection
down, and log, with the stack of the stuck thread, where the app is stuck. The thread goes
on running the app until the app returns on its own; its late response is discarded (its
writes fail) and its connection is closed then. Meanwhile it still holds its thread (under
``pool`` one worker fewer, under ``single`` the whole server) and counts against
``--max-connections``: the log line says so, so an operator sees a leak of stuck threads.

Once the response has started the timeout no longer applies (a stalled write is bounded by
``--timeout-io`` instead), so a stream, a long download or a file is never cut.

* :class:`Deadline`: one per request. It is RUNNING until the app sends its first byte
  (STARTED), or the time is up (EXPIRED), or the app returned (DONE). One small lock
  decides which came first, so the client gets the app's response or the 503, never both;
  the expiry action runs under that lock, so the serving thread cannot close the socket
  while the 503 is being written to it.
* :class:`Watchdog`: one thread per server for the thread models, started on first use,
  sleeping until the earliest deadline of the requests in flight (a set, so a finished
  request costs nothing later), and retiring after :data:`LINGER_S` with nothing to watch.
* :class:`GuardedSink`: the response sink a watched app writes through.

The asyncio model needs no thread: its protocol sets a loop timer per request and uses the
same :class:`Deadline` (``engine/http_aio.py``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO

from threadloom.interfaces.wsgi import ResponseSink
from threadloom.protocols.http1 import Request, error_response
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

RUNNING, STARTED, EXPIRED, DONE = range(4)
#: How long an idle watchdog thread waits for new work before it ends.
LINGER_S = 1.0
#: Frames of the stuck thread's stack that the log line shows (innermost last).
STACK_FRAMES = 6


class Deadline:
    """One request's race between its response and its timeout (module docstring)."""

    __slots__ = ("_lock", "at", "began", "on_expire", "state", "thread")

    def __init__(
        self, seconds: float, on_expire: Callable[[Deadline], None], now: float | None = None
    ) -> None:
        self.began = time.monotonic() if now is None else now  # (tests pass a fake clock)
        self.at = self.began + seconds
        self.on_expire = on_expire
        self.state = RUNNING
        #: The thread running the app, for the stack in the log (set by that thread).
        self.thread = threading.get_ident()
        self._lock = threading.Lock()

    @property
    def expired(self) -> bool:
        return self.state == EXPIRED

    def start_response(self) -> bool:
        """The app is about to send bytes: True if it still may (no 503 was sent)."""
        if self.state == STARTED:
            return True
        with self._lock:
            if self.state == RUNNING:
                self.state = STARTED
            return self.state == STARTED

    def finish(self) -> None:
        """The app returned: from now on the deadline can never fire."""
        with self._lock:
            if self.state == RUNNING:
                self.state = DONE

    def expire(self) -> bool:
        """Time is up: run ``on_expire`` (under the lock) unless the response won the race."""
        with self._lock:
            if self.state != RUNNING:
                return False
            self.state = EXPIRED
            self.on_expire(self)
        return True


def answer_timeout(deadline: Deadline, request: Request, client: object, where: str) -> bytes:
    """Log a request that timed out (with where its thread is stuck), count its 503, and
    return the 503 for the driver to send before it closes the connection."""
    frame = sys._current_frames().get(deadline.thread)
    stack = "".join(traceback.format_stack(frame, limit=STACK_FRAMES)) if frame else ""
    log.error(
        "%s %s from %s: no response after %.1f s (--timeout-request): answered 503 and "
        "closed the connection; the app goes on running in its thread (%s), which stays "
        "busy until the app returns. It is at:\n%s",
        request.method,
        request.target[:200].decode("latin-1"),
        client,
        time.monotonic() - deadline.began,
        where,
        stack.rstrip() or "(not started yet)",
    )
    STATS.request(503, time.monotonic() - deadline.began)
    return error_response(503)


class GuardedSink:
    """A response sink that refuses to write once the deadline has answered 503."""

    __slots__ = ("can_sendfile", "deadline", "sink")

    def __init__(self, sink: ResponseSink, deadline: Deadline) -> None:
        self.sink = sink
        self.deadline = deadline
        self.can_sendfile = sink.can_sendfile

    def send(self, data: bytes) -> None:
        if not self.deadline.start_response():
            raise ConnectionAbortedError("--timeout-request passed: the client got a 503")
        self.sink.send(data)

    def send_whole(self, head: bytes, body: bytes) -> None:
        if not self.deadline.start_response():
            raise ConnectionAbortedError("--timeout-request passed: the client got a 503")
        self.sink.send_whole(head, body)

    def sendfile(self, file: IO[bytes], count: int) -> int:
        if not self.deadline.start_response():
            raise ConnectionAbortedError("--timeout-request passed: the client got a 503")
        return self.sink.sendfile(file, count)


class Watchdog:
    """The thread that expires the deadlines of the thread models (module docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cond = threading.Condition(threading.Lock())
        self._live: set[Deadline] = set()
        self._thread: threading.Thread | None = None

    def watch(self, on_expire: Callable[[Deadline], None]) -> Deadline:
        """Start the clock for a request served on the calling thread."""
        deadline = Deadline(self.seconds, on_expire)
        with self._cond:
            self._live.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="threadloom-request-timeout", daemon=True
                )
                self._thread.start()
            elif len(self._live) == 1:
                self._cond.notify()  # it sleeps with nothing to watch
        return deadline

    def done(self, deadline: Deadline) -> None:
        """The app returned (after its response, or after the 503)."""
        deadline.finish()
        with self._cond:
            self._live.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._take_due()
                if not due and not self._wait():
                    self._thread = None
                    return
            for deadline in due:
                try:
                    deadline.expire()
                except Exception:
                    log.exception("answering a timed-out request failed")

    def _take_due(self) -> list[Deadline]:
        now = time.monotonic()
        due = [d for d in self._live if d.at <= now]
        self._live.difference_update(due)
        return due

    def _wait(self) -> bool:
        """Sleep until the earliest deadline; False when idle for LINGER_S (time to end)."""
        if self._live:
            self._cond.wait(min(d.at for d in self._live) - time.monotonic())
            return True
        self._cond.wait(LINGER_S)
        return bool(self._live)
