"""Instructions per request: a measure of the server's own cost that a noisy machine cannot move.

Why
---
On these shared VMs a throughput figure moves by a third from one run to the next (see
BENCHMARKS.md), and even CPU time per request moves with the neighbours' cache traffic. What
does not move is how many instructions the server executes for a request. This harness runs
the server under valgrind's callgrind (user-space instructions, about 50x slower than native),
sends it N requests with h2load, and does it twice, with a small and a large N: the
difference over the difference in requests is the cost of one request, with start-up and
shutdown cancelled out. Two trees of threadloom (a commit before and after a change) are
compared that way in one command; the figure is the same to about 1% from run to run.

It measures the Python side and the C it calls, not the kernel (system calls are counted as
the instructions that make them), and a regime where the server is the bottleneck (under
valgrind every connection has a request waiting each time the loop turns). It says which
change costs instructions; only wrk or h2load on a quiet machine says what that is worth in
requests per second.

    .venv/bin/python benchmarks/instructions.py                          # asyncio, ASGI hello
    .venv/bin/python benchmarks/instructions.py --model pool --interface wsgi
    .venv/bin/python benchmarks/instructions.py --tree /tmp/wt-old --tree .   # A/B of two trees
    .venv/bin/python benchmarks/instructions.py --http 2                  # h2load -m 10, h2c

A tree is a checkout of threadloom with its C extensions built in place (``python setup.py
build_ext --inplace``); every tree runs with this checkout's ``.venv`` and apps.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from payloads import POST_BODY  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)
DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded")


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    """threadloom serving the workload's app under the model asked for. The keep-alive
    timeout is long: under valgrind one turn of the loop over 64 connections with 10
    requests each can take longer than the default 5 s, and a connection whose next
    requests wait unread would be closed as idle (h2load then counts them failed). The
    overload bound is off for the same reason: such a turn would be refused as late."""
    app = f"{args.workload}_{args.interface}:app"
    return [
        str(PYTHON), "-m", "threadloom", "serve", app, "--model", args.model,
        "--threads", str(args.threads), "--no-access-log", "--timeout-keep-alive", "120",
        "--max-queue-wait", "0", "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip


def wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 120.0) -> None:
    """Until the server answers a plain GET (start-up under valgrind takes seconds); any
    status is an answer (a framework app may have no route at ``/``)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it served")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                answer.read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer within 120 s under valgrind")


def load(args: argparse.Namespace, port: int, requests: int) -> None:
    """``requests`` requests from h2load; every one must succeed.

    One connection by default: under valgrind, how many connections have a request waiting
    each time the loop turns depends on how fast h2load runs beside it, so with many the
    count moves with the machine's load; with one, every request is one turn of the loop.
    """
    command = ["h2load", "-n", str(requests), "-c", str(args.connections)]
    command += ["--h1"] if args.http == "1" else ["-m", "10"]
    with tempfile.TemporaryDirectory() as scratch:
        if args.workload == "post64k":  # the workload's upload, as wrk sends it in run.py
            upload = Path(scratch) / "upload"
            upload.write_bytes(POST_BODY)
            command += ["-d", str(upload), "-H", "content-type: application/octet-stream"]
        result = subprocess.run(
            [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=False
        )
    if args.http == "2" and "Application protocol: h2c" not in result.stdout:
        raise SystemExit(f"h2load did not speak h2c (prior knowledge):\n{result.stdout[-800:]}")
    found = DONE.search(result.stdout)
    if not found or int(found.group(2)) != requests:
        raise SystemExit(f"h2load: not every request succeeded:\n{result.stdout[-800:]}")


def stop(proc: subprocess.Popen[bytes]) -> bytes:
    """SIGTERM until the server exits (what it wrote to stderr): older trees could miss a
    SIGTERM that the kernel handed to a thread other than the main one, and valgrind runs
    every thread in turn."""
    for _ in range(12):
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    raise SystemExit("the server did not stop on SIGTERM within 120 s")


def total_instructions(args: argparse.Namespace, tree: Path, requests: int, port: int) -> int:
    """Instructions the server ran from start to exit, serving ``requests`` requests."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), str(HERE / "apps"), str(HERE)])
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             *server_command(args, port)],
            env=env, cwd=HERE / "apps", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_ready(port, proc)
            load(args, port, requests)
            if proc.poll() is not None:
                raise SystemExit("the server exited during the load: another one answered")
        finally:
            err = stop(proc)
        found = TOTALS.search(out.read_bytes()) if out.exists() else None
        if found is None:
            raise SystemExit(f"no callgrind totals; the server said:\n{err.decode()[-800:]}")
        return int(found.group(1))


def free_port() -> int:
    """A port nobody listens on now: another server answering on ours would be measured
    in its place (two of these harnesses side by side did exactly that)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def per_request(args: argparse.Namespace, tree: Path, port: int) -> float:
    """The instructions one more request costs, start-up and shutdown cancelled out."""
    small = total_instructions(args, tree, args.requests, port)
    large = total_instructions(args, tree, args.requests * 6, port)
    return float((large - small) / (args.requests * 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path, help="checkouts (default: this)")
    parser.add_argument("--model", default="asyncio")
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="asgi")
    parser.add_argument("--workload", default="hello", help="benchmarks/apps/<workload>_<if>.py")
    parser.add_argument("--http", choices=("1", "2"), default="1")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=1, help="h2load -c (1: no batching)")
    parser.add_argument("--requests", type=int, default=3000, help="the small run; large = 6x")
    args = parser.parse_args()
    for tool in ("valgrind", "h2load"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (apt-get install valgrind nghttp2-client)")
    trees = args.tree or [ROOT]
    for tree in trees:
        cost = per_request(args, tree.resolve(), free_port())
        print(
            f"{tree}: {cost:,.0f} instructions per request "
            f"({args.model}, {args.interface}, {args.workload}, HTTP/{args.http})",
            flush=True,
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
