"""Make this Linux Python look like another platform's, as far as threadloom can tell.

``strip(platform)`` removes, before threadloom (or ``selectors``, or ``asyncio``) is
imported, what that platform's CPython lacks: a missing function or constant is then an
AttributeError or an ImportError, exactly as there, so a path that still reached for one
would crash the server under test. Only for a child process (:data:`PRELUDE`): it changes
the interpreter for good.

What it cannot make: the other platform's kernel. kqueue cannot run here (the ``macos``
strip leaves ``selectors.DefaultSelector`` to be poll, level-triggered like kqueue), nor
can Windows' ``select`` limits, its signal delivery or its socket semantics be had here.
"""

from __future__ import annotations

import importlib
import os
import select
import selectors
import signal
import socket
import sys
from typing import Any

#: What each platform's CPython lacks that threadloom (or what it imports) may reach for.
MISSING: dict[str, dict[Any, tuple[str, ...]]] = {
    "macos": {
        select: ("epoll", "EPOLLIN", "EPOLLOUT", "EPOLLET", "EPOLLRDHUP"),
        socket: ("TCP_DEFER_ACCEPT", "SO_REUSEPORT_LB"),
        os: ("sched_getaffinity", "sched_setaffinity", "pipe2"),
    },
    "windows": {
        select: ("epoll", "EPOLLIN", "EPOLLOUT", "EPOLLET", "EPOLLRDHUP", "poll", "POLLIN"),
        socket: ("AF_UNIX", "MSG_DONTWAIT", "SO_REUSEPORT", "TCP_DEFER_ACCEPT"),
        os: (
            "sendfile",
            "pread",
            "fork",
            "register_at_fork",
            "sched_getaffinity",
            "sched_setaffinity",
            "killpg",
            "setsid",
        ),
        signal: ("pthread_kill", "SIGURG", "SIGHUP", "SIGCHLD", "SIGQUIT", "SIGKILL"),
    },
}
#: Modules that do not exist there (an import of one fails).
ABSENT = {"macos": (), "windows": ("resource", "fcntl", "uvloop")}

#: ``python -c PRELUDE serve APP ...``: the threadloom command on the stripped interpreter
#: named by ``THREADLOOM_EMULATE``.
PRELUDE = (
    "import os, sys; from tests.portable.emulate import strip; "
    "strip(os.environ['THREADLOOM_EMULATE']); "
    "from threadloom.cli import main; sys.exit(main())"
)


class _Missing:
    """A method a type lacks there (``socket.sendmsg`` on Windows): hasattr says False."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        raise AttributeError("not on this platform")


def strip(platform: str) -> None:
    """Remove what ``platform`` lacks from this interpreter (see the module docstring)."""
    assert "threadloom" not in sys.modules
    for module, names in MISSING[platform].items():
        for name in names:
            if hasattr(module, name):
                delattr(module, name)
    importlib.reload(selectors)  # (socket imported it: its DefaultSelector is chosen anew)
    for name in ABSENT[platform]:
        sys.modules[name] = None  # type: ignore[assignment]
    if platform == "windows":
        socket.socket.sendmsg = _Missing()  # type: ignore[assignment,method-assign]
        socket.socket.recvmsg = _Missing()  # type: ignore[assignment,method-assign]
        socket.socketpair = _inet_socketpair  # (Windows' own, over loopback TCP)


def _inet_socketpair(
    family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> tuple[socket.socket, socket.socket]:
    """``socket.socketpair`` as CPython builds it where AF_UNIX is missing."""
    with socket.socket(socket.AF_INET, kind, proto) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        one = socket.socket(socket.AF_INET, kind, proto)
        one.connect(listener.getsockname())
        two, _ = listener.accept()
    return one, two
