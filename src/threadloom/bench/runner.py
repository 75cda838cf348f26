"""Running the matrix: one server per model and workload, a warm-up, rounds, medians.

The method, which the report repeats:

* Every model runs as its own ``threadloom serve`` process, pinned away from the load.
* A warm-up of the same load, discarded, before each connection count. The built-in client
  runs it, so it also says which connections got no answer at all (wrk cannot).
* Then ``rounds`` measured runs of ``duration`` seconds; a row is the median of its rounds.
* A round with socket errors or error responses is ``errors``; one in which requests waited
  past the timeout, or some connections got no answer within it while others did (the
  built-in client watches for that), is ``timeout``. One bad round
  settles a row (later rounds would only refine a failure): it carries the median of its bad
  rounds, says so, and the verdicts never rank it with the rest. A server that will not start
  for this combination is ``unavailable``; one that crashes or answers wrongly is ``failed``.
* Server memory (RSS of every process of the server) and thread count are sampled halfway
  through each round.
* ``idle`` gets a fresh server per connection count, holds its idle connections once, samples
  memory while they are held, and measures the one client's rounds while they stay open: a
  second hold would reuse memory the allocator kept from the first (thread stacks above all).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from threadloom.bench.generators import Generator, LoadFailed
from threadloom.bench.machine import CpuSplit, popen_on
from threadloom.bench.plan import WORKERS, Plan, Workload, workers_supported
from threadloom.bench.servers import (
    ServerFailed,
    ServerProcess,
    Unavailable,
    free_port,
    serve_argv,
)
from threadloom.bench.workloads import spin
from threadloom.models import models_where

SEVERITY = ("failed", "errors", "timeout", "ok")
CLIENT_BOUND = 0.8  # a row at this share of the generator's ceiling may be client-bound
CEILING_CONNECTIONS = 64


class Progress(Protocol):
    """What the runner tells the display."""

    def step(self, text: str) -> None:
        """What is being measured now."""

    def row_done(self, row: dict[str, Any]) -> None:
        """One model x workload x connections cell is finished."""


@dataclass
class Context:
    """What every cell of one run shares."""

    plan: Plan
    generator: Generator
    split: CpuSplit
    log_dir: Path
    progress: Progress
    env: dict[str, str] = field(default_factory=dict)
    ceilings: dict[str, float] = field(default_factory=dict)


def calibrate_cpu_loops(target_s: float = 0.001) -> int:
    """Iterations of the ``cpu`` workload's loop that take about ``target_s`` here."""
    probe = 20_000
    best = min(_timed(lambda: spin(probe)) for _ in range(5))
    return max(1000, round(probe * target_s / best))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_ceilings(ctx: Context) -> dict[str, float]:
    """The generator's own limit for each kind of load in the plan, against a responder."""
    kinds = sorted({w.load for w in ctx.plan.workloads} & {"http", "ws"})
    ceilings: dict[str, float] = {}
    for kind in kinds:
        ctx.progress.step(f"measuring the load generator's ceiling ({kind})")
        try:
            ceilings[kind] = _ceiling(ctx, kind)
        except LoadFailed:
            continue
    return ceilings


def _ceiling(ctx: Context, kind: str) -> float:
    import subprocess  # noqa: PLC0415 - only this helper starts the responder
    import sys  # noqa: PLC0415

    port = free_port()
    argv = [sys.executable, "-m", "threadloom.bench.responder", "--port", str(port)]
    if kind == "ws":
        argv.append("--ws")
    responder = popen_on(ctx.split.server, argv, stdout=subprocess.DEVNULL)
    try:
        _wait_port(port)
        result = ctx.generator.run(
            kind, port, CEILING_CONNECTIONS, ctx.plan.duration, ctx.plan.timeout
        )
    finally:
        responder.kill()
        responder.wait()
    return float(result["requests_per_s"])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)  # a port that is not open yet: nothing to wait on but time
    raise LoadFailed("the responder did not start")


def run_matrix(ctx: Context) -> list[dict[str, Any]]:
    """Every model x workload x connections cell, in that nesting, as result rows."""
    rows: list[dict[str, Any]] = []
    for workload in ctx.plan.workloads:
        for model in ctx.plan.models:
            for row in _model_rows(ctx, workload, model):
                rows.append(row)
                ctx.progress.row_done(row)
    return rows


def _model_rows(ctx: Context, workload: Workload, model: str) -> list[dict[str, Any]]:
    why = _unavailable_reason(workload, model)
    if why:
        return [_row(model, workload, c, "unavailable", why) for c in ctx.plan.connections]
    if workload.load == "idle":
        return [_idle_row(ctx, workload, model, c) for c in ctx.plan.connections]
    return _loaded_rows(ctx, workload, model)


def _unavailable_reason(workload: Workload, model: str) -> str:
    if model == WORKERS and not workers_supported():
        return "needs --workers, which this threadloom serve does not have yet"
    if workload.app_for(model) is None:
        able = models_where(lambda cls: cls.runs_coroutines)
        return f"an async app runs only under the {' or '.join(able)} model{'s' * (len(able) > 1)}"
    return ""


