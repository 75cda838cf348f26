"""A socketpair that interrupts a selector from another thread: wake, never poll."""

from __future__ import annotations

import socket


class Waker:
    """Write a byte to wake the thread blocked in ``select``; it drains on read."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        """The descriptor to register with a selector for reading."""
        return self._reader.fileno()

    def wake(self) -> None:
        """Wake the selector; safe from any thread, never blocks."""
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closing: either way the reader will wake

    def drain(self) -> None:
        """Consume pending wake-ups; call from the selector thread when readable."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release both ends."""
        self._reader.close()
        self._writer.close()
