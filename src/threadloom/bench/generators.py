"""Load generation: wrk for HTTP when it is installed, the built-in client otherwise.

Both end each load with ``BENCH_JSON`` lines of the same fields (requests/s, p50/p90/p99/max/
mean in ms, socket errors, responses of 400 and up), so the runner never cares which one
produced a figure. The built-in client also covers what wrk cannot: WebSocket, raw TCP and the
idle workload. It lives for the whole bench as one process fed loads on stdin, so a round
costs no interpreter start. Both run on the CPUs of the process that starts them: the bench
pins itself to the load CPUs first.

A load in progress is a :class:`Load`: the runner starts it, samples the server while it
runs, then reads its results.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import subprocess
import sys
import threading
import time
from importlib import resources
from types import TracebackType
from typing import Any, Protocol

from threadloom.bench.loadgen import (
    END_MARKER,
    ERROR_MARKER,
    HELD_MARKER,
    JSON_MARKER,
    loop_factory,
)
from threadloom.bench.machine import CpuSplit

GRACE_S = 30.0  # beyond the load's own duration, before a silent generator counts as hung


class LoadFailed(Exception):
    """The load generator itself failed (not the server): the message says how."""


class Load(Protocol):
    """One load in progress."""

    def held(self) -> int:
        """Idle only: wait until the idle connections are open; how many got an answer."""

    def go(self) -> None:
        """Idle only: start measuring."""

    def results(self, wait: float) -> list[dict[str, Any]]:
        """Wait up to ``wait`` (plus a grace) for the figures, one dict per round."""


def wrk_script() -> str:
    """Path of the package's wrk reporter script."""
    return str(resources.files("threadloom.bench").joinpath("wrk_report.lua"))


def wrk_version(path: str) -> str:
    """``wrk 4.1.0``-style version (wrk -v prints it and exits 1)."""
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "wrk"
    words = (out.stdout + out.stderr).split()
    return " ".join(words[:2]) if words else "wrk"


def _parse_json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[len(JSON_MARKER) :]) for line in lines if line.startswith(JSON_MARKER)]


class ToolLoad:
    """One load-generating tool's process (wrk, h2load): started at once, its figures read
    from its output when it ends (:meth:`figures`, per tool)."""

    name = "tool"

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def held(self) -> int:
        raise LoadFailed(f"{self.name} has no idle mode")

    def go(self) -> None:
        return None

    def results(self, wait: float) -> list[dict[str, Any]]:
        try:
            out, err = self.proc.communicate(timeout=wait + GRACE_S)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.communicate()
            raise LoadFailed(f"{self.name} hung") from exc
        results = self.figures(out)
        if self.proc.returncode != 0 or not results:
            tail = (err or out).strip().splitlines()
            last = tail[-1] if tail else ""
            raise LoadFailed(f"{self.name} exit {self.proc.returncode}: {last}")
        return results

    def figures(self, out: str) -> list[dict[str, Any]]:
        raise NotImplementedError


class WrkLoad(ToolLoad):
    """One wrk process (its figures: the package's reporter script's JSON lines)."""

    name = "wrk"

    def figures(self, out: str) -> list[dict[str, Any]]:
        return _parse_json_lines(out.splitlines())


class H2Load(ToolLoad):
    """One h2load process (nghttp2's load generator): HTTP/2 by prior knowledge, 10 streams
    in flight per connection, as the published HTTP/2 comparisons run it."""

    name = "h2load"

    def figures(self, out: str) -> list[dict[str, Any]]:
        figures = parse_h2load(out)
        return [] if figures is None else [figures]


