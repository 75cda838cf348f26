"""The built-in load generator: closed-loop HTTP, WebSocket and raw-TCP clients on one loop.

Used when ``wrk`` is not installed, and always for what wrk cannot do (WebSocket, raw TCP, the
idle workload). Each of ``connections`` virtual users keeps exactly one request in flight: send,
wait for the whole answer, record the latency, send the next. That is how wrk loads a server
too, so the two generators measure the same thing; this one is slower, which is why the bench
measures its ceiling against a do-nothing responder and says so when a server reaches it.

It runs as its own process, pinned away from the server: ``python -m threadloom.bench.loadgen
MODE ...`` for one load, or ``serve`` to take loads as JSON lines on stdin for a whole bench.
Each load prints one ``BENCH_JSON {...}`` line with the same fields as the bench's wrk script,
plus ``answered`` (connections that got at least one answer in the window) and ``starved``
(connections that got none within the timeout while others did: the ``single`` model does that
to all but one, and so does ``pool`` to WebSockets beyond its threads).

The idle mode opens ``connections`` keep-alive connections, makes one request on each, prints
``HELD n`` (n of them answered), waits for a line on stdin (the bench samples the server's
memory meanwhile), and then measures with one more client, ``--rounds`` times, while the others
stay idle; it prints one line per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from threadloom.bench.clients import HttpUser, RawUser, Tally, User, WsUser

JSON_MARKER = "BENCH_JSON "
ERROR_MARKER = "BENCH_ERROR "
END_MARKER = "BENCH_END"
HELD_MARKER = "HELD "
MODES = ("http", "ws", "raw", "idle")


async def _keep_connected(make: Callable[[], User], tally: Tally, host: str, port: int) -> None:
    """One virtual user: connect, run until the connection ends, reconnect until the stop."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < tally.end_at:
        try:
            _, user = await loop.create_connection(make, host, port)
        except OSError:
            tally.errors["connect"] += 1
            await asyncio.sleep(0.01)  # back off: a refused connect returns at once
            continue
        await user.closed


async def _watch_timeouts(tally: Tally) -> None:
    """Count each request that has waited longer than the timeout, once, as wrk does."""
    while time.perf_counter() < tally.stop_at:
        now = time.perf_counter()
        for user in list(tally.live):
            if user.sent_at and not user.timed_out and now - user.sent_at > tally.timeout:
                user.timed_out = True
                tally.errors["timeout"] += 1
        await asyncio.sleep(0.1)


def _factory(mode: str, tally: Tally, slot: int, host: str, port: int, path: str) -> User:
    if mode == "ws":
        return WsUser(tally, slot, f"{host}:{port}", path)
    if mode == "raw":
        return RawUser(tally, slot)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    return HttpUser(tally, slot, request)


async def run_load(
    mode: str,
    host: str,
    port: int,
    connections: int,
    duration: float,
    timeout: float = 2.0,
    path: str = "/",
    watch: bool = True,
) -> dict[str, Any]:
    """Load a server for ``duration`` seconds and summarise, in the wrk script's shape.

    If some connections got no answer in the window while others did (and ``watch``), the
    same load goes on
    (its figures no longer counted) until they get one or ``timeout`` seconds have passed
    since the start: a server that is only slow to take new connections answers them in the
    end, one that starves them does not. Those left are reported as ``starved``.
    """
    start = time.perf_counter()
    tally = Tally(stop_at=start + duration, timeout=timeout)
    users = [
        _keep_connected(partial(_factory, mode, tally, slot, host, port, path), tally, host, port)
        for slot in range(connections)
    ]
    tasks = [asyncio.ensure_future(u) for u in [*users, _watch_timeouts(tally)]]
    await asyncio.sleep(max(0.0, tally.stop_at - time.perf_counter()))
    while watch and 0 < len(tally.ever) < connections and time.perf_counter() < start + timeout:
        await asyncio.sleep(0.02)
    tally.end_at = time.perf_counter()
    _finish(tally)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = summarise(tally, duration, connections)
    # Unwatched, a connection unanswered in the window proves nothing: starved is unknown.
    result["starved"] = (connections - len(tally.ever) if tally.ever else 0) if watch else None
    return result


