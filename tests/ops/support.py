"""Running ``threadloom`` as an operator does: a real process, real signals, real clients.

:class:`Proc` starts the command line and reads its log on a thread, so a test waits for
a log line (an event) rather than sleeping; :func:`wait_gone` waits on a pidfd for a
process that is not our child to end.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadloom.testing import timeout_factor

HERE = Path(__file__).parent
PYTHON = sys.executable


def scaled(seconds: float) -> float:
    return seconds * timeout_factor()


class Proc:
    """A ``python -m threadloom ...`` process and its log, line by line."""

    def __init__(
        self,
        *args: str,
        cwd: Path = HERE,
        env: dict[str, str] | None = None,
        argv: Sequence[str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        command = list(argv) if argv else [PYTHON, "-m", "threadloom", "serve", *args]
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
            start_new_session=True,  # a group of its own: see kill()
        )
        self.pid = self.popen.pid
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="test-log-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The next log line matching ``pattern`` (lines before it are skipped, and kept)."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.0))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in:\n" + self.text) from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(f"exited before {pattern!r}:\n" + self.text)
            self.log.append(line)
            if match := re.search(pattern, line):
                return match

    def serving(self, timeout: float = 15.0) -> str:
        """Wait for the start-up line; the first address it names."""
        return self.expect(r" serving .*? on (\S+?),? ", timeout)[1]

    @property
    def text(self) -> str:
        return "\n".join(self.log)

    def send(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        """Wait for the exit; the status and the whole log."""
        status = self.popen.wait(scaled(timeout))
        self._close()
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.log.append(line)
        return status, self.text

    def kill(self) -> None:
        """End the process and everything in its group (workers, even orphaned ones)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass  # the group is gone already
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._close()

    def _close(self) -> None:
        """Close the log pipe once its reader has finished (never under the reader)."""
        self._reader.join(scaled(5))
        if self._reader.is_alive():
            return  # a descendant still holds the pipe open: kill() ends the group first
        if self.popen.stderr is not None:
            self.popen.stderr.close()


def address(text: str) -> tuple[str, int] | str:
    """``127.0.0.1:8000`` -> a tuple; ``unix:/path`` -> the path."""
    if text.startswith("unix:"):
        return text[5:]
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def get(where: tuple[str, int] | str, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
    """One request on a new connection: (status, body)."""
    conn: http.client.HTTPConnection
    if isinstance(where, str):
        conn = _UnixConnection(where, scaled(timeout))
    else:
        conn = http.client.HTTPConnection(*where, timeout=scaled(timeout))
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def pids_answering(where: Any, want: int, tries: int = 400) -> set[int]:
    """Pids seen in responses until ``want`` distinct ones answered (or ``tries`` ran out).

    Requests go 8 at a time: one after another, the kernel may hand every connection to
    the same idle worker (it did, 200 times in a row, under ``asyncio``); while that one is
    busy, the others accept.
    """
    seen: set[int] = set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(0, tries, 8):
            for status, body in pool.map(lambda _: get(where), range(8)):
                assert status == 200, body
                seen.add(int(body))
            if len(seen) >= want:
                break
    return seen


def alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait for any process (not only a child) to end, on a pidfd; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], scaled(timeout))
        return bool(ready) or not alive(pid)
    finally:
        os.close(fd)


def terminate(proc: Proc, timeout: float = 20.0) -> str:
    """SIGTERM, then a clean exit 0; the log."""
    proc.send(signal.SIGTERM)
    status, text = proc.finish(timeout)
    assert status == 0, text
    return text
