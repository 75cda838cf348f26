"""What this platform offers, asked in one place, and the switches that force each fallback.

threadloom is built and tested on Linux. macOS and the BSDs lack epoll, ``SO_REUSEPORT``
behaves differently there, and Windows lacks ``fork``, ``os.sendfile``, ``sendmsg``,
``os.pread``, ``select.poll``, Unix sockets and most signals. Code that needs one of these
asks here and takes the fallback named beside it, never crashing on a missing attribute.

Each fallback can be forced on Linux by an environment variable, so the paths another
platform takes run in ``make test`` here (README "Platforms" says what was tested where):

=========================== =============================================================
``THREADLOOM_POLLER``       ``pool``'s poller: ``epoll`` (edge-triggered; Linux's default),
                            ``selectors`` (``selectors.DefaultSelector``, level-triggered:
                            kqueue on macOS and the BSDs), ``select`` (``SelectSelector``,
                            what Windows gets). Read when a pool starts.
``THREADLOOM_NO_SENDFILE``  ``1``: files are read and sent, as where ``os.sendfile`` or
                            ``sendmsg`` is missing (Windows). Read per connection.
``THREADLOOM_NO_FORK``      ``1``: ``--workers`` answers as where ``fork`` is missing
                            (Windows). Read when the command line is checked.
``THREADLOOM_WORKER_SCHED`` ``normal``: worker threads keep the default scheduling policy,
                            as where ``SCHED_BATCH`` is missing (everywhere but Linux).
                            Read when a worker thread starts.
=========================== =============================================================

A capability that is simply absent (an option of ``socket``, a signal) has no switch; tests
strip it from the module in a child process (tests/portable).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct

log = logging.getLogger("threadloom.net")

POLLER_ENV = "THREADLOOM_POLLER"
NO_SENDFILE_ENV = "THREADLOOM_NO_SENDFILE"
NO_FORK_ENV = "THREADLOOM_NO_FORK"
WORKER_SCHED_ENV = "THREADLOOM_WORKER_SCHED"
POLLERS = ("epoll", "selectors", "select")

#: Unix domain sockets (``unix:/path``; absent on Windows' CPython).
AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)
#: A non-blocking ``recv`` flag; 0 where absent (Windows), where the sockets it is used on
#: are non-blocking anyway.
MSG_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
#: ``SO_LINGER`` with a zero timeout (a reset on close): ``struct linger`` is two ints on
#: POSIX, two unsigned shorts on Windows.
LINGER_RESET = struct.pack("HH" if os.name == "nt" else "ii", 1, 0)
#: SO_REUSEADDR lets a restarted server bind a port in TIME_WAIT on POSIX; on Windows it
#: would let another process bind a port we listen on, so it is not set there (as asyncio).
REUSE_ADDRESS = os.name == "posix"
#: ``--reuse-port`` (absent on Windows; present but not load-balancing on macOS).
REUSE_PORT: int | None = getattr(socket, "SO_REUSEPORT", None)
#: ``TCP_NOTSENT_LOWAT`` (Linux; Python does not name macOS's): where absent, a slow reader's
#: kernel send buffer may grow to what the kernel's autotuning allows.
TCP_NOTSENT_LOWAT: int | None = getattr(socket, "TCP_NOTSENT_LOWAT", None)
#: ``select.poll``, for one socket's wait (:mod:`threadloom.engine.sockio`); else ``select``.
HAS_POLL = hasattr(select, "poll")


def poller_name() -> str:
    """The poller ``pool`` uses: the switch's, else ``epoll`` where it exists, else
    ``selectors``. An unknown or unavailable name is logged once and the default taken."""
    default = "epoll" if hasattr(select, "epoll") else "selectors"
    asked = os.environ.get(POLLER_ENV, "")
    if not asked:
        return default
    if asked not in POLLERS or (asked == "epoll" and default != "epoll"):
        log.warning("%s=%s is not available here; using %s", POLLER_ENV, asked, default)
        return default
    return asked


def kernel_sends_files() -> bool:
    """Whether the outbox may hand the kernel a file (``os.sendfile``) and several buffers
    at once (``sendmsg``); else it reads a file and sends it, one buffer per call."""
    return (
        hasattr(os, "sendfile")
        and hasattr(socket.socket, "sendmsg")
        and os.environ.get(NO_SENDFILE_ENV) != "1"
    )


def can_fork() -> bool:
    """Whether ``--workers`` can fork its workers."""
    return hasattr(os, "fork") and os.environ.get(NO_FORK_ENV) != "1"


def worker_waits_its_turn() -> bool:
    """Mark the calling thread ``SCHED_BATCH`` (Linux), so that waking it never preempts the
    thread running on its core; True if it was marked.

    A worker that runs the app beside an I/O thread (``pool``; ``asyncio``'s threads for
    sync code) is woken by that thread, mostly while that thread holds the GIL. With the
    default policy the woken worker preempts it at once, finds the GIL taken and sleeps
    again: two context switches for nothing, once per hand-off, and more the more workers
    are idle. With ``SCHED_BATCH`` the worker runs when the I/O thread blocks or its slice
    ends, which is when the GIL is free. On one core with ``--threads 10`` this took the
    context switches from 0.28-0.40 to 0.05 a request (BENCHMARKS.md, "Workers that wait
    their turn"). Nice values are unchanged; threads and processes the app starts from a
    worker inherit the policy. ``THREADLOOM_WORKER_SCHED=normal`` keeps the default.
    """
    if os.environ.get(WORKER_SCHED_ENV) == "normal":
        return False
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, batch, os.sched_param(0))
    except OSError as error:  # a sandbox that forbids it: keep serving, as before
        log.debug("SCHED_BATCH refused for a worker thread: %s", error)
        return False
    return True


def usable_cpus() -> list[int] | None:
    """The CPUs this process may run on, in order; None where a process cannot be pinned
    to a CPU (macOS, Windows: no ``sched_setaffinity``)."""
    if not hasattr(os, "sched_setaffinity") or not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def pin_to_cpu(cpu: int) -> bool:
    """Run the calling thread, and the threads and processes it starts later, on ``cpu``
    only; False if the system refused (a sandbox, a CPU taken away since). On Linux
    affinity belongs to a thread, so a process is pinned whole only while it has one
    thread: a ``--workers`` worker right after its fork."""
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as error:
        log.warning("could not pin worker %d to CPU %d: %s", os.getpid(), cpu, error)
        return False
    return True


def pread(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``, or a seek and a read where it is missing (Windows: the descriptor's
    position moves, which only its owner, a file segment, relies on)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def interrupts_main_thread() -> bool:
    """Whether a thread can interrupt the main thread's system call with a signal
    (:mod:`threadloom.signals`' nudger: ``pthread_kill`` and ``SIGURG``)."""
    return hasattr(signal, "pthread_kill") and hasattr(signal, "SIGURG")


#: Where the main thread cannot be interrupted (no nudger), the thread models' loops wake
#: at least this often, so the main thread runs a pending signal handler (Ctrl-C on Windows).
SIGNAL_WAKE_S: float | None = None if interrupts_main_thread() else 0.5