def _finish(tally: Tally) -> None:
    """At the stop: requests still waiting past the timeout count as timeouts; hang up."""
    now = time.perf_counter()
    for user in list(tally.live):
        if user.sent_at and not user.timed_out and now - user.sent_at > tally.timeout:
            tally.errors["timeout"] += 1
        user.sent_at = 0.0
        if user.transport is not None:
            user.transport.abort()


def summarise(tally: Tally, duration: float, connections: int) -> dict[str, Any]:
    """Requests per second and latency percentiles in milliseconds, like the wrk script."""
    lat = sorted(tally.latencies)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None

    return {
        "requests": len(lat),
        "duration_s": round(duration, 6),
        "requests_per_s": round(len(lat) / duration, 2),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "mean_ms": round(sum(lat) / len(lat) * 1000, 3) if lat else None,
        "errors": {k: v for k, v in tally.errors.items() if k != "status"},
        "non_2xx": tally.errors["status"],
        "connections": connections,
        "answered": len(tally.answered),
    }


async def run_idle(
    host: str, port: int, idle: int, duration: float, timeout: float = 2.0, rounds: int = 1
) -> list[dict[str, Any]]:
    """Hold ``idle`` keep-alive connections (each answered once), then measure one more client
    for ``rounds`` windows while they stay open. If some never got their first answer, one
    window is enough to show what the measuring client gets."""
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    held = Tally(stop_at=float("inf"), timeout=timeout)
    loop = asyncio.get_running_loop()
    users = [
        asyncio.ensure_future(
            _keep_connected(partial(HttpUser, held, slot, request, 1), held, host, port)
        )
        for slot in range(idle)
    ]
    deadline = loop.time() + timeout + idle / 500
    while len(held.answered) < idle and loop.time() < deadline:
        await asyncio.sleep(0.02)
    answered = len(held.answered)
    print(f"{HELD_MARKER}{answered}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    results = []
    for _ in range(rounds if answered == idle else 1):
        result = await run_load("http", host, port, 1, duration, timeout)
        results.append(dict(result, idle=idle, idle_answered=answered))
    held.stop_at = held.end_at = 0.0
    for user in list(held.live):
        if user.transport is not None:
            user.transport.abort()
    for task in users:
        task.cancel()
    await asyncio.gather(*users, return_exceptions=True)
    return results


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """uvloop when installed (a faster client measures more), else the default loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional accelerator
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m threadloom.bench.loadgen")
    parser.add_argument("mode", choices=(*MODES, "serve"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rounds", type=int, default=1, help="idle: measuring windows")
    return parser.parse_args(argv)


async def run_command(command: dict[str, Any]) -> list[dict[str, Any]]:
    """One load, described as the ``serve`` mode receives it (the CLI's flags, as JSON)."""
    mode, host, port = command["mode"], command.get("host", "127.0.0.1"), command["port"]
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    connections, duration = command["connections"], command["duration"]
    timeout = command.get("timeout", 2.0)
    if mode == "idle":
        return await run_idle(host, port, connections, duration, timeout, command.get("rounds", 1))
    path, watch = command.get("path", "/"), command.get("watch", True)
    return [await run_load(mode, host, port, connections, duration, timeout, path, watch)]


def serve(runner: asyncio.Runner, loop_name: str) -> None:
    """Run loads as commands arrive on stdin, one JSON object a line, until EOF.

    Each load answers with its ``BENCH_JSON`` lines (or one ``BENCH_ERROR`` line), then
    ``BENCH_END``. Kept alive for a whole bench, the generator costs no interpreter start per
    round; the bench still reads each round's figures on their own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's; it closes stdin
    for line in iter(sys.stdin.readline, ""):
        if not line.strip():
            continue
        try:
            results = runner.run(run_command(json.loads(line)))
        except Exception as exc:
            print(f"{ERROR_MARKER}{type(exc).__name__}: {exc}", flush=True)
        else:
            for result in results:
                print(JSON_MARKER + json.dumps(dict(result, loop=loop_name)), flush=True)
        print(END_MARKER, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run one load (idle: one per round) and print a ``BENCH_JSON`` line for each, or
    ``serve`` loads read from stdin."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    factory, loop_name = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        if args.mode == "serve":
            serve(runner, loop_name)
            return 0
        results = runner.run(run_command(vars(args)))
    for result in results:
        print(JSON_MARKER + json.dumps(dict(result, loop=loop_name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
