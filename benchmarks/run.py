"""Benchmark servers side by side on one workload, the method of DESIGN.md "Performance".

Each server runs pinned to CPU 0 and is loaded by `wrk -t1 -c64` pinned to CPU 1 (keep-alive);
with --workers N > 1 both share CPUs 0 and 1, so that only the ratios between servers count.
Rounds alternate A B C A B C ... so that slow drift of the machine (thermal state, noisy
neighbours) spreads over every server instead of landing on whichever ran last. Every round starts
the server afresh, warms it up with an unmeasured wrk run, then measures; medians over the rounds
are quoted, with their min/max spread and the ratio to a baseline taken in the same run, because
absolute numbers only compare within one machine and one run.

    python benchmarks/run.py --suite wsgi|asgi [--workload hello] [--servers a,b,c] [--rounds 3]
        [--duration 10] [--connections N] [--workers 1] [--baseline NAME] [--json PATH]

The workloads (hello, 1k, 10k, json, post64k, file1m, io and the framework apps) are in
workloads.py, their apps in benchmarks/apps/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import Failure, ServerProcess, Setup, WrkResult, run_wrk, wrk_command
from results import ServerRecord, machine_info, markdown_table, package_versions, write_json
from suites import (
    BENCH_DIR,
    DEFAULT_BASELINE,
    MULTI_PROCESS_BASELINE,
    PEERS_BIN,
    SUITES,
    ServerSpec,
)
from workloads import WORKLOADS, write_apps


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the markdown table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument(
        "--workload", choices=list(WORKLOADS), default="hello", help="what the servers serve"
    )
    parser.add_argument("--servers", help="comma-separated names (default: the whole suite)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load")
    parser.add_argument(
        "--connections", type=int, help="wrk -c (default: the workload's, 64; io: 512)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (>1: CPUs 0,1 shared with wrk)"
    )
    parser.add_argument("--baseline", help="server the ratios are taken against")
    parser.add_argument("--json", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if any server FAILED (e.g. for CI)"
    )
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    if args.connections is None:
        args.connections = workload.connections
    if min(args.rounds, args.duration, args.warmup, args.connections, args.workers) < 1:
        parser.error("--rounds, --duration, --warmup, --connections and --workers must be >= 1")
    if args.suite not in workload.interfaces:
        parser.error(f"workload {args.workload} has no {args.suite} form; "
                     f"run it with --suite {' or '.join(workload.interfaces)}")  # fmt: skip
    return args


def select_servers(args: argparse.Namespace) -> tuple[list[ServerSpec], str]:
    """The servers to run, in the requested order, and the baseline name. Servers without
    worker processes are left out of a --workers N > 1 run: they would not be that row."""
    suite = {spec.name: spec for spec in SUITES[args.suite]}
    names = args.servers.split(",") if args.servers else list(suite)
    unknown = [n for n in names if n not in suite]
    if unknown:
        sys.exit(f"unknown server(s) for --suite {args.suite}: {', '.join(unknown)}; "
                 f"choose from {', '.join(suite)}")  # fmt: skip
    single = [n for n in names if not suite[n].supports_workers(args.workers)]
    if single:
        log(f"left out of --workers {args.workers}: {', '.join(single)} (single-process only)")
        names = [n for n in names if n not in single]
    if not names:
        sys.exit("no server left to run")
    defaults = DEFAULT_BASELINE if args.workers == 1 else MULTI_PROCESS_BASELINE
    baseline = args.baseline or defaults[args.suite]
    if baseline not in names:
        log(f"baseline {baseline!r} is not among the servers run; ratios will be n/a")
    return [suite[n] for n in names], baseline


def preflight(specs: list[ServerSpec]) -> None:
    """Refuse to produce numbers that would not mean what the table says."""
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tool(s): {', '.join(missing)} (apt-get install -y wrk util-linux)")
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        sys.exit(f"need CPUs 0 and 1 to pin server and load; have {cpus}")
    if any(spec.venv == "peers" for spec in specs) and not PEERS_BIN.is_dir():
        log(f"{PEERS_BIN.parent} is missing: run benchmarks/install_peers.sh (peers will FAIL)")


def measure_round(
    record: ServerRecord, setup: Setup, workdir: Path, round_no: int, args: argparse.Namespace
) -> None:
    """Start, warm up, measure and stop one server once; a Failure marks the server FAILED."""
    server = ServerProcess(record.spec, setup, workdir, round_no)
    record.commands.append(" ".join(server.argv))
    try:
        server.start()
        warm = run_wrk(server, args.warmup)
        record.warmups.append(dict(warm.data, round=round_no))
        server.probe()  # also waits out requests the warm-up left queued
        cpu_before = server.cpu_seconds()
        result = run_wrk(server, args.duration)
        keep_round(record, server, result, round_no, server.cpu_seconds() - cpu_before)
    except Failure as exc:
        record.failure = f"round {round_no}: {exc.reason}"
        record.failure_detail = exc.detail
        log(f"  {record.spec.name} round {round_no}: FAILED: {exc.reason}")
    finally:
        server.stop()


def keep_round(
    record: ServerRecord, server: ServerProcess, result: WrkResult, round_no: int, cpu: float
) -> None:
    """Record a measured run with what it cost the server: CPU time a request (``cpu``
    seconds over the run), peak memory, read while the server still runs, and the
    tracebacks in its log."""
    row = dict(result.data, round=round_no, wrk_command=result.command)
    requests = row.get("requests") or 0
    row["cpu_us_per_request"] = cpu * 1e6 / requests if requests and cpu > 0 else None
    row.update(server.peak_memory(), log_tracebacks=server.log_tracebacks())
    record.rounds.append(row)
    rss, tracebacks = row["peak_rss_kib"], row["log_tracebacks"]
    memory = "n/a" if rss is None else f"{rss / 1024:.0f} MiB"
    cpu_text = (
        "" if row["cpu_us_per_request"] is None else f", {row['cpu_us_per_request']:.1f} us CPU/req"
    )
    log(f"  {record.spec.name} round {round_no}: {row['requests_per_s']:.0f} req/s, "
        f"p99 {row['p99_ms']:.2f} ms{cpu_text}, peak RSS {memory}"
        f"{f', {tracebacks} tracebacks in its log' if tracebacks else ''}")  # fmt: skip


def run_rounds(
    specs: list[ServerSpec], setup: Setup, args: argparse.Namespace
) -> list[ServerRecord]:
    """Alternate the servers round by round; a server that failed is not retried, because its
    result is FAILED either way and retrying only spends time."""
    records = [ServerRecord(spec) for spec in specs]
    with tempfile.TemporaryDirectory(prefix="threadloom-bench-") as tmp:
        workdir = Path(tmp)
        write_apps(workdir)
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds}")
            for record in records:
                if record.failure is None:
                    measure_round(record, setup, workdir, round_no, args)
    return records


def build_meta(
    args: argparse.Namespace, setup: Setup, specs: list[ServerSpec], baseline: str
) -> dict[str, Any]:
    """The context recorded with the numbers: method, machine, versions, exact commands."""
    workload = setup.workload
    return {
        "suite": args.suite,
        "workload": workload.name,
        "workload_summary": workload.summary,
        "app_module": setup.module,
        "workers": setup.workers,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": baseline,
        "method": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "workers": setup.workers,
            "request": f"{workload.method} {workload.path}",
            "order": "alternating, fresh server start + warm-up per round",
            "server_cpu": setup.server_cpus,
            "load_cpu": setup.load_cpus,
            "wrk_command": " ".join(wrk_command("PORT", args.duration, setup)),
            "peak_rss": "VmHWM summed over the server's process group, after the measured run",
        },
        "machine": machine_info(),
        "versions": package_versions(specs),
    }


def heading(args: argparse.Namespace, setup: Setup, machine: dict[str, Any]) -> str:
    """The line above the table: what was served, how, and on what."""
    workload = setup.workload
    pinning = (
        f"server CPU {setup.server_cpus}, load CPU {setup.load_cpus}"
        if setup.workers == 1
        else f"{setup.workers} workers, server and load share CPUs {setup.server_cpus}"
        " (only the ratios count)"
    )
    return (
        f"{args.suite} suite, workload {workload.name} ({workload.method} {workload.path}: "
        f"{workload.summary}), {machine['cpu_model']}, {machine['cores']} cores, kernel "
        f"{machine['kernel']}, Python {machine['python']}; {args.rounds} rounds x "
        f"{args.duration}s, wrk -t1 -c{args.connections}, {pinning}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table, write the JSON. A FAILED server is a result, not an error
    of the harness, so the exit status is 0 unless --strict asks otherwise."""
    args = parse_args(argv)
    setup = Setup(WORKLOADS[args.workload], args.suite, args.workers, args.connections)
    specs, baseline = select_servers(args)
    preflight(specs)
    meta = build_meta(args, setup, specs, baseline)
    per_server = (args.warmup + args.duration + 1) * args.rounds
    log(f"suite {args.suite}, workload {args.workload}: {', '.join(s.name for s in specs)}; "
        f"~{per_server * len(specs)} s")  # fmt: skip
    records = run_rounds(specs, setup, args)
    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["machine"]["loadavg_at_end"] = os.getloadavg()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workers = f"-w{args.workers}" if args.workers > 1 else ""
    name = f"{args.suite}-{args.workload}{workers}-{stamp}.json"
    path = args.json or BENCH_DIR / "results" / name
    write_json(path, meta, records)
    print(heading(args, setup, meta["machine"]))
    print(markdown_table(records, baseline))
    log(f"results written to {path}")
    return 1 if args.strict and any(rec.failure for rec in records) else 0


if __name__ == "__main__":
    sys.exit(main())
