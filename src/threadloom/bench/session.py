"""One bench run from start to files: set the machine up, measure, decide, write, print."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadloom.bench import charts, report
from threadloom.bench.generators import Generator, LoadFailed
from threadloom.bench.machine import describe_machine, pin_self, raise_fd_limit, split_cpus
from threadloom.bench.plan import Plan
from threadloom.bench.progress import make_progress, print_tables
from threadloom.bench.runner import (
    CEILING_CONNECTIONS,
    Context,
    calibrate_cpu_loops,
    measure_ceilings,
    run_matrix,
    worker_count,
)
from threadloom.bench.verdict import decide
from threadloom.config import Config
from threadloom.errors import ConfigError


def _plan_record(plan: Plan, cpu_loops: int | None, workers: int) -> dict[str, Any]:
    return {
        "models": list(plan.models),
        "workloads": [
            {"name": w.name, "load": w.load, "summary": w.summary, "builtin": w.builtin}
            for w in plan.workloads
        ],
        "connections": list(plan.connections),
        "duration_s": plan.duration,
        "rounds": plan.rounds,
        "warmup_s": plan.warmup,
        "timeout_s": plan.timeout,
        "quick": plan.quick,
        "cpu_loops": cpu_loops,
        "threads": Config().threads,
        "workers": workers,
    }


def execute(plan: Plan, out: Path, started_at: datetime) -> dict[str, Any]:
    """Run the plan, write results.json, the charts and report.md into ``out``."""
    split = split_cpus()
    machine = describe_machine(split)  # before pinning, which narrows what this process sees
    pin_self(split.load)  # this process and the clients it starts stay off the server CPUs
    raise_fd_limit()
    try:
        generator = Generator.choose(plan.generator, split)
    except LoadFailed as exc:
        raise ConfigError(str(exc)) from None
    cpu_loops = None
    if any(w.name == "cpu" and w.builtin for w in plan.workloads):
        cpu_loops = calibrate_cpu_loops()
    env = {"THREADLOOM_BENCH_CPU_LOOPS": str(cpu_loops)} if cpu_loops else {}
    if plan.duration < 1 and generator.wrk:
        plan = dataclasses.replace(plan, duration=1.0)  # wrk counts whole seconds
    started = time.monotonic()
    with generator, make_progress(plan.cells) as progress:
        ctx = Context(plan, generator, split, out / "logs", progress, env)
        ctx.ceilings = measure_ceilings(ctx)
        rows = run_matrix(ctx)
    results: dict[str, Any] = {
        "threadloom_bench": 1,
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": machine,
        "generator": {
            **generator.describe(),
            "ceiling": ctx.ceilings,
            "ceiling_connections": CEILING_CONNECTIONS,
        },
        "plan": _plan_record(plan, cpu_loops, worker_count(split)),
        "rows": rows,
        "verdicts": {w.name: decide(w.name, w.load, rows).as_dict() for w in plan.workloads},
    }
    report.write_json(results, out)
    drawn = charts.draw_all(results, out)
    results["charts"] = drawn
    report.write_json(results, out)
    report.write_markdown(results, out, drawn)
    print_tables(results)
    return results
