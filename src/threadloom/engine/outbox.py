"""One writer per connection: the response bytes a socket has not taken yet, and the rules
for sending them, for the thread-based models.

Why
---
A worker used to write a response itself and wait for a slow reader to take it: a few
hundred clients reading a few bytes now and then held every ``pool`` worker, and each
connection held its own copy of the head joined to the body. Now:

* The thread that made a response writes it at once, head and body in one ``sendmsg``
  without joining them (the HTTP/1.1 hot path stays one system call).
* What the socket does not take stays here as memoryviews of the app's own buffers: no
  copy, so 400 readers of the same 8 MiB bytes object cost the kernel's buffers only. The
  session then answers ``WRITE`` and the connection's owner (the pool's I/O thread, or the
  connection's own thread) calls :meth:`Outbox.flush` whenever the socket is writable. The
  worker is free.
* While bytes wait, the reader must keep up: after ``timeout_io`` of grace it must have
  taken ``min_send_rate`` bytes per second since the first stall (:meth:`Outbox.deadline`),
  or the connection is dropped and counted (``slow_readers`` in the stats). A reader that
  takes a few bytes now and then no longer holds a connection for ever.

A file sent with ``wsgi.file_wrapper`` waits the same way, as a :class:`FileSegment`: the
kernel copies it (``os.sendfile``) on each writable edge, from a duplicate of the app's
descriptor (the app closes its file once the response is made), so a slow reader of a
large download holds a descriptor, not a worker.

The bound: at most one whole response per connection waits here (the session serves a
pipelined request only once the outbox is empty), and a streamed response may queue up to
``STREAM_QUEUE_MAX`` bytes of the app's chunks; beyond that the thread producing it waits for
the reader (bounded by the same rate rule), which pauses the app's iterator.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any

from threadloom import portable
from threadloom.engine.sockio import wait_writable

#: Bytes of a streamed response that may wait before its producer waits for the reader.
STREAM_QUEUE_MAX = 256 * 1024
_IOV_MAX = 64  # buffers per sendmsg (the kernel allows 1024; a response has a few)
_FILE_PIECE = 256 * 1024  # read from a file per step where the kernel cannot copy it (TLS)


class SendBudget:
    """The slow-read rule, for the outbox here and the asyncio model's writer alike.

    A reader that has fallen behind (bytes wait for it) must, after ``grace`` seconds
    (``--timeout-io``), have taken ``min_rate`` bytes per second since it fell behind
    (``--min-send-rate``; 0 turns the rate off), and may never go ``grace`` seconds without
    taking a byte.
    """

    __slots__ = ("grace", "min_rate", "progress", "sent_since", "since")

    def __init__(self, grace: float, min_rate: int) -> None:
        self.grace = grace
        self.min_rate = min_rate
        self.since = 0.0  # when the reader fell behind
        self.sent_since = 0  # bytes it has taken since
        self.progress = 0.0  # when it last took any

    def behind(self, now: float) -> None:
        """The reader has just fallen behind (it was not)."""
        self.since = self.progress = now
        self.sent_since = 0

    def took(self, size: int, now: float) -> None:
        if size:
            self.sent_since += size
            self.progress = now

    def deadline(self) -> float:
        """When the reader will be too slow, if it takes nothing more."""
        stalled = self.progress + self.grace
        if not self.min_rate:
            return stalled
        return min(stalled, self.since + self.grace + self.sent_since / self.min_rate)


class FileSegment:
    """Bytes of a file waiting for the reader: a descriptor of our own, where, how many."""

    __slots__ = ("fd", "offset", "remaining")

    def __init__(self, fd: int, offset: int, remaining: int) -> None:
        self.fd = fd
        self.offset = offset
        self.remaining = remaining

    def __len__(self) -> int:
        return self.remaining

    def send(self, sock: socket.socket) -> int:
        """``os.sendfile`` what the socket takes now; BlockingIOError when it takes none."""
        sent = os.sendfile(sock.fileno(), self.fd, self.offset, self.remaining)
        if not sent:
            raise BrokenPipeError("the file ended before its promised length")
        self.offset += sent
        self.remaining -= sent
        return sent

    def send_through(self, send: Callable[[bytes], int]) -> int:
        """:meth:`send` for a stream the kernel cannot copy a file to (TLS): read the
        next piece and offer it to ``send``; what it does not take is read again later."""
        sent = send(self.read(_FILE_PIECE, advance=False))
        self.offset += sent
        self.remaining -= sent
        return sent

    def read(self, most: int, advance: bool = True) -> bytes:
        """Up to ``most`` of the bytes left, read from the file (for a writer that cannot
        hand the kernel a descriptor: the asyncio model's transport); BrokenPipeError if
        the file ended before its promised length."""
        piece = portable.pread(self.fd, min(most, self.remaining), self.offset)
        if not piece:
            raise BrokenPipeError("the file ended before its promised length")
        if advance:
            self.offset += len(piece)
            self.remaining -= len(piece)
        return piece

    def close(self) -> None:
        os.close(self.fd)


def file_segment(file: IO[bytes], count: int) -> FileSegment:
    """``count`` bytes of ``file`` from its position (fewer if it is shorter), over a
    descriptor of the segment's own: the app may close its file at once."""
    fd, offset = file.fileno(), file.tell()
    count = max(min(count, os.fstat(fd).st_size - offset), 0)
    return FileSegment(os.dup(fd), offset, count)


class Outbox:
    """A connection's unsent response bytes (see the module docstring). Used by one thread
    at a time: whichever owns the connection."""

    __slots__ = ("budget", "kernel_copies", "parts", "sealed", "send_some", "sock", "waiting")

    def __init__(self, sock: socket.socket, grace: float, min_rate: int) -> None:
        self.sock = sock
        #: a plain socket's ``send``, or a TLS stream's ``send_some``: never waits
        self.send_some: Callable[[bytes | memoryview], int] = getattr(sock, "send_some", sock.send)
        #: a TLS stream (engine/tls.py), whose ``send_some`` counts what it sealed as sent:
        #: those records may still wait for the socket when nothing waits here
        self.sealed: Any = sock if hasattr(sock, "flush_some") else None
        #: os.sendfile and sendmsg work on it (not TLS; not where either is missing, as on
        #: Windows, or THREADLOOM_NO_SENDFILE=1: then files are read and sent, one buffer
        #: per call, as for TLS)
        self.kernel_copies = type(sock) is socket.socket and portable.kernel_sends_files()
        self.budget = SendBudget(grace, min_rate)
        self.parts: deque[memoryview | FileSegment] = deque()
        self.waiting = 0  # bytes in parts

    def __bool__(self) -> bool:
        return self.waiting > 0

    def send(self, data: bytes) -> None:
        """Send ``data`` now as far as the socket takes it; keep the rest, in order, without
        copying it. (The hot path: one ``send`` system call and no allocation.)"""
        if not self.waiting:
            try:
                sent = self.send_some(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            self.budget.behind(time.monotonic())
            self._keep((data,), sent)
            if not self.kernel_copies:
                self.flush()  # TLS seals a piece per call: the socket may take more
        elif data:
            self._keep((data,), 0)

    def send_parts(self, *buffers: bytes | memoryview) -> None:
        """:meth:`send` for several buffers at once (a head and its body): one ``sendmsg``."""
        if self.waiting:
            self._keep(buffers, 0)
            return
        try:
            sent = self._send_now(buffers)
        except BlockingIOError:
            sent = 0
        if sent < sum(len(b) for b in buffers):
            self.budget.behind(time.monotonic())
            self._keep(buffers, sent)
            if not self.kernel_copies:
                self.flush()  # TLS seals a piece per call: the socket may take more

    def send_file(self, segment: FileSegment) -> None:
        """Send a file's bytes behind what waits, the kernel copying them; what the socket
        does not take now waits (the outbox closes the segment once it is sent)."""
        if not self.waiting:
            try:
                while segment.remaining:
                    self._send_file_piece(segment)
            except BlockingIOError:
                self.budget.behind(time.monotonic())
            except OSError:
                segment.close()
                raise
            if not segment.remaining:
                segment.close()
                return
        self.parts.append(segment)
        self.waiting += segment.remaining

    def _send_now(self, buffers: Sequence[bytes | memoryview]) -> int:
        if len(buffers) == 1 or not self.kernel_copies:  # (TLS: one buffer at a time)
            return self.send_some(buffers[0])
        return int(self.sock.sendmsg(buffers[:_IOV_MAX]))

    def _keep(self, buffers: Sequence[bytes | memoryview], skip: int) -> None:
        for buffer in buffers:
            size = len(buffer)
            if skip >= size:
                skip -= size
                continue
            view = memoryview(buffer)[skip:]
            skip = 0
            self.parts.append(view)
            self.waiting += len(view)

    def flush(self) -> bool:
        """Send what the socket takes now (never blocks); True once nothing waits.

        Raises OSError when the peer is gone.
        """
        parts = self.parts
        while parts:
            if type(parts[0]) is FileSegment:
                if not self._flush_file(parts[0]):
                    return False
                continue
            offered = list(itertools.takewhile(_is_view, itertools.islice(parts, _IOV_MAX)))
            try:
                sent = self._send_now(offered)  # type: ignore[arg-type]
            except BlockingIOError:
                return False
            self.budget.took(sent, time.monotonic())
            self.waiting -= sent
            # a socket that took less is full; TLS takes a piece per call, and says it is
            # full by raising BlockingIOError (its records wait for the reader)
            full = self.kernel_copies and sent < sum(len(view) for view in offered)
            while sent:
                first = parts[0]
                assert type(first) is memoryview  # (sent covers only the views offered)
                if sent < len(first):
                    parts[0] = first[sent:]
                    break
                sent -= len(first)
                parts.popleft()
            if full:
                return False  # the socket is full: wait until it is writable again
        return True

    @property
    def unsent(self) -> bool:
        """Whether anything waits for the socket: bytes here, or sealed TLS records. A
        writer that leaves while only records wait leaves them stuck (HTTP/2's workers
        write outside the TLS session's own turn, which flushes them for HTTP/1.1)."""
        return self.waiting > 0 or (self.sealed is not None and self.sealed.backlog)

    def flush_all(self) -> bool:
        """:meth:`flush`, then a TLS stream's sealed records; True once nothing is unsent."""
        return self.flush() and (self.sealed is None or self.sealed.flush_some())

    def unsent_deadline(self) -> float:
        """:meth:`deadline` of whatever is unsent (the TLS stream keeps its own budget)."""
        if self.waiting or self.sealed is None:
            return self.budget.deadline()
        return float(self.sealed.budget.deadline())

    def _flush_file(self, segment: FileSegment) -> bool:
        """Send what the socket takes of a waiting file; True once it is all sent."""
        try:
            while segment.remaining:
                sent = self._send_file_piece(segment)
                self.budget.took(sent, time.monotonic())
                self.waiting -= sent
        except BlockingIOError:
            return False
        self.parts.popleft()
        segment.close()
        return True

    def _send_file_piece(self, segment: FileSegment) -> int:
        if self.kernel_copies:
            return segment.send(self.sock)
        return segment.send_through(self.send_some)

    def deadline(self) -> float:
        """When the reader will be too slow (:class:`SendBudget`); only while bytes wait."""
        return self.budget.deadline()

    def drain_below(self, limit: int) -> None:
        """Block the calling thread until at most ``limit`` bytes wait (a streamed response
        over :data:`STREAM_QUEUE_MAX`); TimeoutError when the reader is too slow."""
        while self.waiting > limit and not self.flush():
            left = self.deadline() - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client reads too slowly (--min-send-rate)")
            wait_writable(self.sock, left)

    def clear(self) -> None:
        """Forget what waits (the connection is being dropped)."""
        for part in self.parts:
            if type(part) is FileSegment:
                part.close()
        self.parts.clear()
        self.waiting = 0


def _is_view(part: memoryview | FileSegment) -> bool:
    return type(part) is not FileSegment
