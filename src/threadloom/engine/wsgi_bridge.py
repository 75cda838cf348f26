"""The WSGI-on-asyncio bridge: a sync app on the model's pool, its connection on the loop.

Under ``--model asyncio`` a WSGI app cannot run on the loop (it blocks), so it runs on a
pool thread while the loop owns its connection (``engine/http_aio.py``). The app reaches
the connection only through the three doors of :class:`WSGIBridge`: ``send`` (and
``send_whole``, ``sendfile``) for the response, ``receive_more`` and ``take`` for the body.

Thread-safety rules, all of them
--------------------------------
1. The loop thread owns the connection: the transport, the HTTP core, the writer's queue
   (``pending``), every timer. An app thread never touches them; it reaches the loop only
   through ``loop.call_soon_threadsafe``, and hands over its bytes by reference.
2. One lock, :attr:`WSGIBridge.lock`, guards exactly three things: the request body's
   buffer (the loop feeds it in ``data_received``, the app thread takes from it),
   :attr:`WSGIBridge.in_flight` (response bytes queued by any thread that the transport
   has not taken), and the two conditions over it. Nothing that blocks or calls out runs
   under it, on either side.
3. ``data_ready``: an app thread waits there for more body (or its end, or the loss of the
   connection); the loop notifies after feeding bytes (:meth:`WSGIBridge.fed`).
4. ``flight_ready``: an app thread streaming a response waits there while more than
   :data:`IN_FLIGHT_MAX` of it is queued; the loop notifies as the transport takes bytes
   (:meth:`WSGIBridge.took`) and when the connection is lost.
5. ``host.lost`` is written by the loop and read by app threads: a bool, and every wait
   re-checks it after a notify, which the loop sends when it changes
   (:meth:`WSGIBridge.release`).

A streamed response thus waits for its reader (its iterator pauses) once IN_FLIGHT_MAX is
queued; a whole response never waits: the thread is free as soon as it has queued it, and
the loop's writer sends it at the reader's pace (``--min-send-rate`` drops a slow one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import IO, Any, Protocol

from threadloom.engine.body import BodyReader
from threadloom.engine.http1_core import DRAIN_LIMIT, HTTP1Core, HTTPSettings
from threadloom.engine.outbox import FileSegment, file_segment
from threadloom.engine.request_timeout import Deadline
from threadloom.interfaces.wsgi import Outcome
from threadloom.protocols.http1 import CONTINUE, Request, RequestBody

#: Bytes a WSGI thread may have queued that the transport has not taken yet, before a
#: further send of the same (streamed) response waits.
IN_FLIGHT_MAX = 256 * 1024

__all__ = ["IN_FLIGHT_MAX", "BridgeHost", "ClientDisconnected", "WSGIBridge"]


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI asks servers for an OSError subclass)."""


class BridgeHost(Protocol):
    """What the bridge needs of the connection's protocol (loop-side calls are marked)."""

    loop: asyncio.AbstractEventLoop
    settings: HTTPSettings
    core: HTTP1Core
    addr: Any
    lost: bool
    reading_paused: bool
    request_deadline: Deadline | None

    def write(self, data: bytes | memoryview) -> None: ...  # (loop)

    def queue_file(self, segment: FileSegment) -> None: ...  # (loop)

    def maybe_resume_reading(self) -> None: ...  # (loop)


