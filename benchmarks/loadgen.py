"""Starting a server pinned to CPU 0, loading it with wrk pinned to CPU 1, and stopping it.

Failures are values, not exceptions that escape: a server that does not start, answers wrongly,
dies or errors under load becomes a `Failure` with the reason and the tail of its log, so one
broken server (threadloom mid-refactor, say) never takes the whole comparison down with it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suites import BENCH_DIR, HELLO_BODY, ServerSpec

SERVER_CPU = "0"
LOAD_CPU = "1"
REPORT_LUA = BENCH_DIR / "report.lua"
START_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
JSON_MARKER = "BENCH_JSON "


class Failure(Exception):
    """A server could not be measured; `reason` goes into the table, `detail` into the JSON."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class WrkResult:
    """One wrk run as reported by report.lua, plus the command that produced it."""

    command: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Socket errors of every kind plus 4xx/5xx responses: any of these fails the server."""
        return int(sum(self.data["errors"].values())) + int(self.data["non_2xx"])


def free_port() -> int:
    """A port the kernel just considered free; each start gets a new one so that a previous
    server's TIME_WAIT sockets or a slow shutdown never collide with the next start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started in its own session (so the whole process group, workers included, can be
    killed), pinned to SERVER_CPU, with output going to a file rather than a pipe nobody drains."""

    def __init__(self, spec: ServerSpec, workdir: Path, round_no: int) -> None:
        self.spec = spec
        self.workdir = workdir
        self.port = free_port()
        self.argv = ["taskset", "-c", SERVER_CPU, *spec.command(self.port)]
        self.log_path = workdir / f"{spec.name}.round{round_no}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch, wait until the port accepts, then check one response is exactly right."""
        env = dict(os.environ, PYTHONPATH=str(self.workdir), PYTHONUNBUFFERED="1")
        env.pop("VIRTUAL_ENV", None)
        with self.log_path.open("wb") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise Failure(f"cannot start: {exc}") from exc
        self._wait_accepting()
        self._probe()

    def _wait_accepting(self) -> None:
        """Poll connect() until it succeeds, failing fast if the process exits meanwhile."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive("exited during start-up")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.05)
        raise self.failure(f"port not accepting after {START_TIMEOUT_S:.0f}s")

    def _probe(self) -> None:
        """One plain GET: a server that accepts but answers wrongly must not be timed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.failure(f"probe failed: {exc!r}") from exc
        finally:
            conn.close()
        if resp.status != 200 or body != HELLO_BODY:
            raise self.failure(f"probe got {resp.status} {body[:40]!r}")

    def check_alive(self, what: str) -> None:
        """Raise a Failure carrying the log if the server process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise self.failure(f"{what} (exit {self.proc.returncode})")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period; never raises."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)
                break
        # Workers may outlive the leader; make sure none keeps CPU 0 busy for the next server.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def failure(self, reason: str) -> Failure:
        """A Failure whose table reason ends with the server's last log line (usually the
        exception that stopped it), with the fuller tail kept for the JSON."""
        tail = self.log_tail()
        last = next((ln.strip() for ln in reversed(tail.splitlines()) if ln.strip()), "")
        if last:
            reason = f"{reason}: {last[:100]}"
        return Failure(reason, tail)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output, for the report."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wrk_command(port: int, duration: int, connections: int) -> list[str]:
    """wrk pinned to LOAD_CPU, one thread, keep-alive (wrk's default), reporting via report.lua."""
    return [
        "taskset", "-c", LOAD_CPU,
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
        "-s", str(REPORT_LUA), f"http://127.0.0.1:{port}/",
    ]  # fmt: skip


def run_wrk(server: ServerProcess, duration: int, connections: int) -> WrkResult:
    """Load `server` once; a crash, zero requests or any error is a Failure."""
    argv = wrk_command(server.port, duration, connections)
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise server.failure("wrk hung") from exc
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(JSON_MARKER)]
    if done.returncode != 0 or not lines:
        raise Failure(f"wrk exit {done.returncode}", (done.stdout + done.stderr)[-2000:])
    result = WrkResult(" ".join(argv), json.loads(lines[-1][len(JSON_MARKER) :]))
    server.check_alive("died under load")
    if result.data["requests"] == 0:
        raise server.failure("no requests completed")
    if result.error_count:
        errors = dict(result.data["errors"], non_2xx=result.data["non_2xx"])
        shown = ", ".join(f"{k} {v}" for k, v in errors.items() if v)
        raise Failure(f"errors under load: {shown}", json.dumps(result.data))
    return result
