"""Soak: memory and threads of a server over time under a mixed load, or after a million
short connections. The long versions of what tests/adversarial checks briefly in CI.

    .venv/bin/python benchmarks/soak.py --model pool --minutes 10
    .venv/bin/python benchmarks/soak.py --model threads --short 1000000
    .venv/bin/python benchmarks/soak.py --model asyncio --minutes 2 --json out.json

``--minutes``: ``--clients`` client processes of 32 connections each drive a mix for that
long: keep-alive GETs, POSTs with a 4 KiB body, requests with ``Connection: close``,
connections reset in the middle of a request, and a 32 MiB download abandoned after its
first bytes. The server's resident memory, threads and descriptors are sampled every
``--every`` seconds; the report gives the samples, the requests served and the memory
slope over the second half (KiB per minute: about 0 when memory is flat).

``--short N``: N connections, one request each (``Connection: close``), as fast as the
clients go; memory and threads are sampled the same way (bpo-37193: CPython's
ThreadingMixIn once kept every finished thread). Use ``--unix`` to go through a unix socket
and spare the kernel's TIME_WAIT ports.

The server is ``python -m threadloom serve tests.adversarial.apps:router`` in its own
process; the figures in RELIABILITY.md came from this script (command and machine noted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.adversarial.support import ServerProcess  # noqa: E402 - needs the path above
from threadloom.config import MODELS  # noqa: E402 - as above

APP = "tests.adversarial.apps:router"
CONNECTIONS_PER_CLIENT = 32


# -- the load (client processes) ------------------------------------------------------------


async def _open(target: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(target, str):
        return await asyncio.open_unix_connection(target)
    return await asyncio.open_connection(*target)


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length body; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return status


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(1, 13, struct.pack("ii", 1, 0))  # SO_LINGER 0: close with an RST
    writer.transport.abort()


async def _one_mixed(target: Any, rng: random.Random) -> int:
    """One connection of the mix; the number of requests answered."""
    reader, writer = await _open(target)
    try:
        kind = rng.random()
        if kind < 0.05:  # reset in the middle of a request body
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\npart")
            await writer.drain()
            _reset(writer)
            return 0
        if kind < 0.07:  # a big download abandoned after its first bytes
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.read(65536)
            _reset(writer)
            return 1
        served = 0
        for n in range(rng.randint(1, 20)):
            close = kind < 0.3 and n == 0
            if rng.random() < 0.3:
                body = os.urandom(4096)
                writer.write(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n%s\r\n%s"
                    % (b"Connection: close\r\n" if close else b"", body)
                )
            else:
                writer.write(
                    b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n"
                    % (b"Connection: close\r\n" if close else b"")
                )
            await _response(reader)
            served += 1
            if close:
                break
        return served
    finally:
        writer.close()


async def _one_short(target: Any) -> int:
    reader, writer = await _open(target)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return 1 if await _response(reader) == 200 else 0
    finally:
        writer.close()


async def _drive(target: Any, until: float, budget: Any, counter: Any, seed: int) -> None:
    rng = random.Random(seed)

    async def lane() -> None:
        while time.monotonic() < until:
            if budget is not None:
                with budget.get_lock():
                    if budget.value <= 0:
                        return
                    budget.value -= 1
            try:
                done = await (_one_short(target) if budget is not None else _one_mixed(target, rng))
            except (OSError, asyncio.IncompleteReadError):
                done = 0
            with counter.get_lock():
                counter.value += done

    await asyncio.gather(*(lane() for _ in range(CONNECTIONS_PER_CLIENT)))


def _client(target: Any, until: float, budget: Any, counter: Any, seed: int) -> None:
    asyncio.run(_drive(target, until, budget, counter, seed))


# -- the measurement ---------------------------------------------------------------------


def _sample(server: ServerProcess, started: float, served: int) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - started, 1),
        "served": served,
        "rss_mib": round(server.rss_kib() / 1024, 1),
        "threads": server.threads(),
        "fds": server.fds(),
    }


def _slope(samples: list[dict[str, Any]]) -> float:
    """Least-squares slope of RSS over the second half, in KiB per minute."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return 0.0
    xs = [s["t"] / 60 for s in half]
    ys = [s["rss_mib"] * 1024 for s in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def soak(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--timeout-io", "5"]
    with tempfile.TemporaryDirectory() as tmp:
        bind = ["--bind", f"unix:{tmp}/soak.sock"] if args.unix else []
        with ServerProcess(APP, args.model, *extra, *bind) as server:
            target: Any = f"{tmp}/soak.sock" if args.unix else server.address
            return _run_load(args, server, target)


def _run_load(args: argparse.Namespace, server: ServerProcess, target: Any) -> dict[str, Any]:
    counter = multiprocessing.Value("q", 0)
    budget = multiprocessing.Value("q", args.short) if args.short else None
    seconds = args.minutes * 60 if not args.short else 24 * 3600
    started = time.monotonic()
    until = started + seconds
    clients = [
        multiprocessing.Process(target=_client, args=(target, until, budget, counter, n))
        for n in range(args.clients)
    ]
    for client in clients:
        client.start()
    samples = [_sample(server, started, 0)]
    while any(c.is_alive() for c in clients):
        for client in clients:
            client.join(timeout=args.every / len(clients))
        samples.append(_sample(server, started, counter.value))
        print(json.dumps(samples[-1]), flush=True)
    elapsed = time.monotonic() - started
    return {
        "model": args.model,
        "mode": f"short {args.short}" if args.short else f"mixed {args.minutes} min",
        "clients": args.clients * CONNECTIONS_PER_CLIENT,
        "served": counter.value,
        "per_second": round(counter.value / elapsed),
        "rss_first_mib": samples[1]["rss_mib"] if len(samples) > 1 else samples[0]["rss_mib"],
        "rss_last_mib": samples[-1]["rss_mib"],
        "rss_slope_kib_per_min": round(_slope(samples), 1),
        "threads_max": max(s["threads"] for s in samples),
        "threads_last": samples[-1]["threads"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pool", choices=tuple(MODELS))
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the mixed soak")
    parser.add_argument("--short", type=int, default=0, help="N short connections instead")
    parser.add_argument("--clients", type=int, default=2, help="client processes (x32 lanes)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--unix", action="store_true", help="through a unix socket")
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    result = soak(args)
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
