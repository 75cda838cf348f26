"""Guards that keep the suite honest: a hang ends the run with every stack, no process outlives
its test.

Why both exist: a fresh-clone run once hung for 15 minutes. A worker process wedged, outlived
its supervisor and kept a pipe open; the test's teardown then waited, in C, for a lock held
by the thread reading that pipe. pytest-timeout's signal method (``timeout`` in
pyproject.toml) cannot interrupt a lock wait in C, so nothing fired.

* **Hard timeout.** Each test arms a watchdog thread for its timeout plus a margin
  (:func:`hard_timeout`). pytest-timeout normally fails the test long before; if the test is
  still running when the watchdog fires, the watchdog prints the test's id and every thread's
  stack (with thread names) to the terminal, kills the processes the test started and ends
  the run with status 3. A C-level ``faulthandler`` timer backs it up, should even the
  watchdog not get the GIL.
* **No leaked processes.** The pytest process is a *child subreaper* (Linux), so a test's
  grandchildren orphaned by a dead parent are re-parented to pytest, not to init, and stay
  findable. After each test, every process started during it that still runs is killed and
  the test errors, naming them. Processes started by module- or session-scoped fixtures (set
  up before the test) and their children are left alone.

Loaded from tests/conftest.py (``pytest_plugins``); tests/test_guards.py checks both.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator

import pytest

_PR_SET_CHILD_SUBREAPER = 36
#: Seconds added to a test's timeout before the watchdog ends the run (pytest-timeout acts
#: at the timeout itself; this is for when it cannot).
MARGIN_S = 10.0
#: The C-level backstop fires this much later still.
BACKSTOP_S = 30.0


def hard_timeout(timeout: float) -> float:
    """When the watchdog ends the run, for a test whose timeout is ``timeout`` seconds."""
    return timeout + max(MARGIN_S, timeout / 2)


# -- processes -----------------------------------------------------------------------------


def become_subreaper() -> None:
    """Adopt our orphaned descendants (Linux only; elsewhere they go to init, as before)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _children() -> dict[int, tuple[int, str]]:
    """Every process on the machine: pid -> (parent pid, state), from /proc."""
    table: dict[int, tuple[int, str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def subtree(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    """``root``'s descendants (not ``root`` itself)."""
    found: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return found


def started_since(before: set[int], state: str = "live") -> list[int]:
    """Processes below us that are not in ``before`` nor below one that is: the ``live``
    ones, or the exited ones still waiting to be collected (``zombie``)."""
    table = _children()
    me = os.getpid()
    fresh: set[int] = set()
    for pid, (ppid, _) in table.items():
        if ppid == me and pid not in before:
            fresh |= {pid} | subtree(pid, table)
    zombie = state == "zombie"
    return sorted(pid for pid in fresh if (table.get(pid, (0, "Z"))[1] == "Z") == zombie)


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return str(pid)
    return f"{pid} ({command})"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def reap(before: set[int]) -> None:
    """Collect what a test started and that has exited but was never waited for (adopted
    orphans: nobody else will); ``before`` keeps the scoped fixtures' processes out."""
    for pid in started_since(before, state="zombie"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: its own parent collects it


# -- the watchdog --------------------------------------------------------------------------


class Watchdog:
    """One thread for the whole session; each test re-arms it (see the module docstring)."""

    def __init__(self, out_fd: int) -> None:
        self.out_fd = out_fd
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._test = ""
        self._before: set[int] = set()
        threading.Thread(target=self._run, name="test-watchdog", daemon=True).start()

    def arm(self, test: str, seconds: float, before: set[int]) -> None:
        with self._cond:
            self._test, self._before = test, before
            self._deadline = time.monotonic() + seconds
            self._cond.notify()
        faulthandler.dump_traceback_later(seconds + BACKSTOP_S, exit=True, file=self.out_fd)

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
        faulthandler.cancel_dump_traceback_later()

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._fire()

    def _fire(self) -> None:
        names = {t.ident: t.name for t in threading.enumerate()}
        lines = [f"\n{self._test} is still running past its hard timeout: ending the run.\n"]
        for ident, frame in sys._current_frames().items():
            lines.append(f"\n--- thread {names.get(ident, '?')} ({ident}) ---\n")
            lines.extend(traceback.format_stack(frame))
        leaked = started_since(self._before)
        if leaked:
            lines.append("\nkilling processes it started: " + ", ".join(map(describe, leaked)))
        os.write(self.out_fd, "".join(lines).encode(errors="replace") + b"\n")
        kill_all(leaked)
        os._exit(3)


_WATCHDOG: list[Watchdog] = []


def pytest_configure(config: pytest.Config) -> None:
    become_subreaper()
    # Output capture is suspended while plugins are configured: fd 2 is the terminal here.
    _WATCHDOG.append(Watchdog(os.dup(2)))


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    option = item.config.getoption("timeout", None)
    if option is None:
        option = item.config.getini("timeout")
    return float(option or 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    timeout = _timeout_of(item)
    before = set(_children())
    if timeout > 0 and _WATCHDOG:
        _WATCHDOG[0].arm(item.nodeid, hard_timeout(timeout), before)
    try:
        return (yield)
    finally:
        if _WATCHDOG:
            _WATCHDOG[0].disarm()


@pytest.fixture(autouse=True)
def no_process_leaks() -> Iterator[None]:
    """Every process a test starts has ended by its end: else it is killed, and we fail."""
    before = set(_children())
    yield
    leaked = started_since(before)
    if leaked:
        # A process that was told to stop may need a moment to go.
        deadline = time.monotonic() + 2.0
        while leaked and time.monotonic() < deadline:
            time.sleep(0.05)
            leaked = started_since(before)
    names = [describe(pid) for pid in leaked]
    kill_all(leaked)
    if leaked:
        time.sleep(0.1)
    reap(before)
    assert not names, f"processes left running (now killed): {names}"
