"""``threadloom bench``: its arguments, their checks, and the run from start to files.

This module is imported by the CLI for every command, so it imports nothing heavy at the top:
matplotlib, rich and the runner load only when a bench actually runs. Every mistake in the
arguments is a :class:`ConfigError`, which the CLI prints as one line (exit status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadloom.bench.plan import FULL, MODELS, QUICK, WORKLOADS, Plan, Workload, app_workload
from threadloom.errors import ConfigError

MAX_CONNECTIONS = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's flags (DESIGN.md "The command line", plus ``--app``)."""
    full, quick = FULL, QUICK
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smaller matrix, under 3 minutes: connections {_csv(quick.connections)}, "
        f"{quick.warmup:g} s warm-ups",
    )
    parser.add_argument("--models", help=f"comma-separated (default: {_csv(MODELS)})")
    parser.add_argument(
        "--workloads", help=f"comma-separated (default: {_csv(WORKLOADS)}); not with --app"
    )
    parser.add_argument(
        "--connections", help=f"comma-separated counts (default: {_csv(full.connections)})"
    )
    parser.add_argument(
        "--duration", type=float, help=f"seconds per measured round (default {full.duration:g})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"measured rounds per cell (default {full.rounds})"
    )
    parser.add_argument(
        "--out", help="folder for results.json, report.md and charts (default: a new dated one)"
    )
    parser.add_argument(
        "--app", metavar="APP", help="bench your own module:attribute instead of the workloads"
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="HTTP load: wrk when on PATH (auto), or the built-in client",
    )


def _csv(values: Any) -> str:
    return ",".join(str(v) for v in values)


def _names(text: str, known: Any, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown {what} {name!r} (choose from {', '.join(known)})")
    if not names:
        raise ConfigError(f"--{what}s needs at least one name")
    return tuple(dict.fromkeys(names))


def _connections(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        raise ConfigError(
            f"--connections takes numbers separated by commas, got {text!r}"
        ) from None
    if not counts or counts[0] < 1 or counts[-1] > MAX_CONNECTIONS:
        raise ConfigError(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    return tuple(counts)


def _app(target: str) -> Workload:
    """Import and classify the user's app now, so a mistake is one line before any server."""
    from threadloom.loading import detect, import_app  # noqa: PLC0415 - only for --app

    loaded = detect(import_app(target), "auto", target)
    return app_workload(target, loaded.interface, loaded.is_async)


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan the flags ask for, checked."""
    base = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"generator": args.generator}
    if args.models:
        changes["models"] = _names(args.models, MODELS, "model")
    if args.app and args.workloads:
        raise ConfigError("--app replaces the workloads; give one or the other")
    if args.workloads:
        chosen = _names(args.workloads, WORKLOADS, "workload")
        changes["workloads"] = tuple(WORKLOADS[n] for n in chosen)
    if args.app:
        changes["workloads"] = (_app(args.app),)
    if args.connections:
        changes["connections"] = _connections(args.connections)
    if args.duration is not None:
        if not 0.5 <= args.duration <= 600:
            raise ConfigError("--duration must be between 0.5 and 600 seconds")
        changes["duration"] = args.duration
    if args.rounds is not None:
        if not 1 <= args.rounds <= 50:
            raise ConfigError("--rounds must be between 1 and 50")
        changes["rounds"] = args.rounds
    return dataclasses.replace(base, **changes)


def _out_dir(given: str | None) -> Path:
    if given:
        out = Path(given)
    else:
        out = Path(f"threadloom-bench-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "logs").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror or exc}") from None
    return out


def _check_extras() -> None:
    missing = []
    for module in ("matplotlib", "rich"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(
            f"threadloom bench needs {' and '.join(missing)}: pip install 'threadloom[bench]'"
        )


def run(args: argparse.Namespace) -> int:
    """``threadloom bench``: plan, measure, write, print. Returns the exit status."""
    if not hasattr(os, "killpg"):  # (Windows: its servers run in process groups)
        raise ConfigError("threadloom bench needs POSIX (process groups); run it on Linux or macOS")
    plan = plan_from(args)
    _check_extras()
    out = _out_dir(args.out)
    from threadloom.bench.session import execute  # noqa: PLC0415 - heavy: rich, matplotlib

    started = time.monotonic()
    results = execute(plan, out, started_at=datetime.now(UTC))
    print(
        f"threadloom bench: {len(results['rows'])} rows in {time.monotonic() - started:.0f} s; "
        f"report in {out / 'report.md'}",
        file=sys.stderr,
    )
    return 0