def parse_h2load(out: str) -> dict[str, Any] | None:
    """The figures the report needs from h2load's summary (None if it has none)."""
    rps = seconds = None
    done = failed = errored = timeouts = non_2xx = 0
    latency: dict[str, float] = {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("finished in") and len(words) >= 4:
            seconds = _seconds(words[2].rstrip(","))
            rps = float(words[3])
        elif line.startswith("requests:"):
            numbers = [int(w) for w in words if w.isdigit()]
            if len(numbers) >= 7:
                _, _, done, _, failed, errored, timeouts = numbers[:7]
        elif line.startswith("status codes:"):
            numbers = [int(w) for w in words if w.isdigit()]
            non_2xx = sum(numbers[1:]) if numbers else 0
        elif line.startswith("time for request:") and len(words) >= 6:
            latency = {"min": _ms(words[3]), "max": _ms(words[4]), "mean": _ms(words[5])}
    if rps is None or seconds is None:
        return None
    return {
        "requests": done,
        "duration_s": seconds,
        "requests_per_s": rps,
        "p50_ms": latency.get("mean", 0.0),  # h2load gives no percentiles: the mean
        "p90_ms": latency.get("mean", 0.0),
        "p99_ms": latency.get("max", 0.0),
        "max_ms": latency.get("max", 0.0),
        "mean_ms": latency.get("mean", 0.0),
        "errors": {"connect": errored, "read": failed - errored, "write": 0, "timeout": timeouts},
        "non_2xx": non_2xx,
    }


def _seconds(text: str) -> float:
    for unit, scale in (("ms", 0.001), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def _ms(text: str) -> float:
    return _seconds(text) * 1000.0


class BuiltinClient:
    """The built-in generator as one long-lived process (``loadgen serve``).

    A reader thread moves its output lines to a queue so that every wait has a deadline; a
    generator that stops answering is killed and started afresh for the next load.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader: threading.Thread | None = None

    def send(self, line: str) -> None:
        """Write one line to the generator, starting it first if needed."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _start(self) -> None:
        self.close()
        self.lines = queue.Queue()
        argv = [sys.executable, "-m", "threadloom.bench.loadgen", "serve"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.reader = threading.Thread(
            target=self._read, args=(self.proc, self.lines), name="threadloom-bench-loadgen"
        )
        self.reader.start()

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # end of output: the generator exited

    def next_line(self, deadline: float) -> str:
        """The generator's next line; LoadFailed if it exits or stays silent too long."""
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.close()
            raise LoadFailed("the built-in load generator hung") from None
        if line is None:
            self.close()
            raise LoadFailed("the built-in load generator exited")
        return line

    def close(self) -> None:
        """Stop the generator (end of its input, else a kill), then its reader."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
            self.reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


class BuiltinLoad:
    """One load handed to the long-lived built-in generator."""

    def __init__(self, client: BuiltinClient, command: dict[str, Any]) -> None:
        self.client = client
        self.started = time.monotonic()
        client.send(json.dumps(command))

    def held(self) -> int:
        line = self.client.next_line(time.monotonic() + GRACE_S)
        if not line.startswith(HELD_MARKER):
            raise LoadFailed(f"the built-in load generator said {line[:80]!r}")
        return int(line[len(HELD_MARKER) :])

    def go(self) -> None:
        self.client.send("go")

    def results(self, wait: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait + GRACE_S
        lines = []
        while (line := self.client.next_line(deadline)) != END_MARKER:
            lines.append(line)
        errors = [line for line in lines if line.startswith(ERROR_MARKER)]
        if errors:
            raise LoadFailed(errors[0][len(ERROR_MARKER) :])
        return _parse_json_lines(lines)


class Generator:
    """Which tool loads HTTP, and the built-in client for everything else (a context manager)."""

    def __init__(self, split: CpuSplit, wrk: str | None) -> None:
        self.split = split
        self.wrk = wrk  # wrk's path when it is the HTTP generator
        self.builtin = BuiltinClient()

    @classmethod
    def choose(cls, prefer: str, split: CpuSplit) -> Generator:
        """``auto``: wrk when on PATH; ``wrk`` requires it; ``builtin`` never uses it."""
        path = shutil.which("wrk") if prefer in ("auto", "wrk") else None
        if prefer == "wrk" and path is None:
            raise LoadFailed("--generator wrk: wrk is not on PATH")
        return cls(split, path)

    def __enter__(self) -> Generator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the built-in generator's process."""
        self.builtin.close()

    def describe(self) -> dict[str, Any]:
        """For the report: the HTTP generator and the built-in client's loop."""
        _, loop = loop_factory()
        http = wrk_version(self.wrk) if self.wrk else f"built-in ({loop})"
        return {"http": http, "other": f"built-in ({loop})", "threads": self.threads}

    @property
    def threads(self) -> int:
        """wrk threads: one per load CPU."""
        return max(1, len(self.split.load))

    def wrk_argv(self, port: int, connections: int, duration: float, timeout: float) -> list[str]:
        """wrk, keep-alive, whole seconds (all it takes), reporting through the package's script."""
        assert self.wrk is not None
        return [
            self.wrk, f"-t{min(self.threads, connections)}", f"-c{connections}",
            f"-d{max(1, math.ceil(duration))}s", f"--timeout={max(1, math.ceil(timeout))}s",
            "-s", wrk_script(), f"http://127.0.0.1:{port}/",
        ]  # fmt: skip

    def h2load_argv(self, port: int, connections: int, duration: float) -> list[str]:
        """h2load for ``duration`` seconds, 10 streams per connection (prior knowledge)."""
        path = shutil.which("h2load")
        if path is None:
            raise LoadFailed("the h2 workload needs h2load (apt-get install nghttp2-client)")
        return [
            path, f"-c{connections}", "-m10", f"-t{min(self.threads, connections)}",
            f"-D{max(1, math.ceil(duration))}", f"http://127.0.0.1:{port}/",
        ]  # fmt: skip

    def start(
        self,
        mode: str,
        port: int,
        connections: int,
        duration: float,
        timeout: float,
        rounds: int = 1,
        builtin: bool = False,
        watch: bool = True,
    ) -> Load:
        """Start one load on 127.0.0.1:port; the runner samples the server meanwhile.
        ``builtin`` asks for the built-in client even where wrk would do HTTP; ``watch`` lets
        it watch unanswered connections up to the timeout (see ``loadgen.run_load``)."""
        if mode == "http" and self.wrk and not builtin:
            return WrkLoad(self.wrk_argv(port, connections, duration, timeout))
        if mode == "h2":
            return H2Load(self.h2load_argv(port, connections, duration))
        command = {
            "mode": mode,
            "port": port,
            "connections": connections,
            "duration": duration,
            "timeout": timeout,
            "rounds": rounds,
            "watch": watch,
        }
        return BuiltinLoad(self.builtin, command)

    def run(
        self, mode: str, port: int, connections: int, duration: float, timeout: float
    ) -> dict[str, Any]:
        """Load once and return the generator's figures."""
        return self.start(mode, port, connections, duration, timeout).results(duration)[-1]
