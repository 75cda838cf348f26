"""The signal inbox counts each delivery once and acts even when the main thread cannot.

Each case runs a small program in a process of its own (signal handlers, the wakeup fd and
the signal mask are the whole process's), sends it real signals with ``os.kill`` and reads
what its ``act`` printed: ``act <signal> <count>`` lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from threadloom.testing import timeout_factor

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="POSIX signals: no pthread_sigmask here"
)

#: Dispatches SIGTERM and SIGINT, says "ready", then holds its main thread in the way
#: argv[1] names; ``act`` prints each action, flushed.
#: How long the "stuck" program's main thread takes no signal.
STUCK_S = 3

PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    from threadloom.signals import SignalInbox
    STUCK_S = STUCK_S_VALUE

    def act(signum, count):
        print("act", signal.Signals(signum).name, count, flush=True)

    inbox = SignalInbox((signal.SIGTERM, signal.SIGINT))
    inbox.dispatch(act)
    inbox.install()
    if sys.argv[1] == "stuck":
        # a main thread stuck where no signal reaches it (a long call into C) for STUCK_S:
        # every signal is blocked on it, so only the watcher and the nudger threads get
        # them; then its handler runs, late, for what was delivered meanwhile
        watched = {signal.SIGTERM, signal.SIGINT, signal.SIGURG}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        print("ready", flush=True)
        time.sleep(STUCK_S)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
    else:
        print("ready", flush=True)
    time.sleep(60)
    """
).replace("STUCK_S_VALUE", str(STUCK_S))


def start(how: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def read_acts(proc: subprocess.Popen[str], count: int, within_s: float) -> list[str]:
    """The first ``count`` act lines, or a failure naming what came within the time."""
    assert proc.stdout is not None
    acts: list[str] = []
    deadline = time.monotonic() + within_s * timeout_factor()
    os.set_blocking(proc.stdout.fileno(), False)
    while len(acts) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acts.append(line.strip())
        else:
            time.sleep(0.01)
    assert len(acts) == count, f"acts after {within_s}s: {acts}"
    return acts


@pytest.fixture
def programs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.communicate()


def no_more_acts(proc: subprocess.Popen[str], how: str) -> None:
    """Nothing more, the stuck main thread's late handler runs included."""
    assert proc.stdout is not None
    time.sleep(STUCK_S + 0.5 if how == "stuck" else 0.5)
    assert proc.stdout.readline() == ""  # (non-blocking: nothing has come)


@pytest.mark.parametrize("how", ["sleeping", "stuck"])
def test_a_signal_is_acted_on_once(how: str, programs: list[subprocess.Popen[str]]) -> None:
    proc = start(how)
    programs.append(proc)
    os.kill(proc.pid, signal.SIGTERM)
    # stuck: before the nudger reported deliveries itself, nothing until the main thread
    # came back (in a server: never, when it then slept in epoll)
    assert read_acts(proc, 1, within_s=STUCK_S / 2) == ["act SIGTERM 1"]
    no_more_acts(proc, how)
    os.kill(proc.pid, signal.SIGINT)
    assert read_acts(proc, 1, within_s=STUCK_S / 2) == ["act SIGINT 2"]
    no_more_acts(proc, how)


@pytest.mark.parametrize("how", ["sleeping", "stuck"])
def test_a_second_signal_counts_two(how: str, programs: list[subprocess.Popen[str]]) -> None:
    """Each delivery once: the stuck main thread's handler, run late, folds the two into
    one run, which is neither lost nor a third."""
    proc = start(how)
    programs.append(proc)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.2)  # (two kills at once are one delivery: the kernel folds them)
    os.kill(proc.pid, signal.SIGTERM)
    assert read_acts(proc, 2, within_s=STUCK_S / 2) == ["act SIGTERM 1", "act SIGTERM 2"]
    no_more_acts(proc, how)
