"""The machine a bench runs on: which CPUs the server and the load get, and what to report.

A measurement is only worth its context. The report states the cores, the Python, whether the
GIL is on, and how the CPUs were split, so a reader can tell a two-core laptop's figures from a
server's. When there is more than one CPU the server and the load generator get disjoint sets,
so neither steals the other's cycles: the load gets a quarter of them (at least one), the server
the rest. The bench pins itself to the load CPUs, so the load generators it starts inherit them;
:func:`popen_on` starts a server on the server CPUs.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

from threadloom import __version__


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """Disjoint CPU sets for the server and the load; empty sets mean "not pinned"."""

    server: tuple[int, ...]
    load: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        """True when server and load run on separate CPUs."""
        return bool(self.server) and bool(self.load)

    def describe(self) -> str:
        """One line for the report."""
        if not self.pinned:
            return "not pinned (one CPU, or no affinity support): server and load share CPUs"
        return f"server on CPU {_cpus(self.server)}, load on CPU {_cpus(self.load)}"


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cpus)


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (all of them where affinity is not supported)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def split_cpus(cpus: tuple[int, ...] | None = None) -> CpuSplit:
    """Give the load a quarter of the CPUs (at least one) and the server the rest."""
    cpus = available_cpus() if cpus is None else cpus
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        return CpuSplit((), ())
    n_load = max(1, len(cpus) // 4)
    return CpuSplit(cpus[: len(cpus) - n_load], cpus[len(cpus) - n_load :])


def popen_on(cpus: tuple[int, ...], argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` pinned to ``cpus`` from its first instruction.

    On Linux, CPU affinity belongs to a thread and a child starts with the affinity of the
    thread that forked it: so this thread moves to ``cpus`` just for the fork and comes back.
    Other threads of this process are untouched, the child never runs a single instruction
    elsewhere, and no launcher process (or ``taskset``) is needed. No CPUs: start it as is.
    """
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return subprocess.Popen(argv, **kwargs)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        return subprocess.Popen(argv, **kwargs)
    finally:
        os.sched_setaffinity(0, previous)


def pin_self(cpus: tuple[int, ...]) -> None:
    """Pin the calling thread, the threads it starts later and the processes it starts (the
    load generators) to ``cpus``, where supported."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one: hundreds of connections need it.

    Children inherit the limit, so servers started afterwards get it too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return int(hard)
    return int(soft)


def gil_enabled() -> bool:
    """Whether the GIL is on in this interpreter (always, before free-threaded 3.13t)."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(split: CpuSplit) -> dict[str, Any]:
    """Everything the report says about where the figures come from."""
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return {
        "cpu": cpu_model(),
        "cores": len(available_cpus()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "gil": "on" if gil_enabled() else "off",
        "free_threaded_build": free_threaded,
        "os": f"{platform.system()} {platform.release()}",
        "threadloom": __version__,
        "pinning": split.describe(),
        "server_cpus": list(split.server),
        "load_cpus": list(split.load),
    }
