"""The engine's contract with the models, and the one blocking pump.

Theory of operation
-------------------
A *session* is the per-connection state of one protocol + interface pair (raw handler, HTTP
with WSGI, ...). It never touches threads or selectors; a *model* owns those. The model asks
the session what it wants next and does only that:

* :attr:`Want.READ`  -- read bytes from the peer and pass them to :meth:`Session.feed`
  (``b""`` means EOF). Before reading, honour :meth:`Session.deadline`; when it passes,
  call :meth:`Session.expire` instead.
* :attr:`Want.SERVE` -- run :meth:`Session.serve` on a thread that may block (the app runs
  there and writes its reply). A pool model hands the session to a worker for this.
* :attr:`Want.WRITE` -- the session holds response bytes the socket did not take (one
  writer per connection: :mod:`threadloom.engine.outbox`). Wait until the socket is
  writable, then call :meth:`Session.flush`, which answers the next want; honour
  :meth:`Session.deadline` meanwhile (a reader below ``--min-send-rate``), calling
  :meth:`Session.expire` when it passes. This never needs a thread that may block: the
  pool's I/O thread does it, and the worker that made the response is free.
* :attr:`Want.CLOSE` -- close the connection (after :meth:`Session.close`).

:meth:`Session.start` is called once, right after accept: a raw handler answers SERVE at
once (it owns its socket), HTTP answers READ. When a model cannot take more work it calls
:meth:`Session.overloaded`, which answers what the protocol says (HTTP: 503) and then CLOSE.

Models whose threads may block simply call :func:`run_blocking`, which is the whole loop
above; the pool model splits it between its I/O thread (READ) and its workers (SERVE). The
asyncio model drives :class:`Service.serve_async` instead. This is the only place the pump
is written.
"""

from __future__ import annotations

import enum
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from threadloom.engine.sockio import wait_readable, wait_writable

log = logging.getLogger("threadloom.engine")

T = TypeVar("T")
READ_SIZE = 65536


class Want(enum.IntEnum):
    """What a session needs its model to do next."""

    READ = 0
    SERVE = 1
    CLOSE = 2
    WRITE = 3


#: The members as module constants, for hot paths: reading ``Want.READ`` goes through the
#: enum class and costs ~70 ns a time on CPython 3.11, a module global ~5 ns.
READ, SERVE, CLOSE, WRITE = Want.READ, Want.SERVE, Want.CLOSE, Want.WRITE


class Session(Protocol):
    """Per-connection protocol state, driven by a model (see the module docstring)."""

    def start(self) -> Want:
        """Called once after accept."""
        ...

    def feed(self, data: bytes) -> Want:
        """Bytes from the peer; ``b""`` is EOF. Must not block."""
        ...

    def serve(self) -> Want:
        """Run the app for what is ready; may block. Called on a worker thread."""
        ...

    def flush(self) -> Want:
        """The socket is writable: send what waits (never blocks). Only after WRITE."""
        ...

    def deadline(self) -> float | None:
        """``time.monotonic()`` value after which :meth:`expire` is due, or None."""
        ...

    def expire(self) -> Want:
        """The deadline passed while waiting to READ or WRITE."""
        ...

    def overloaded(self) -> None:
        """The model cannot queue this session's work; answer accordingly (never blocks)."""
        ...

    @property
    def idle(self) -> bool:
        """True between requests, when closing loses nothing (used on shutdown)."""
        ...

    def close(self) -> None:
        """Release the connection; the model has stopped driving this session."""
        ...


class ExchangeRunner(Protocol):
    """What a thread model lends a connection whose exchanges run at the same time
    (HTTP/2 streams) while its owner keeps reading it. A model without one (``single``)
    gets SERVE from such a session and runs its exchanges one after another."""

    def submit(self, work: Callable[[], None]) -> bool:
        """Run ``work`` (one exchange) on a thread that may block; False when the model
        cannot take more work now (the exchange is then refused on its own)."""
        ...

    def flush_later(self, sock: socket.socket) -> bool:
        """Bytes the socket did not take wait in the connection's outbox: have its owner
        send them (True), or False when the calling thread must wait for the socket."""
        ...


class AsyncRuntime(Protocol):
    """What the asyncio model lends a service: its bounded thread pool."""

    def run_sync(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Run blocking ``fn(*args)`` on the model's thread pool."""
        ...

    #: A request on the loop that begins (``time.perf_counter()``) by this time is admitted
    #: without asking :meth:`admits`: the model's answer for the hot path, kept up to date.
    admit_until: float

    def admits(self, on_pool: bool, now: float) -> bool:
        """Whether a request beginning ``now`` (``time.perf_counter()``) may start (on the
        loop, or ``on_pool``: on the thread pool); False: the model is overloaded, and the
        request is answered 503 at once."""
        ...


class Service(Protocol):
    """Serves connections for one app; built once per server by :func:`build_service`."""

    #: The app is a coroutine function: only the asyncio model can run it.
    needs_loop: bool
    #: A short description of the interface, for the start-up log line.
    description: str

    def session(self, sock: socket.socket, addr: Any) -> Session:
        """A session for a thread-based model (sync interfaces only)."""
        ...

    async def serve_async(self, sock: socket.socket, addr: Any, runtime: AsyncRuntime) -> None:
        """Serve one connection on the running event loop until it ends."""
        ...

    async def startup(self) -> None:
        """Run before the asyncio model accepts (ASGI lifespan); raise to refuse to start."""
        ...

    async def shutdown(self) -> None:
        """Run after the asyncio model has drained (ASGI lifespan)."""
        ...

    def lend(self, exchanges: ExchangeRunner | None) -> None:
        """A thread model lends its way to run exchanges (HTTP/2 streams); called once,
        before the first session."""
        ...

    def going_away(self) -> None:
        """The server is stopping: ask long conversations (WebSockets, HTTP/2
        connections: GOAWAY) to end now (1001).

        Thread models call it from the thread that stops them, asyncio from its loop.
        """
        ...


def run_blocking(session: Session, sock: socket.socket) -> None:
    """Drive one session to the end on the calling thread: the whole pump, blocking."""
    try:
        want = session.start()
        while want is not CLOSE:
            if want is SERVE:
                want = session.serve()
            elif want is WRITE:
                want = write_once(session, sock)
            else:
                want = read_once(session, sock)
    except Exception:
        log.exception("connection failed unexpectedly")
    finally:
        session.close()


def write_once(session: Session, sock: socket.socket) -> Want:
    """One blocking WRITE step: wait until the socket takes bytes (until the session's
    deadline), then let the session send what waits."""
    deadline = session.deadline()
    timeout = None if deadline is None else deadline - time.monotonic()
    if not wait_writable(sock, timeout):
        return session.expire()
    return session.flush()


def read_once(session: Session, sock: socket.socket) -> Want:
    """One blocking READ step: wait for bytes until the session's deadline, then feed them."""
    deadline = session.deadline()
    timeout = None if deadline is None else deadline - time.monotonic()
    if not wait_readable(sock, timeout):
        return session.expire()
    try:
        data = sock.recv(READ_SIZE)
    except BlockingIOError:
        return READ  # woken for nothing: wait again
    except OSError:
        data = b""
    return session.feed(data)
