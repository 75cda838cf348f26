"""systemd socket activation: listen on sockets a service manager opened for us.

With a ``.socket`` unit, systemd binds the port itself (before the service even starts, so
nothing is refused while it starts or restarts) and passes the sockets as descriptors 3,
4, ... with ``LISTEN_FDS=<count>`` and ``LISTEN_PID=<our pid>`` in the environment
(sd_listen_fds(3)). They are honoured only when ``LISTEN_PID`` names this very process, so
a child that merely inherited the environment never grabs them. The variables are removed
once read, as ``sd_listen_fds(1)`` does, and the descriptors are made non-inheritable.

Each socket becomes an ``fd://N`` address, which the listener code already adopts.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: The first descriptor systemd passes (after stdin, stdout and stderr).
LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def activated_binds(environ: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """``fd://N`` addresses for the sockets systemd passed to this process (maybe none)."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return ()
    for name in _VARIABLES:
        env.pop(name, None)
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))
    for fd in fds:
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass  # not open: binding fd://N reports it in one line
    return tuple(f"fd://{fd}" for fd in fds)