class WSGIBridge:
    """The app thread's doors to a connection the loop owns (see the module docstring)."""

    can_sendfile = True

    def __init__(self, host: BridgeHost) -> None:
        self.host = host
        self.lock = threading.Lock()
        self.data_ready = threading.Condition(self.lock)
        self.flight_ready = threading.Condition(self.lock)
        self.in_flight = 0  # bytes queued (by any thread) the transport has not taken yet
        self.threads_waiting = 0  # app threads waiting in receive_more

    # -- the app thread's side -----------------------------------------------------------------

    def run(self, request: Request) -> tuple[Request, Outcome, bool]:
        """Run the WSGI app for ``request`` (on a pool thread); whether its body was read
        or drained well enough to keep the connection."""
        host = self.host
        if host.request_deadline is not None:
            host.request_deadline.thread = threading.get_ident()  # for the stack in the log
        body = BodyReader(request, self)
        runner = host.settings.runner
        assert runner is not None
        outcome = runner.run(request, body, self, host.addr)
        body_ok = not body.failed and body.drain(DRAIN_LIMIT)
        return request, outcome, body_ok

    def send(self, data: bytes) -> None:
        """Part of the response, by reference; waits only while IN_FLIGHT_MAX is queued."""
        host = self.host
        if host.lost:
            raise ClientDisconnected("the client went away")
        deadline = host.request_deadline
        if deadline is not None and data is not CONTINUE and not deadline.start_response():
            raise ClientDisconnected("--timeout-request passed: the client got a 503")
        if not self._reserve(len(data)):
            raise ClientDisconnected("the client went away or reads too slowly")
        host.loop.call_soon_threadsafe(self._write_reserved, data)

    def send_whole(self, head: bytes, body: bytes) -> None:
        self.send(head)
        self.send(body)

    def sendfile(self, file: IO[bytes], count: int) -> int:
        """``wsgi.file_wrapper`` over a real file: it waits in the loop's writer as a
        :class:`FileSegment` (a descriptor of its own), copied by the kernel as the
        transport drains (``HTTPProtocol._file_piece``: ``sendfile`` while nothing waits
        in the transport's buffer), so a slow reader of a download holds no thread.
        Returns what will be sent."""
        if self.host.lost:
            raise ClientDisconnected("the client went away")
        segment = file_segment(file, count)
        count = segment.remaining
        if not self._reserve(count):
            segment.close()
            raise ClientDisconnected("the client went away or reads too slowly")
        self.host.loop.call_soon_threadsafe(self._queue_file_reserved, segment)
        return count

    def receive_more(self, body: RequestBody) -> bool:
        """Wait until the loop has fed more of ``body`` (within its time budget)."""
        host = self.host
        now = time.monotonic()
        deadline = host.core.body_deadline(body, now)
        with self.lock:
            while not (body.buffered or body.complete or body.truncated or host.lost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.threads_waiting += 1
                try:
                    self.data_ready.wait(remaining)
                finally:
                    self.threads_waiting -= 1
            return bool(body.buffered) or body.complete

    def take(self, body: RequestBody, size: int) -> bytes:
        """Body bytes, taken under the lock the loop feeds them under; reading resumes
        once the app has made room (from any thread: the loop is asked to)."""
        with self.lock:
            data = body.take(size)
        host = self.host
        if host.reading_paused:
            host.loop.call_soon_threadsafe(host.maybe_resume_reading)
        return data

    def _reserve(self, size: int) -> bool:
        """Wait until the transport has taken all but IN_FLIGHT_MAX of what was queued
        before (a streamed response's next chunk; a first send never waits). The wait ends
        when the reader catches up or the loop drops it (SendBudget); False if it is gone."""
        host = self.host
        with self.lock:
            while self.in_flight > IN_FLIGHT_MAX and not host.lost:
                self.flight_ready.wait(host.settings.timeout_io)
            if host.lost:
                return False
            self.in_flight += size
        return True

    # -- the loop's side -----------------------------------------------------------------------

    def _write_reserved(self, data: bytes) -> None:
        self.took(len(data))  # the writer counts it again while it waits
        self.host.write(data)

    def _queue_file_reserved(self, segment: FileSegment) -> None:
        self.took(segment.remaining)  # queue_file counts it again
        self.host.queue_file(segment)

    def queued(self, size: int) -> None:
        """The writer keeps ``size`` bytes the transport has not taken."""
        with self.lock:
            self.in_flight += size

    def took(self, size: int) -> None:
        """The transport took ``size`` of them: a streaming app thread may go on."""
        with self.lock:
            self.in_flight -= size
            if self.in_flight <= IN_FLIGHT_MAX:
                self.flight_ready.notify_all()

    def fed(self) -> None:
        """Body bytes were fed (call under :attr:`lock`): wake app threads waiting for them."""
        if self.threads_waiting:
            self.data_ready.notify_all()

    def release(self) -> None:
        """The connection is lost or refused: every waiting app thread gives up."""
        with self.lock:
            self.data_ready.notify_all()
            self.flight_ready.notify_all()
