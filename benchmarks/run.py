"""Benchmark hello-world servers side by side, the method of DESIGN.md "Performance".

Each server runs pinned to CPU 0 and is loaded by `wrk -t1 -c64` pinned to CPU 1 (keep-alive).
Rounds alternate A B C A B C ... so that slow drift of the machine (thermal state, noisy
neighbours) spreads over every server instead of landing on whichever ran last. Every round starts
the server afresh, warms it up with an unmeasured wrk run, then measures; medians over the rounds
are quoted, with their min/max spread and the ratio to a baseline taken in the same run, because
absolute numbers only compare within one machine and one run.

    python benchmarks/run.py --suite wsgi|asgi [--servers a,b,c] [--rounds 3] [--duration 10]
        [--connections 64] [--baseline NAME] [--json PATH]
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

from loadgen import LOAD_CPU, SERVER_CPU, Failure, ServerProcess, run_wrk, wrk_command
from results import ServerRecord, machine_info, markdown_table, package_versions, write_json
from suites import BENCH_DIR, DEFAULT_BASELINE, PEERS_BIN, SUITES, ServerSpec, write_apps


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the markdown table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument("--servers", help="comma-separated names (default: the whole suite)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--baseline", help="server the ratios are taken against")
    parser.add_argument("--json", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if any server FAILED (e.g. for CI)"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.warmup, args.connections) < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be >= 1")
    return args


def select_servers(args: argparse.Namespace) -> tuple[list[ServerSpec], str]:
    """The servers to run, in the requested order, and the baseline name."""
    suite = {spec.name: spec for spec in SUITES[args.suite]}
    names = args.servers.split(",") if args.servers else list(suite)
    unknown = [n for n in names if n not in suite]
    if unknown:
        sys.exit(f"unknown server(s) for --suite {args.suite}: {', '.join(unknown)}; "
                 f"choose from {', '.join(suite)}")  # fmt: skip
    baseline = args.baseline or DEFAULT_BASELINE[args.suite]
    if baseline not in names:
        log(f"baseline {baseline!r} is not among the servers run; ratios will be n/a")
    return [suite[n] for n in names], baseline


def preflight(specs: list[ServerSpec]) -> None:
    """Refuse to produce numbers that would not mean what the table says."""
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tool(s): {', '.join(missing)} (apt-get install -y wrk util-linux)")
    cpus = os.sched_getaffinity(0)
    if not {int(SERVER_CPU), int(LOAD_CPU)} <= cpus:
        sys.exit(f"need CPUs {SERVER_CPU} and {LOAD_CPU} to pin server and load; have {cpus}")
    if any(spec.venv == "peers" for spec in specs) and not PEERS_BIN.is_dir():
        log(f"{PEERS_BIN.parent} is missing: run benchmarks/install_peers.sh (peers will FAIL)")


def measure_round(
    record: ServerRecord, workdir: Path, round_no: int, args: argparse.Namespace
) -> None:
    """Start, warm up, measure and stop one server once; a Failure marks the server FAILED."""
    server = ServerProcess(record.spec, workdir, round_no)
    record.commands.append(" ".join(server.argv))
    try:
        server.start()
        warm = run_wrk(server, args.warmup, args.connections)
        record.warmups.append(dict(warm.data, round=round_no))
        result = run_wrk(server, args.duration, args.connections)
        record.rounds.append(dict(result.data, round=round_no, wrk_command=result.command))
        log(f"  {record.spec.name} round {round_no}: {result.data['requests_per_s']:.0f} req/s, "
            f"p99 {result.data['p99_ms']:.2f} ms")  # fmt: skip
    except Failure as exc:
        record.failure = f"round {round_no}: {exc.reason}"
        record.failure_detail = exc.detail
        log(f"  {record.spec.name} round {round_no}: FAILED: {exc.reason}")
    finally:
        server.stop()


def run_rounds(specs: list[ServerSpec], args: argparse.Namespace) -> list[ServerRecord]:
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
                    measure_round(record, workdir, round_no, args)
    return records


def build_meta(args: argparse.Namespace, specs: list[ServerSpec], baseline: str) -> dict[str, Any]:
    """The context recorded with the numbers: method, machine, versions, exact commands."""
    return {
        "suite": args.suite,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": baseline,
        "method": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "order": "alternating, fresh server start + warm-up per round",
            "server_cpu": SERVER_CPU,
            "load_cpu": LOAD_CPU,
            "wrk_command": " ".join(wrk_command(0, args.duration, args.connections)).replace(
                ":0/", ":PORT/"
            ),
        },
        "machine": machine_info(),
        "versions": package_versions(specs),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table, write the JSON. A FAILED server is a result, not an error
    of the harness, so the exit status is 0 unless --strict asks otherwise."""
    args = parse_args(argv)
    specs, baseline = select_servers(args)
    preflight(specs)
    meta = build_meta(args, specs, baseline)
    per_server = (args.warmup + args.duration + 1) * args.rounds
    log(f"suite {args.suite}: {', '.join(s.name for s in specs)}; ~{per_server * len(specs)} s")
    records = run_rounds(specs, args)
    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["machine"]["loadavg_at_end"] = os.getloadavg()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or BENCH_DIR / "results" / f"{args.suite}-{stamp}.json"
    write_json(path, meta, records)
    machine = meta["machine"]
    print(f"{args.suite} suite, {machine['cpu_model']}, {machine['cores']} cores, "
          f"kernel {machine['kernel']}, Python {machine['python']}; {args.rounds} rounds x "
          f"{args.duration}s, wrk -t1 -c{args.connections}, server CPU {SERVER_CPU}, "
          f"load CPU {LOAD_CPU}\n")  # fmt: skip
    print(markdown_table(records, baseline))
    log(f"results written to {path}")
    return 1 if args.strict and any(rec.failure for rec in records) else 0


if __name__ == "__main__":
    sys.exit(main())
