"""Alternate one load over servers that stay up: the ratio of each to the first, round by round.

Why
---
run.py starts each server afresh for every round, which is what a user's comparison looks
like. To compare settings of one server (an environment switch, ``--threads``) on these
noisy VMs, what counts is that every setting meets the same neighbours: here all servers
start once, pinned to CPU 0 (``--server-cpus``), and short wrk runs on CPU 1
(``--load-cpus``) go round them in turn (the order reversed every other round), so a
burst of a neighbour's load falls on all of them. The
figure is the median, over rounds, of each server's requests a second over the first's in
that round; beside it, the context switches of the server's threads per request (all
rounds). A round in which the hypervisor took (steal time, ``/proc/stat``) more than
``--max-steal`` of the CPUs during any run is left out: a neighbour was busy then, and what
it does to a run is not what it does to the next.

    .venv/bin/python benchmarks/alternate.py --rounds 12 --seconds 3 \\
        "normal=THREADLOOM_WORKER_SCHED=normal {threadloom} serve hello_wsgi:app --model pool" \\
        "batch={threadloom} serve hello_wsgi:app --model pool" \\
        "granian={peers}/granian --interface wsgi --port {port} hello_wsgi:app"

Each server is ``name=[VAR=value ...] command``; ``{port}`` is filled with its own port,
``{threadloom}`` with this checkout's ``threadloom`` command and ``{peers}`` with the peers'
venv (install_peers.sh). threadloom commands get ``--no-access-log --bind 127.0.0.1:{port}``
unless they give ``--bind``. The apps are benchmarks/apps.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
from pathlib import Path

from instructions import wait_ready  # (benchmarks/ is this script's folder: on sys.path)

HERE = Path(__file__).resolve().parent
THREADLOOM = HERE.parent / ".venv" / "bin" / "threadloom"
PEERS = HERE / ".peers-venv" / "bin"
FIRST_PORT = 18760
RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def parse_server(text: str, port: int) -> tuple[str, dict[str, str], list[str]]:
    """``name=[VAR=value ...] command`` -> (name, environment, argv)."""
    name, _, command = text.partition("=")
    words = command.format(port=port, threadloom=THREADLOOM, peers=PEERS).split()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "apps"), str(HERE)]))
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words and words[0] == str(THREADLOOM) and "--bind" not in words:
        words += ["--no-access-log", "--bind", f"127.0.0.1:{port}"]
    return name, env, words


def wrk(
    port: int, seconds: float, connections: int, path: str, cpus: str, script: str | None = None
) -> float:
    """Requests a second of one wrk run on ``cpus`` (``script``: a wrk Lua script, such as
    benchmarks/post64k.lua for the upload workload)."""
    scripted = ["-s", script] if script else []
    out = subprocess.run(
        ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
         *scripted, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = RATE.search(out)
    if found is None:
        raise SystemExit(f"wrk said no rate:\n{out}")
    return float(found.group(1))


def switches(group: int) -> int:
    """Context switches so far of every thread of the processes in session ``group``."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or os.getsid(int(proc.name)) != group:
                continue
            for task in (proc / "task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def steal_ticks() -> int:
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("servers", nargs="+", help="name=[VAR=value ...] command")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0, help="per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--path", default="/")
    parser.add_argument("--script", help="a wrk Lua script (e.g. benchmarks/post64k.lua)")
    parser.add_argument("--server-cpus", default="0", help="taskset -c for the servers")
    parser.add_argument("--load-cpus", default="1", help="taskset -c for wrk")
    parser.add_argument(
        "--max-steal", type=float, default=0.02, help="leave out rounds with more (share of CPUs)"
    )
    args = parser.parse_args()
    parsed = [parse_server(text, FIRST_PORT + n) for n, text in enumerate(args.servers)]
    procs: list[subprocess.Popen[bytes]] = []
    rates: dict[str, list[float]] = {name: [] for name, _, _ in parsed}
    per_request: dict[str, list[float]] = {name: [] for name, _, _ in parsed}
    try:
        for n, (_, env, argv) in enumerate(parsed):
            proc = subprocess.Popen(
                ["taskset", "-c", args.server_cpus, *argv], env=env, cwd=HERE / "apps",
                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            wait_ready(FIRST_PORT + n, proc, limit=20.0)
            load = (args.connections, args.path, args.load_cpus, args.script)
            wrk(FIRST_PORT + n, 2, *load)  # warm-up
        allowed = args.max_steal * args.seconds * os.cpu_count() * os.sysconf("SC_CLK_TCK")
        left_out = 0
        for round_ in range(args.rounds):
            order = list(range(len(parsed)))
            measured: dict[str, float] = {}
            quiet = True
            for n in order if round_ % 2 == 0 else order[::-1]:
                steal, before = steal_ticks(), switches(procs[n].pid)
                name = parsed[n][0]
                measured[name] = rate = wrk(FIRST_PORT + n, args.seconds, *load)
                per_request[name].append((switches(procs[n].pid) - before) / (rate * args.seconds))
                quiet = quiet and steal_ticks() - steal <= allowed
            if not quiet:
                left_out += 1
                continue
            for name, rate in measured.items():
                rates[name].append(rate)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    first = rates[parsed[0][0]]
    print(f"{len(first)} rounds kept, {left_out} left out (steal above {args.max_steal:.0%})")
    if not first:
        raise SystemExit("no quiet round: try again later")
    for name, values in rates.items():
        ratio = statistics.median(a / b for a, b in zip(values, first, strict=True))
        each = " ".join(f"{v / 1000:.1f}" for v in values)
        print(
            f"{name:12s} median {statistics.median(values) / 1000:6.1f}k  "
            f"x{ratio:.3f} of {parsed[0][0]} (median of rounds)  "
            f"{statistics.median(per_request[name]):.3f} context switches a request  [{each}]"
        )


if __name__ == "__main__":
    main()
