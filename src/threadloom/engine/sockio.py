"""Blocking semantics on non-blocking sockets, without a poll before every call.

A Python socket with a timeout polls *before* every ``send`` and ``recv`` (two system calls
where one usually does). HTTP sockets therefore stay non-blocking for their whole life; these
helpers try the call first and wait with ``poll`` only when the kernel says it would block.
"""

from __future__ import annotations

import select
import socket
import time

from threadloom import portable

# poll's bits where it exists; elsewhere (Windows) 1 and 4 name select's read and write sets
_POLLIN = (
    select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR if portable.HAS_POLL else 1
)
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR if portable.HAS_POLL else 4


def wait_for(sock: socket.socket, events: int, timeout: float | None) -> bool:
    """Wait until ``sock`` is ready for ``events``; False when ``timeout`` passes first."""
    wait = None if timeout is None else max(timeout, 0.0)
    if not portable.HAS_POLL:
        reading = [sock] if events == _POLLIN else []
        ready = select.select(reading, [] if reading else [sock], [sock], wait)
        return any(ready)
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(None if wait is None else wait * 1000))


def wait_readable(sock: socket.socket, timeout: float | None) -> bool:
    """Wait for bytes (or EOF) on ``sock``; False on timeout."""
    return wait_for(sock, _POLLIN, timeout)


def wait_writable(sock: socket.socket, timeout: float | None) -> bool:
    """Wait until ``sock`` takes bytes again (or fails); False on timeout."""
    return wait_for(sock, _POLLOUT, timeout)


def reset_on_close(sock: object) -> None:
    """Make the coming close a reset: a dropped slow reader's unsent bytes are discarded
    by the kernel at once, instead of being delivered at its pace (and held meanwhile)."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is None:
        return  # a TLS stream: its socket closes as it is
    try:
        setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, portable.LINGER_RESET)
    except OSError:
        pass


def send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    """Send all of ``data``; raise TimeoutError if the peer stops reading for ``timeout`` s."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    deadline = time.monotonic() + timeout
    while view:
        if not wait_for(sock, _POLLOUT, deadline - time.monotonic()):
            if time.monotonic() >= deadline:
                raise TimeoutError("the peer stopped reading")
            continue
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            continue


def recv_waiting(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Receive up to ``size`` bytes, waiting at most ``timeout`` s; ``b""`` on EOF or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            pass
        if not wait_readable(sock, deadline - time.monotonic()):
            return b""
