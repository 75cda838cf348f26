"""Overload: what happens to requests when more arrive than the server can serve.

Issue 17 asks that at four times the connections a server serves promptly, requests are
either served with a bounded p99 or refused at once with 503, never left waiting until the
client gives up. A CPU-bound app (about 10 ms of work a request, so one core serves
about 100 a second; WSGI, or ASGI under ``--model asyncio``) is served by ``threadloom
--model pool`` (or ``--model``'s) pinned to CPU 0; clients on
CPU 1 keep N keep-alive connections busy, one request in flight on each, reconnecting a
second after a 503 (the server closes the connection with it; its Retry-After says 1).
For each setting the table gives what was served, how long the served requests took (p50,
p99, max) and what was refused and how fast, after a warm-up. A client gives up after
``--client-timeout`` (10 s), counted as "gave up".

    .venv/bin/python benchmarks/overload.py                         # 64, 256, 1024 connections
    .venv/bin/python benchmarks/overload.py --connections 256 --flags "--max-queue-wait 0.5"
    .venv/bin/python benchmarks/overload.py --model asyncio --flags "" --flags "--max-queue-wait 0"

Latencies are measured by the clients, per request, from the write of the request to the
last byte of the response; wrk cannot split them by status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = """
def work():
    total = 0
    for i in range(WORK):
        total += i * i
    return total

WORK = {work}

def app(environ, start_response):
    body = b"%d" % (work() & 0xFFFF)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"%d" % (work() & 0xFFFF)
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body}})
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RETRY_AFTER_S = 1.0  # threadloom's 503 says Retry-After: 1, and these clients honour it


@dataclass
class Tally:
    """What the clients saw in one run."""

    served: list[float] = field(default_factory=list)  # seconds, 200s
    refused: list[float] = field(default_factory=list)  # seconds, 503s
    other: int = 0
    gave_up: int = 0


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of one response, read whole (Content-Length framing)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def client(port: int, start: float, end: float, timeout: float, tally: Tally) -> None:
    """One connection's worth of load: request after request until `end`, counted from
    `start` (what came before is warm-up: every connection arriving at once, and a server
    that has not yet seen how long a request takes)."""
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < end:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.monotonic()
            writer.write(REQUEST)
            status = await asyncio.wait_for(read_response(reader), timeout)
        except TimeoutError:
            tally.gave_up += 1
            status = 0
        except (OSError, asyncio.IncompleteReadError):
            status = -1
        took = time.monotonic() - began if status > 0 else 0.0
        if began < start:
            status = status if status in (200, 503) else -1
            if status == 200:
                continue
            if status == 503:
                await asyncio.sleep(RETRY_AFTER_S)
            if writer is not None:
                writer.close()
                writer = None
            continue
        if status == 200:
            tally.served.append(took)
            continue
        if status == 503:
            tally.refused.append(took)
            await asyncio.sleep(RETRY_AFTER_S)  # as its Retry-After says
        elif status != 0:
            tally.other += 1
        if writer is not None:
            writer.close()
            writer = None
        if status == -1:
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(
    workdir: Path, port: int, flags: str, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    app = "cpu_app:asgi_app" if args.interface == "asgi" else "cpu_app:app"
    command = [
        "taskset", "-c", "0", str(ROOT / ".venv" / "bin" / "python"), "-m", "threadloom",
        "serve", app, "--model", args.model, "--threads", "4", "--no-access-log",
        "--bind", f"127.0.0.1:{port}", *shlex.split(flags),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(workdir))
    with open(workdir / f"server-{port}.log", "wb") as log:  # (a pipe nobody reads fills)
        proc = subprocess.Popen(command, cwd=workdir, env=env, stderr=log)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.communicate()
    text = (workdir / f"server-{port}.log").read_text(errors="replace")
    raise SystemExit(f"the server did not start: {text[-500:]}")


def run(workdir: Path, connections: int, flags: str, args: argparse.Namespace) -> Tally:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start_server(workdir, port, flags, args)
    tally = Tally()
    try:
        os.sched_setaffinity(0, {1})
        start = time.monotonic() + args.warmup
        end = start + args.duration

        async def load() -> None:
            timeout = args.client_timeout
            await asyncio.gather(
                *(client(port, start, end, timeout, tally) for _ in range(connections))
            )

        asyncio.run(load())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # (a thousand threads computing drain slowly)
            proc.kill()
            proc.communicate()
        lines = (workdir / f"server-{port}.log").read_text(errors="replace").splitlines()
        print(f"({connections}, {flags or 'defaults'}: the server logged {len(lines)} lines)",
              file=sys.stderr)  # fmt: skip
    return tally


def row(connections: int, flags: str, tally: Tally, duration: float) -> str:
    ms = 1000.0
    served, refused = tally.served, tally.refused
    return (
        f"| {connections} | `{flags or '(defaults)'}` | {len(served) / duration:.0f} "
        f"| {quantile(served, 0.5) * ms:.0f} | {quantile(served, 0.99) * ms:.0f} "
        f"| {max(served, default=float('nan')) * ms:.0f} | {len(refused)} "
        f"| {quantile(refused, 0.99) * ms:.1f} | {tally.gave_up} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, action="append")
    parser.add_argument("--flags", action="append", help="threadloom flags, one set a run")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--client-timeout", type=float, default=10.0)
    parser.add_argument("--work", type=int, default=150_000, help="loop turns a request")
    parser.add_argument("--model", default="pool", choices=("pool", "asyncio", "threads"))
    parser.add_argument(
        "--interface", choices=("wsgi", "asgi"), help="default: asgi under asyncio, else wsgi"
    )
    args = parser.parse_args()
    if args.interface is None:
        args.interface = "asgi" if args.model == "asyncio" else "wsgi"
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        (workdir / "cpu_app.py").write_text(APP.format(work=args.work))
        print(
            "| connections | flags | served/s | p50 ms | p99 ms | max ms | 503s | 503 p99 ms "
            "| gave up |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            flush=True,
        )
        for connections in args.connections or [64, 256, 1024]:
            for flags in args.flags or [""]:
                tally = run(workdir, connections, flags, args)
                print(row(connections, flags, tally, args.duration), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
