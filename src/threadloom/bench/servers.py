"""Server processes under test: start one model as users run it, probe it, watch it, stop it.

Each model runs as ``python -m threadloom serve APP --model M`` in its own process (and its own
session, so workers die with it), pinned to the server CPUs, logging to a file nobody has to
drain. Outcomes are values the runner can report:

* :class:`Unavailable`: the server refused this combination at start-up (exit status 2, the
  CLI's "your configuration" status: a flag or interface it does not have yet). Reported as
  unavailable, never as a number.
* :class:`ServerFailed`: it crashed, never listened, or answered the probe wrongly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from threadloom.bench import wsframes
from threadloom.bench.machine import popen_on
from threadloom.bench.plan import WORKERS, Workload, served_model
from threadloom.bench.workloads import HELLO
from threadloom.config import Config

START_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 5.0
STOP_GRACE_S = 3.0  # the servers get --graceful-timeout 2
EXIT_CONFIG = 2


class Unavailable(Exception):
    """This model cannot run this workload here; the message says why, in one line."""


class ServerFailed(Exception):
    """The server could not be measured; the message ends with its last log line."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Memory and threads of the whole server (every process of its group)."""

    rss_mb: float
    threads: int


def free_port() -> int:
    """A port free right now; every server gets a new one, so no TIME_WAIT gets in the way."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_argv(model: str, workload: Workload, port: int, options: dict[str, str]) -> list[str]:
    """The ``threadloom serve`` command line for one model and workload."""
    target = workload.app_for(model)
    assert target is not None
    argv = [sys.executable, "-m", "threadloom", "serve", target, "--bind", f"127.0.0.1:{port}"]
    argv += ["--no-access-log", "--log-level", "warning", "--graceful-timeout", "2"]
    argv += ["--no-config"]  # a [tool.threadloom] where the bench runs must not change a run
    argv += ["--model", served_model(model)]
    if model == WORKERS:
        argv += ["--workers", options.get("workers", "2")]
    if workload.interface and workload.builtin:
        argv += ["--interface", workload.interface]
    if workload.load == "ws" and {"ws_ping_interval", "ws_per_message_deflate"} <= _settings():
        argv += ["--ws-ping-interval", "0", "--no-ws-per-message-deflate"]
    for name, value in options.items():
        if name != "workers":
            argv += [f"--{name}", value]
    return argv


def _settings() -> set[str]:
    """The settings this threadloom's ``serve`` has (others are still being built)."""
    return {f.name for f in dataclasses.fields(Config)}


class ServerProcess:
    """One server under test, from start to stop."""

    def __init__(
        self, argv: list[str], cpus: tuple[int, ...], log_dir: Path, env: dict[str, str]
    ) -> None:
        self.port = int(argv[argv.index("--bind") + 1].rsplit(":", 1)[1])
        self.argv = argv
        self.cpus = cpus
        self.log_path = log_dir / f"server-{self.port}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, workload: Workload) -> None:
        """Launch, wait until it accepts, then check one exchange is right."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with self.log_path.open("wb") as log:
            self.proc = popen_on(
                self.cpus,
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_accepting()
        probe = {
            "http": probe_http,
            "h2": probe_http,
            "idle": probe_http,
            "ws": probe_ws,
            "raw": probe_raw,
        }
        problem = probe[workload.load](self.port, exact=workload.builtin)
        if problem.startswith("unavailable: "):
            raise Unavailable(problem.removeprefix("unavailable: "))
        if problem:
            raise self.failure(problem)

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive("exited while starting")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.02)  # polling a port that is not open yet; nothing to wait on
        raise self.failure(f"not accepting after {START_TIMEOUT_S:.0f} s")

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what: str) -> None:
        """Raise the right outcome if the server has exited."""
        if self.proc is None or self.proc.poll() is None:
            return
        if self.proc.returncode == EXIT_CONFIG:
            raise Unavailable(self.last_line() or "the server refused this configuration")
        raise self.failure(f"{what} (exit status {self.proc.returncode})")

    def usage(self) -> Usage | None:
        """Resident memory and thread count of the server's whole process group, now."""
        if self.proc is None:
            return None
        return group_usage(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after a grace period; never raises."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_GRACE_S)
                break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers that outlived their parent

    def failure(self, reason: str) -> ServerFailed:
        """A ServerFailed whose message ends with the server's last log line."""
        last = self.last_line()
        return ServerFailed(f"{reason}: {last}" if last else reason)

    def last_line(self) -> str:
        """The last non-empty line the server wrote (usually why it stopped)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:160] if lines else ""


def group_usage(pgid: int) -> Usage | None:
    """Sum VmRSS and Threads over the processes of one process group (Linux /proc)."""
    rss_kb = threads = 0
    found = False
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, IndexError, ValueError):
            continue  # the process went away meanwhile
        found = True
        rss_kb += int(status.get("VmRSS", "0 kB").split()[0])
        threads += int(status.get("Threads", "0").split()[0])
    return Usage(round(rss_kb / 1024, 2), threads) if found else None


def probe_http(port: int, exact: bool = True) -> str:
    """One GET; '' when fine. A bench app must say hello; a user's app must not fail (5xx)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"probe failed: {exc!r}"
    finally:
        conn.close()
    if exact and (resp.status != 200 or body != HELLO):
        return f"probe got {resp.status} {body[:40]!r}"
    if resp.status >= 500:
        return f"probe got {resp.status} {body[:40]!r}"
    return ""


def probe_ws(port: int, exact: bool = True) -> str:
    """Handshake and one echo; a refused Upgrade means the server has no WebSocket support."""
    key = wsframes.new_key()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(wsframes.handshake_request(f"127.0.0.1:{port}", "/", key))
            head, rest = _read_head(sock)
            if not head.startswith(b"HTTP/1.1 101"):
                status = head.split(b"\r\n", 1)[0].decode("latin-1")
                return f"unavailable: the server answered the WebSocket Upgrade with {status!r}"
            sock.sendall(wsframes.encode(wsframes.OP_TEXT, b"probe", os.urandom(4)))
            buffer = bytearray(rest)
            while not (frames := wsframes.decode(buffer)):
                chunk = sock.recv(4096)
                if not chunk:
                    return "probe: connection closed before the echo"
                buffer += chunk
    except OSError as exc:
        return f"probe failed: {exc!r}"
    if exact and frames[0][2] != b"probe":
        return f"probe: echo was {frames[0][2][:40]!r}"
    return ""


def probe_raw(port: int, exact: bool = False) -> str:
    """The tutorial's exchange: send a line, expect some reply (or a clean close)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(b"hello from threadloom bench\n")
            if not sock.recv(4096):
                return "probe: the handler closed without replying"
    except OSError as exc:
        return f"probe failed: {exc!r}"
    return ""


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