def _row(
    model: str, workload: Workload, connections: int, status: str, note: str
) -> dict[str, Any]:
    """A row without figures: unavailable or failed before anything was measured."""
    return {
        "model": model,
        "workload": workload.name,
        "connections": connections,
        "status": status,
        "note": note,
        "rps": None,
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "errors": None,
        "rss_mb": None,
        "threads": None,
        "client_bound": False,
        "rounds": [],
    }


def worker_count(split: CpuSplit) -> int:
    """Processes of the ``workers`` model: one per server CPU, and never fewer than two."""
    return max(2, len(split.server))


def _start_server(ctx: Context, workload: Workload, model: str) -> ServerProcess:
    options = {"max-connections": str(max(1000, 2 * max(ctx.plan.connections) + 64))}
    options["workers"] = str(worker_count(ctx.split))
    if workload.load == "idle":
        options["timeout-keep-alive"] = "120"
    argv = serve_argv(model, workload, free_port(), options)
    server = ServerProcess(argv, ctx.split.server, ctx.log_dir, ctx.env)
    ctx.progress.step(f"{workload.name} · {model}: starting the server")
    try:
        server.start(workload)
    except BaseException:
        server.stop()
        raise
    return server


def _loaded_rows(ctx: Context, workload: Workload, model: str) -> list[dict[str, Any]]:
    connections = ctx.plan.connections
    try:
        server = _start_server(ctx, workload, model)
    except Unavailable as exc:
        return [_row(model, workload, c, "unavailable", str(exc)) for c in connections]
    except ServerFailed as exc:
        return [_row(model, workload, c, "failed", str(exc)) for c in connections]
    rows: list[dict[str, Any]] = []
    try:
        for c in connections:
            if not server.alive():
                rows.append(_row(model, workload, c, "failed", "the server died earlier"))
                continue
            rows.append(_loaded_cell(ctx, server, workload, model, c))
    finally:
        server.stop()
    return rows


def _loaded_cell(
    ctx: Context, server: ServerProcess, workload: Workload, model: str, connections: int
) -> dict[str, Any]:
    plan = ctx.plan
    label = f"{workload.name} · {model} · {connections} conn"
    try:
        ctx.progress.step(f"{label}: warm-up")
        warm = _warm_up(ctx, server, workload.load, connections)
        rounds: list[dict[str, Any]] = []
        while len(rounds) < plan.rounds and not (rounds and _any_bad([warm, *rounds])):
            ctx.progress.step(f"{label}: round {len(rounds) + 1}/{plan.rounds}")
            watch = warm["status"] == "ok"  # else the status is settled: figures only
            rounds.append(_round(ctx, server, workload.load, connections, watch))
            server.check_alive("died under load")
    except (LoadFailed, ServerFailed, Unavailable) as exc:
        return _row(model, workload, connections, "failed", str(exc))
    row = _combine(ctx, model, workload, connections, rounds)
    row["warmup"] = warm
    if warm["status"] != "ok" and row["status"] == "ok":
        row["status"], row["note"] = warm["status"], f"in the warm-up, {warm['note']}"
    return row


def _warm_up(ctx: Context, server: ServerProcess, mode: str, connections: int) -> dict[str, Any]:
    """The discarded warm-up, by the built-in client: it also tells which connections got no
    answer at all, which wrk's figures cannot, so a starving server is caught either way."""
    plan = ctx.plan
    load = ctx.generator.start(
        mode, server.port, connections, plan.warmup, plan.timeout, builtin=True
    )
    sample = load.results(plan.warmup)[-1]
    server.check_alive("died during the warm-up")
    return _judge(sample, connections, plan.timeout, None)


def _any_bad(rounds: list[dict[str, Any]]) -> bool:
    """One bad round settles a row's status: more rounds would only refine a failure."""
    return any(r["status"] != "ok" for r in rounds)


def _round(
    ctx: Context, server: ServerProcess, mode: str, connections: int, watch: bool = True
) -> dict[str, Any]:
    """One measured run, with the server's memory and threads sampled halfway through."""
    plan = ctx.plan
    load = ctx.generator.start(
        mode, server.port, connections, plan.duration, plan.timeout, watch=watch
    )
    time.sleep(plan.duration / 2)  # sample while the load is on
    usage = server.usage()
    sample = load.results(plan.duration)[-1]
    return _judge(sample, connections, plan.timeout, usage)


