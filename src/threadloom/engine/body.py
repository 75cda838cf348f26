"""``wsgi.input``: a request body that streams from the socket as the app reads it.

Bytes the core has already parsed are taken first; when they run out and the body is not
complete, the reader asks its session for one more blocking read (bounded by
``timeout_io``). An upload is therefore never held whole in memory unless the app reads it
whole. ``Expect: 100-continue`` is answered the first time the app reads, so a client is
only invited to send a body the app actually wants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from threadloom.protocols.http1 import CONTINUE, Request, RequestBody


class BodySource(Protocol):
    """What a reader needs from its session."""

    def receive_more(self, body: RequestBody) -> bool:
        """Wait for more of ``body`` from the peer; False on EOF, timeout or a protocol error."""
        ...

    def send(self, data: bytes) -> None:
        """Send bytes to the peer (used for ``100 Continue``)."""
        ...

    def take(self, body: RequestBody, size: int) -> bytes:
        """Take up to ``size`` parsed bytes (all if negative), as the session's threading allows."""
        ...


class BodyReader:
    """A file-like, read-only request body (``read``, ``readline``, ``readlines``, iteration).

    A plain slotted class rather than an ``io.RawIOBase``: one is made per request, and the
    io base class costs more to build than the rest of a small request's environ.
    """

    __slots__ = ("_pending", "body", "expect_continue", "failed", "source")

    def __init__(self, request: Request, source: BodySource) -> None:
        self.body = request.body
        self.source = source
        self.expect_continue = request.expect_continue
        self.failed = False
        self._pending = b""

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the connection owns the bytes."""

    def _fill(self) -> bool:
        """Make more bytes available in the core's buffer; False when there will be no more."""
        if self.failed:
            return False
        if self.body.complete:
            # under HTTP/2 another thread feeds the body: its last bytes may have come since
            # the caller's take() found none (they are counted before ``complete`` is set)
            return self.body.buffered > 0
        if self.expect_continue:
            self.expect_continue = False
            self.source.send(CONTINUE)
        if not self.source.receive_more(self.body):
            if not self.body.complete:
                self.failed = True
            return False
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative); fewer only at the body's end."""
        size = -1 if size is None else size
        parts = []
        have = 0
        if self._pending:
            first = self._pending[:size] if size >= 0 else self._pending
            self._pending = self._pending[len(first) :]
            parts.append(first)
            have = len(first)
        while size < 0 or have < size:
            chunk = self.source.take(self.body, size - have if size >= 0 else -1)
            if chunk:
                parts.append(chunk)
                have += len(chunk)
            elif not self._fill():
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)  # (one part: no copy)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        line = bytearray(self._pending)
        self._pending = b""
        while True:
            end = line.find(b"\n")
            if end >= 0 or (0 <= size <= len(line)):
                cut = end + 1 if end >= 0 else len(line)
                if 0 <= size < cut:
                    cut = size
                self._pending = bytes(line[cut:])
                return bytes(line[:cut])
            chunk = self.source.take(self.body, -1)
            if not chunk and not self._fill():
                return bytes(line)
            line += chunk

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def drain(self, limit: int) -> bool:
        """Discard what the app left unread, up to ``limit`` bytes; True if the body ended."""
        discarded = len(self._pending)
        self._pending = b""
        if self.expect_continue and not self.body.complete:
            return False  # the client waits for our word before sending: just close
        while True:
            discarded += len(self.source.take(self.body, -1))
            if self.body.complete:
                return not self.failed
            if discarded > limit or not self._fill():
                return False


class _NoBody:
    """The body source of :data:`EMPTY_INPUT`: there is never anything to wait for or take."""

    def receive_more(self, body: RequestBody) -> bool:
        return False

    def send(self, data: bytes) -> None:
        raise AssertionError("an empty body never asks for 100 Continue")

    def take(self, body: RequestBody, size: int) -> bytes:
        return b""


def _empty_request() -> Request:
    request = Request()
    request.body.complete = True
    return request


#: ``wsgi.input`` for every request whose body is complete and empty (most GETs): such a
#: reader never changes state (each read finds the body complete and returns b""), so one is
#: shared instead of building one per request.
EMPTY_INPUT = BodyReader(_empty_request(), _NoBody())
