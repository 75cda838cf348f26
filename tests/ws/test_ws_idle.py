"""5,000 idle WebSockets held by one asyncio server process, with its memory per connection.

The server runs as a real `threadloom` process (so its RSS is its own); the clients are
asyncio `websockets` connections in this process. The figure is printed with the test
output and is not asserted beyond a sanity bound: speed and size claims live in
BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.cli.test_cli import free_port, threadloom, wait_listening

IDLE = 5000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def hold_idle(port: int, count: int, pid: int) -> tuple[int, int]:
    """Open ``count`` WebSockets, check a few still echo, return RSS before and after (KiB)."""
    before = rss_kib(pid)
    url = f"ws://127.0.0.1:{port}/"
    sockets = []
    for _ in range(0, count, 250):  # in waves: the listen backlog stays small
        wave = [connect(url, compression=None, ping_interval=None) for _n in range(250)]
        sockets += await asyncio.gather(*wave)
    await asyncio.sleep(0.5)
    after = rss_kib(pid)
    for ws in (sockets[0], sockets[count // 2], sockets[-1]):
        await ws.send("still there?")
        assert await ws.recv() == "still there?"
    await asyncio.gather(*(ws.close() for ws in sockets))
    return before, after


@pytest.mark.slow
def test_5000_idle_websockets_under_asyncio() -> None:
    port = free_port()
    cwd = Path(__file__).parent
    proc = threadloom(
        "serve",
        "handlers:async_echo",
        "--model",
        "asyncio",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-access-log",
        "--max-connections",
        str(IDLE + 100),
        cwd=cwd,
    )
    try:
        wait_listening(port, proc)
        before, after = asyncio.run(hold_idle(port, IDLE, proc.pid))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    per_connection = (after - before) * 1024 / IDLE
    print(
        f"\n{IDLE} idle WebSockets under asyncio: server RSS {before / 1024:.1f} MiB -> "
        f"{after / 1024:.1f} MiB, {per_connection / 1024:.1f} KiB per connection",
        file=sys.stderr,
    )
    assert proc.returncode == 0
    assert per_connection < 256 * 1024  # a leak or a per-connection thread would show here
