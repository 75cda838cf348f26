"""Memory per idle WebSocket, per model: the server's RSS before and after N idle sockets.

    .venv/bin/python benchmarks/ws_idle.py              # 1000 sockets per model
    .venv/bin/python benchmarks/ws_idle.py --count 5000 --models asyncio

Each model serves the echo handler (sync under threads and pool, async under asyncio) as a
real `threadloom` process; this script opens ``--count`` WebSockets (no compression, no
pings), waits half a second, reads the server's VmRSS, checks that a few still echo, and
closes them. Sync models hold a thread per open socket (pool: `--threads` is raised to the
count), so their figure includes a thread stack's resident pages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

HANDLERS = """
async def async_echo(ws):
    async for m in ws:
        await ws.send(m)

def echo(ws):
    for m in ws:
        ws.send(m)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold(port: int, count: int, pid: int) -> tuple[int, int]:
    before = rss_kib(pid)
    url = f"ws://127.0.0.1:{port}/"
    sockets = []
    for _ in range(0, count, 200):
        wave = [connect(url, compression=None, ping_interval=None) for _n in range(200)]
        sockets += await asyncio.gather(*wave)
    await asyncio.sleep(0.5)
    after = rss_kib(pid)
    for ws in (sockets[0], sockets[-1]):
        await ws.send("still there?")
        assert await ws.recv() == "still there?"
    await asyncio.gather(*(ws.close() for ws in sockets))
    return before, after


def measure(model: str, count: int, app_dir: str) -> tuple[int, int]:
    port = free_port()
    handler = "handlers:async_echo" if model == "asyncio" else "handlers:echo"
    command = [
        sys.executable,
        "-m",
        "threadloom",
        "serve",
        handler,
        "--model",
        model,
        "--bind",
        f"127.0.0.1:{port}",
        "--no-access-log",
        "--threads",
        str(count + 10),
        "--max-connections",
        str(count + 100),
    ]
    proc = subprocess.Popen(command, cwd=app_dir, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        return asyncio.run(hold(port, count, proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--models", default="asyncio,threads,pool")
    args = parser.parse_args()
    print(
        f"{args.count} idle WebSockets per model, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| model | RSS before | RSS with the sockets open | per socket |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "handlers.py").write_text(HANDLERS)
        for model in args.models.split(","):
            before, after = measure(model, args.count, app_dir)
            per = (after - before) / args.count
            print(f"| {model} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {per:.1f} KiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
