"""Floods and running out of descriptors, under every model.

A burst of 2,000 connections at once: every one is answered (200, or 503 where a queue is
full) and the server is alive and back to its resting state after. With the descriptor
limit lowered to 200 and more clients than that, the accept loop backs off instead of
spinning, and service resumes once descriptors free up. The server runs in a process of its
own so that its CPU, descriptors and threads can be watched (and its limit lowered).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from collections.abc import Iterator

import pytest

from tests.adversarial.support import ServerProcess, served_within, spent_cpu, wait_until
from threadloom.testing import MODELS, timeout_factor

BURST = 2000
FD_LIMIT = 200


async def _one(host: str, port: int) -> int:
    """One client of the burst: the status it got (0: none, with the error's name)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        line = await reader.readline()
        return int(line.split()[1]) if line else 0
    except OSError:
        return 0
    finally:
        writer.close()


async def _burst(address: tuple[str, int], count: int) -> list[int]:
    clients = [_one(*address) for _ in range(count)]
    return await asyncio.wait_for(asyncio.gather(*clients), 120 * timeout_factor())


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server process per model for both attacks (each leaves it as it found it)."""
    with ServerProcess(
        "tests.adversarial.apps:hello", str(request.param), "--timeout-header", "30"
    ) as process:
        assert served_within(process.address, 5)[0] == 200
        yield process


@pytest.mark.slow
def test_burst_of_2000_connections_all_answered(server: ServerProcess) -> None:
    model = server.model
    time.sleep(0.2)
    fds, threads = server.fds(), server.threads()
    started = time.monotonic()
    statuses = asyncio.run(_burst(server.address, BURST))
    took = time.monotonic() - started
    counts = {s: statuses.count(s) for s in set(statuses)}
    assert set(counts) <= {200, 503}, f"{model}: {counts} in {took:.1f}s"
    assert counts.get(200, 0) > BURST // 2, counts
    wait_until(lambda: server.fds() <= fds, 10, "the connections to be released")
    # asyncio's pool for sync apps grows on demand up to --threads (10) and stays
    most = threads + (10 if model == "asyncio" else 0)
    wait_until(lambda: server.threads() <= most, 10, "the threads to end")
    assert served_within(server.address, 5)[0] == 200
    print(f"\n{model}: {BURST} connections at once: {counts} in {took:.2f}s")


@pytest.mark.slow
def test_out_of_descriptors_backs_off_and_recovers(server: ServerProcess) -> None:
    model = server.model
    soft, hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, hard))  # ulimit -Sn 200
    try:
        clients = [socket.create_connection(server.address) for _ in range(FD_LIMIT + 100)]
        try:
            time.sleep(0.5 * timeout_factor())  # let it accept all it can
            spent = spent_cpu(server.pid, 0.5)
            assert spent < 0.25, f"the accept loop spun: {spent:.2f}s of CPU in 0.5s"
            if model != "single":  # single holds one connection at a time: it never runs out
                assert "accept failed" in server.stderr
                assert len(os.listdir(f"/proc/{server.pid}/fd")) >= FD_LIMIT - 5
        finally:
            for client in clients:
                client.close()
        started = time.monotonic()
        status, _ = served_within(server.address, 10)
        assert status == 200, "service did not resume once descriptors were free"
        print(f"\n{model}: service back {time.monotonic() - started:.2f}s after the release")
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
