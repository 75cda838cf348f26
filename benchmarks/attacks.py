"""The figures of RELIABILITY.md: each attack once per model, measured, in a table.

    .venv/bin/python benchmarks/attacks.py                 # every model, about 3 minutes
    .venv/bin/python benchmarks/attacks.py --models pool --json out.json

The tests in tests/adversarial assert the behaviour; this script reports the numbers (how
long a normal client waited, how long until the attackers were cut off, how much memory,
how fast service came back). Each server is ``python -m threadloom serve`` in a process of
its own, as in the tests; the load comes from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.adversarial import wsraw
from tests.adversarial.support import ServerProcess, served_within, spent_cpu
from tests.adversarial.test_flood import _burst
from tests.adversarial.test_slow_clients import Dribblers
from threadloom.testing import MODELS

APPS = "tests.adversarial.apps"


def _until_released(server: ServerProcess, sockets: int, limit: float) -> float:
    """Seconds until the server holds ``sockets`` sockets again (-1: not within limit)."""
    started = time.monotonic()
    while server.fds() > sockets:
        if time.monotonic() - started > limit:
            return -1.0
        time.sleep(0.05)
    return round(time.monotonic() - started, 2)


def slowloris(model: str, body: bool) -> dict[str, Any]:
    """200 dribbling heads (or bodies): a normal client's wait; time to cut them all off."""
    count = 2 if model == "single" else 200
    option = ["--timeout-io", "2"] if body else ["--timeout-header", "2"]
    first = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\na"
        if body
        else b"GET / HTTP/1.1\r\nHost: x\r\n"
    )
    with ServerProcess(f"{APPS}:router", model, *option) as server:
        served_within(server.address, 5)
        time.sleep(0.2)
        sockets = server.fds()
        group = Dribblers(server.address, count, first)
        started = time.monotonic()
        status, waited = served_within(server.address, 30)
        drip = b"b" if body else b"X-Drip: 1\r\n"
        while server.fds() > sockets and time.monotonic() - started < 60:
            group.drip(drip)
            time.sleep(0.25)
        cut = round(time.monotonic() - started, 2)
        group.close()
        return {
            "dribblers": count,
            "normal_status": status,
            "normal_wait_s": round(waited, 3),
            "all_cut_off_s": cut,
        }


def slow_readers(model: str) -> dict[str, Any]:
    """10 clients that never read 32 MiB each: peak memory growth, time to give up on them."""
    count = 1 if model == "single" else 10
    with ServerProcess(f"{APPS}:router", model, "--timeout-io", "2") as server:
        served_within(server.address, 5)
        time.sleep(0.2)
        sockets, peak = server.fds(), server.peak_kib()
        socks = []
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(server.address)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        time.sleep(0.3)
        released = _until_released(server, sockets, 60)
        grown = round((server.peak_kib() - peak) / 1024, 1)
        for sock in socks:
            sock.close()
        return {"readers": count, "peak_growth_mib": grown, "released_after_s": released}


def flood(model: str) -> dict[str, Any]:
    with ServerProcess(f"{APPS}:hello", model) as server:
        served_within(server.address, 5)
        started = time.monotonic()
        statuses = asyncio.run(_burst(server.address, 2000))
        took = round(time.monotonic() - started, 2)
        counts = {str(s): statuses.count(s) for s in sorted(set(statuses))}
        return {
            "connections": 2000,
            "answers": counts,
            "all_answered_s": took,
            "alive_after": served_within(server.address, 5)[0] == 200,
        }


def fd_exhaustion(model: str) -> dict[str, Any]:
    with ServerProcess(f"{APPS}:hello", model, "--timeout-header", "30") as server:
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (200, 200))
        clients = [socket.create_connection(server.address) for _ in range(300)]
        time.sleep(0.5)
        cpu = round(spent_cpu(server.pid, 1.0), 2)
        for client in clients:
            client.close()
        started = time.monotonic()
        status, _ = served_within(server.address, 10)
        return {
            "limit": 200,
            "clients": 300,
            "cpu_s_per_s_while_out": cpu,
            "recovered_s": round(time.monotonic() - started, 3),
            "status_after": status,
        }


def ws_bomb(model: str) -> dict[str, Any]:
    handler = "ws_echo_async" if model == "asyncio" else "ws_echo"
    bomb = wsraw.deflated(bytes(64 * 1024 * 1024))
    with ServerProcess(f"{APPS}:{handler}", model) as server:
        peak = server.peak_kib()
        sock = wsraw.handshake(server.address, deflate=True)
        started = time.monotonic()
        sock.sendall(wsraw.frame(0x2, bomb, rsv1=True))
        code = wsraw.close_code(sock)
        took = round(time.monotonic() - started, 3)
        sock.close()
        return {
            "inflates_to_mib": 64,
            "sent_kib": len(bomb) // 1024,
            "close_code": code,
            "closed_after_s": took,
            "peak_growth_mib": round((server.peak_kib() - peak) / 1024, 1),
        }


def shutdown(model: str) -> dict[str, Any]:
    """SIGTERM with open WebSockets and SSE streams (--graceful-timeout 2): exit times."""
    result: dict[str, Any] = {"graceful_timeout_s": 2}
    handler = "ws_listen_async" if model == "asyncio" else "ws_listen"
    count = 1 if model == "single" else 3
    with ServerProcess(f"{APPS}:{handler}", model, "--graceful-timeout", "2") as server:
        socks = [wsraw.handshake(server.address) for _ in range(count)]
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        codes = [wsraw.close_code(s) for s in socks]
        for sock in socks:
            sock.sendall(wsraw.frame(0x8, b"\x03\xe9"))
        server.wait(30)
        result["ws_close_codes"] = sorted(set(codes))
        result["ws_exit_s"] = round(time.monotonic() - started, 2)
        for sock in socks:
            sock.close()
    with ServerProcess(f"{APPS}:router", model, "--graceful-timeout", "2") as server:
        socks = []
        for _ in range(count):
            sock = socket.create_connection(server.address)
            sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(65536)
            socks.append(sock)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        status = server.wait(30)
        result["sse_exit_s"] = round(time.monotonic() - started, 2)
        result["sse_exit_status"] = status
        for sock in socks:
            sock.close()
    return result


ATTACKS: dict[str, Callable[[str], dict[str, Any]]] = {
    "slowloris": lambda m: slowloris(m, body=False),
    "slow_post": lambda m: slowloris(m, body=True),
    "slow_readers": slow_readers,
    "flood_2000": flood,
    "fd_exhaustion": fd_exhaustion,
    "ws_deflate_bomb": ws_bomb,
    "shutdown": shutdown,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}",
    }
    for attack in args.attacks.split(","):
        for model in args.models.split(","):
            figures = ATTACKS[attack](model)
            results[f"{attack}/{model}"] = figures
            print(f"{attack:16} {model:8} {json.dumps(figures)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
