"""The line between a supervisor and one worker: newline-delimited JSON over a socketpair.

Messages are small dicts with a type ``t``. A worker says ``ready`` (with what it serves),
``fatal`` (a one-line reason it cannot serve; it exits next), ``recycle`` (it has served its
``--max-requests``) and ``stats`` (a :mod:`threadloom.stats` snapshot, in answer to the
supervisor's ``stats``). End of file means the other side is gone: a worker whose channel
closes stops, so a worker never outlives its supervisor for long even without
PR_SET_PDEATHSIG.

The supervisor's end is non-blocking and read from its selector loop; the worker's end is
blocking, read by its control thread and written by any thread under a lock.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

Message = dict[str, Any]
#: A peer that sends this much without a newline is broken; the line is dropped.
MAX_LINE = 1 << 20


class Channel:
    """One end of a supervisor-worker socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._inbox = b""
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: Message) -> bool:
        """Send one message; False if the peer is gone (or, non-blocking, not reading)."""
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError:
            return False
        return True

    def receive(self) -> list[Message] | None:
        """Messages complete so far (one read); None at end of file."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            return None
        *lines, self._inbox = (self._inbox + data).split(b"\n")
        if len(self._inbox) > MAX_LINE:
            self._inbox = b""
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def close(self) -> None:
        self.sock.close()


def channel_pair() -> tuple[Channel, Channel]:
    """(supervisor end, non-blocking; worker end, blocking)."""
    parent, child = socket.socketpair()
    parent.setblocking(False)
    return Channel(parent), Channel(child)