def _judge(sample: dict[str, Any], connections: int, timeout: float, usage: Any) -> dict[str, Any]:
    """Flatten one generator result and decide its status."""
    errors = sample["errors"]
    mean_ms = sample.get("mean_ms") or 0.0
    # Little's law: connections kept busy = throughput x mean latency. A fair server keeps
    # nearly all of them busy; a server that serves one connection at a time keeps one.
    busy = sample["requests_per_s"] * mean_ms / 1000
    r: dict[str, Any] = {
        "rps": sample["requests_per_s"],
        "p50_ms": sample.get("p50_ms"),
        "p90_ms": sample.get("p90_ms"),
        "p99_ms": sample.get("p99_ms"),
        "max_ms": sample.get("max_ms"),
        "mean_ms": sample.get("mean_ms"),
        "requests": sample["requests"],
        "errors": int(sum(errors.values()) + sample["non_2xx"]),
        "error_detail": dict(errors, non_2xx=sample["non_2xx"]),
        "answered": sample.get("answered"),
        "starved": sample.get("starved"),
        "busy_connections": round(busy, 2),
        "rss_mb": usage.rss_mb if usage else None,
        "threads": usage.threads if usage else None,
    }
    if not r["requests"]:  # wrk reports 0 ms percentiles when nothing came back
        r.update(p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None, mean_ms=None)
    r["status"], r["note"] = _status(r, connections, timeout)
    return r


def _status(r: dict[str, Any], connections: int, timeout: float) -> tuple[str, str]:
    detail = r["error_detail"]
    if r["requests"] == 0:
        return "timeout", "no answer in the whole round"
    socket_errors = {k: v for k, v in detail.items() if v and k not in ("timeout", "non_2xx")}
    if socket_errors or detail["non_2xx"]:
        shown = ", ".join(f"{k} {v}" for k, v in detail.items() if v)
        return "errors", f"errors under load: {shown}"
    if r["starved"]:
        return "timeout", (
            f"{r['starved']} of {connections} connections got no answer within "
            f"{timeout:g} s while the server answered the others"
        )
    if detail["timeout"]:
        return "timeout", f"{detail['timeout']} requests waited longer than {timeout:g} s"
    return "ok", ""


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def _combine(
    ctx: Context, model: str, workload: Workload, connections: int, rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    """A row: the median of its rounds, or of its bad rounds if any round was bad."""
    bad = [r for r in rounds if r["status"] != "ok"]
    used = bad or rounds
    status = min((r["status"] for r in used), key=SEVERITY.index)
    row = _row(model, workload, connections, status, bad[0]["note"] if bad else "")
    row["bad_rounds"] = len(bad)
    for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "rss_mb", "threads", "busy_connections"):
        row[key] = _median(used, key)
    row["errors"] = sum(r["errors"] for r in rounds)
    if row["threads"] is not None:
        row["threads"] = round(row["threads"])
    ceiling = ctx.ceilings.get(workload.load)
    row["client_bound"] = bool(ceiling and row["rps"] and row["rps"] >= CLIENT_BOUND * ceiling)
    row["rounds"] = rounds
    return row


def _idle_row(ctx: Context, workload: Workload, model: str, connections: int) -> dict[str, Any]:
    """Idle connections on a fresh server: memory per connection and one client's latency."""
    try:
        server = _start_server(ctx, workload, model)
    except Unavailable as exc:
        return _row(model, workload, connections, "unavailable", str(exc))
    except ServerFailed as exc:
        return _row(model, workload, connections, "failed", str(exc))
    try:
        ctx.progress.step(f"idle · {model} · {connections} idle connections")
        rounds = _idle_rounds(ctx, server, connections)
        server.check_alive("died holding idle connections")
    except (LoadFailed, ServerFailed, Unavailable) as exc:
        return _row(model, workload, connections, "failed", str(exc))
    finally:
        server.stop()
    row = _combine(ctx, model, workload, connections, rounds)
    first = rounds[0]  # the hold is sampled once, on the fresh server
    row["rss_mb"], row["threads"] = first["rss_mb"], first["threads"]
    row["mem_per_conn_kb"] = first["mem_per_conn_kb"]
    row["idle_answered"] = first["idle_answered"]
    return row


def _idle_rounds(ctx: Context, server: ServerProcess, idle: int) -> list[dict[str, Any]]:
    """Hold ``idle`` connections once, sample memory, then measure ``rounds`` windows."""
    plan = ctx.plan
    before = server.usage()
    load = ctx.generator.start(
        "idle", server.port, idle, plan.idle_window, plan.timeout, rounds=plan.rounds
    )
    answered = load.held()
    held = server.usage()
    load.go()
    wait = plan.rounds * (plan.idle_window + plan.timeout) + idle / 100
    rounds = [_judge(s, 1, plan.timeout, held) for s in load.results(wait)]
    per_conn = None
    if before and held and answered == idle:
        per_conn = round((held.rss_mb - before.rss_mb) * 1024 / idle, 1)
    for r in rounds:
        r.update(idle_answered=answered, mem_per_conn_kb=per_conn)
        if answered < idle:
            r["status"] = "timeout"
            r["note"] = f"{idle - answered} of {idle} idle connections never got their first answer"
            if not r["requests"]:
                r["note"] += ", nor did the measuring client"
    return rounds
