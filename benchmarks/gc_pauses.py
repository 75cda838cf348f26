"""Garbage-collector pauses under load, with ``--gc-freeze`` (the default) and without, or
with any other settings given as ``--setting`` (one server flag string each).

A full collection of CPython's cyclic collector holds the GIL while it walks every tracked
object; every request in flight waits for it. ``--gc-freeze`` freezes what is alive once
the app is loaded (``gc.freeze``), so those passes skip the interpreter, the framework and
the app. This runs ``threadloom serve`` on CPU 0 with a ``gc.callbacks`` hook that times
each collection, loads it with wrk from CPU 1, and tells, per setting and round: req/s and
p99 (wrk's), how many collections of each generation ran, and how long the full ones took
(median and longest) and all of them together.

    .venv/bin/python benchmarks/gc_pauses.py                       # io, asyncio, 512 conns
    .venv/bin/python benchmarks/gc_pauses.py --setting "" --setting "--gc-threshold 0"
    .venv/bin/python benchmarks/gc_pauses.py --workload hello --model pool --interface wsgi \\
        --connections 64

The hook costs two ``perf_counter`` calls a collection; both settings carry it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parent / ".venv" / "bin" / "python"
sys.path.insert(0, str(HERE))
from loadgen import free_port  # noqa: E402

#: ``python -c HOOK serve ...``: threadloom's CLI with every collection timed; the totals go
#: to stderr as one ``GCSTATS {json}`` line when the server exits.
HOOK = """
import atexit, gc, json, sys, time
pauses = {0: [], 1: [], 2: []}
began = [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        pauses[info["generation"]].append(time.perf_counter() - began[0])
gc.callbacks.append(timed)
atexit.register(lambda: print("GCSTATS " + json.dumps(pauses), file=sys.stderr, flush=True))
from threadloom.cli import main
sys.exit(main())
"""
LATENCY = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not listen within 30 s")


def one_run(args: argparse.Namespace, flags: str) -> dict[str, float]:
    """One server start with ``flags``: warm-up, a measured wrk run, the collector's log."""
    port = free_port()
    app = f"{args.workload}_{args.interface}:app"
    command = ["taskset", "-c", "0", str(PYTHON), "-c", HOOK, "serve", app]
    command += ["--model", args.model, "--no-access-log", "--bind", f"127.0.0.1:{port}"]
    command += shlex.split(flags)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "apps"), str(HERE)]))
    proc = subprocess.Popen(
        command, cwd=HERE / "apps", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_ready(port, proc)
        url = f"http://127.0.0.1:{port}/"
        wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}"]
        subprocess.run([*wrk, "-d2s", url], capture_output=True, check=True)
        measured = [*wrk, f"-d{args.duration}s", "--latency", url]
        out = subprocess.run(measured, capture_output=True, text=True, check=True).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode(errors="replace")
    stats = next(line for line in err.splitlines() if line.startswith("GCSTATS "))
    pauses = {int(k): v for k, v in json.loads(stats.removeprefix("GCSTATS ")).items()}
    rate, p99 = RATE.search(out), LATENCY.search(out)
    if rate is None or p99 is None:
        raise SystemExit(f"wrk said:\n{out}")
    full = pauses[2] or [0.0]
    return {
        "rps": float(rate.group(1)),
        "p99_ms": float(p99.group(1)) * UNIT[p99.group(2)],
        "gen0": len(pauses[0]),
        "gen1": len(pauses[1]),
        "gen2": len(pauses[2]),
        "full_median_ms": statistics.median(full) * 1e3,
        "full_max_ms": max(full) * 1e3,
        "all_ms": sum(sum(v) for v in pauses.values()) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="io", help="benchmarks/apps/<workload>_<if>.py")
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="asgi")
    parser.add_argument("--model", default="asyncio")
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setting", action="append", help="server flags, one set a run")
    args = parser.parse_args()
    settings = args.setting or ["--gc-freeze", "--no-gc-freeze"]
    print(
        "| round | setting | req/s | p99 ms | gen0 | gen1 | gen2 | full pass median ms "
        "| longest ms | all collections ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for round_no in range(1, args.rounds + 1):
        for flags in settings:
            r = one_run(args, flags)
            print(
                f"| {round_no} | `{flags or '(defaults)'}` | {r['rps']:,.0f} "
                f"| {r['p99_ms']:.1f} | {r['gen0']} "
                f"| {r['gen1']} | {r['gen2']} | {r['full_median_ms']:.1f} "
                f"| {r['full_max_ms']:.1f} | {r['all_ms']:.0f} |",
                flush=True,
            )
    sys.exit(0)


if __name__ == "__main__":
    main()
