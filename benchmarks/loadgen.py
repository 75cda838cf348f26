"""Starting a server pinned to CPU 0, loading it with wrk pinned to CPU 1, and stopping it.

With --workers N > 1 the server's processes could not share one CPU meaningfully, so server and
load are both pinned to CPUs 0 and 1 and compete there: only ratios within a run count then.

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

from suites import ServerSpec
from workloads import Workload

SERVER_CPU = "0"
LOAD_CPU = "1"
SHARED_CPUS = "0,1"  # server and load, with --workers N > 1
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


@dataclass(frozen=True)
class Setup:
    """What every server start and wrk run of one benchmark run share."""

    workload: Workload
    interface: str  # "wsgi" or "asgi"
    workers: int
    connections: int

    @property
    def module(self) -> str:
        """The app module the servers import."""
        return self.workload.module(self.interface)

    @property
    def server_cpus(self) -> str:
        """CPU 0 alone for one process; several processes get both CPUs, shared with wrk."""
        return SERVER_CPU if self.workers == 1 else SHARED_CPUS

    @property
    def load_cpus(self) -> str:
        """CPU 1 alone against one process, else both CPUs (see server_cpus)."""
        return LOAD_CPU if self.workers == 1 else SHARED_CPUS


def free_port() -> int:
    """A port the kernel just considered free; each start gets a new one so that a previous
    server's TIME_WAIT sockets or a slow shutdown never collide with the next start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started in its own session (so the whole process group, workers included, can be
    killed and measured), pinned to the setup's server CPUs, with output going to a file rather
    than a pipe nobody drains."""

    def __init__(self, spec: ServerSpec, setup: Setup, workdir: Path, round_no: int) -> None:
        self.spec = spec
        self.setup = setup
        self.workdir = workdir
        self.port = free_port()
        command = spec.command(self.port, setup.module, setup.workers)
        self.argv = ["taskset", "-c", setup.server_cpus, *command]
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
        self.probe()

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

    def probe(self) -> None:
        """One request as wrk will send it: a server that accepts but answers wrongly (or not
        the workload's bytes) must not be timed. Sent again after the warm-up, it also waits
        out the requests the warm-up left queued: a server with fewer threads than connections
        still works through requests whose clients wrk has closed (io: over a second of them),
        which the measured run would otherwise pay for."""
        workload = self.setup.workload
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request(workload.method, workload.path, body=workload.request_body or None)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self.failure(f"probe failed: {exc!r}") from exc
        finally:
            conn.close()
        problem = workload.answer_problem(resp.status, resp.getheader("Content-Type", ""), body)
        if problem:
            raise self.failure(f"probe: {problem}")

    def check_alive(self, what: str) -> None:
        """Raise a Failure carrying the log if the server process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise self.failure(f"{what} (exit {self.proc.returncode})")

    def peak_memory(self) -> dict[str, int | None]:
        """Peak RSS (VmHWM) summed over the server's process group, and how many processes
        it has: cheap to read from /proc while the server still runs. A sum over several
        processes counts pages they share once per process, so it overstates them."""
        if self.proc is None:
            return {"peak_rss_kib": None, "processes": None}
        total, count = group_peak_rss_kib(self.proc.pid)
        return {"peak_rss_kib": total if count else None, "processes": count or None}

    def cpu_seconds(self) -> float:
        """User and system CPU time used so far by the server's process group: taken before
        and after a measured run, it gives the CPU a request costs, a figure a busy host
        moves far less than requests a second (it cannot slow the server's own work down by
        stealing its turns, only by what it does to the caches)."""
        return 0.0 if self.proc is None else group_cpu_seconds(self.proc.pid)

    def log_tracebacks(self) -> int:
        """Tracebacks the server has logged so far. A server can answer every request right and
        still raise in the app or its own code after each one (threadloom-asyncio under
        Django's ASGI handler did); the table shows the count so such a row does not read as
        clean. A few can be the harness's doing: wrk drops its connections mid-response when
        a run ends."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 0
        return text.count("Traceback (most recent call last)")

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


def group_peak_rss_kib(pgid: int) -> tuple[int, int]:
    """Sum of VmHWM over the live processes of group `pgid`, and their number ((0, 0) where
    /proc is missing). The group is the server's session: workers stay in it."""
    total = count = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
            # After the command name in parentheses: state, ppid, pgrp, ...
            if int(stat.rpartition(")")[2].split()[2]) != pgid:
                continue
            status = (entry / "status").read_text(encoding="ascii", errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not ours to read
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
                count += 1
    return total, count


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime summed over the live processes of group `pgid` (0.0 where /proc is
    missing)."""
    ticks = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text(encoding="ascii", errors="replace")
            after_name = fields.rpartition(")")[2].split()  # state, ppid, pgrp, ...
            if int(after_name[2]) == pgid:
                ticks += int(after_name[11]) + int(after_name[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk_command(port: int | str, duration: int, setup: Setup) -> list[str]:
    """wrk pinned to the load CPUs, one thread, keep-alive (wrk's default); the workload's
    script sets the request when it is not a plain GET and reports via report.lua."""
    url = f"http://127.0.0.1:{port}{setup.workload.path}"
    return [
        "taskset", "-c", setup.load_cpus,
        "wrk", "-t1", f"-c{setup.connections}", f"-d{duration}s",
        f"--timeout={setup.workload.timeout_s}s", "-s", str(setup.workload.script), url,
    ]  # fmt: skip


def run_wrk(server: ServerProcess, duration: int) -> WrkResult:
    """Load `server` once; a crash, zero requests or any error is a Failure."""
    argv = wrk_command(server.port, duration, server.setup)
    try:
        done = subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=duration + server.setup.workload.timeout_s + 30,
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
