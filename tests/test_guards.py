"""The suite's own guards (tests/guards.py), checked by running pytest on tests that hang
or leak, in a child process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.guards import hard_timeout
from threadloom.testing import timeout_factor

ROOT = Path(__file__).resolve().parents[1]

#: The hang that once stalled the suite: the main thread closes a buffered pipe another
#: thread is reading, and waits for that thread's buffer lock in C, where SIGALRM (the
#: per-test timeout's signal method) cannot reach it.
HANGS = """
import os, threading, time

def test_closes_a_pipe_under_its_reader():
    r, w = os.pipe()
    f = os.fdopen(r, "rb")
    threading.Thread(target=f.read, name="pipe-reader", daemon=True).start()
    time.sleep(0.2)
    f.close()
"""

#: A test that starts a process, orphans a grandchild and "forgets" both.
LEAKS = """
import subprocess, sys

def test_starts_and_forgets():
    sleeper = "import time; time.sleep(300)"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {sleeper!r}])"
    code += "; time.sleep(300)"
    subprocess.Popen([sys.executable, "-c", code])

def test_after_it():
    pass
"""


def run_pytest(
    tmp_path: Path, source: str, timeout: int
) -> tuple[subprocess.CompletedProcess[str], float]:
    test = tmp_path / "test_case.py"
    test.write_text(source)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "tests.guards",
        "-c",
        str(ROOT / "pyproject.toml"),
    ]
    argv += ["-o", f"timeout={timeout}", "--rootdir", str(ROOT), str(test)]
    started = time.monotonic()
    done = subprocess.run(
        argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120 * timeout_factor()
    )
    return done, time.monotonic() - started


def test_a_hang_out_of_reach_of_signals_ends_the_run_with_every_stack(tmp_path: Path) -> None:
    done, took = run_pytest(tmp_path, HANGS, timeout=2)
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert took < hard_timeout(2) + 20 * timeout_factor(), out
    assert "test_closes_a_pipe_under_its_reader is still running past its hard timeout" in out
    assert "--- thread pipe-reader" in out and "--- thread MainThread" in out, out
    assert "f.close()" in out, out


def test_processes_a_test_leaves_running_are_killed_and_fail_it(tmp_path: Path) -> None:
    done, _ = run_pytest(tmp_path, LEAKS, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 passed, 1 error" in out, out
    assert "processes left running (now killed)" in out, out
    assert out.count("time.sleep(300)") >= 2, out  # the child and the orphaned grandchild
