"""How the bench splits CPUs, pins commands and reads a server's memory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from threadloom.bench.machine import describe_machine, popen_on, split_cpus
from threadloom.bench.servers import group_usage


def test_one_cpu_is_not_pinned() -> None:
    split = split_cpus((0,))
    assert not split.pinned and "not pinned" in split.describe()


@pytest.mark.parametrize(
    ("cpus", "server", "load"),
    [
        ((0, 1), (0,), (1,)),
        ((0, 1, 2, 3), (0, 1, 2), (3,)),
        (tuple(range(8)), tuple(range(6)), (6, 7)),
    ],
)
def test_the_load_gets_a_quarter_and_the_server_the_rest(
    cpus: tuple[int, ...], server: tuple[int, ...], load: tuple[int, ...]
) -> None:
    split = split_cpus(cpus)
    assert (split.server, split.load) == (server, load)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_popen_on_starts_the_command_on_those_cpus_and_leaves_this_thread_alone() -> None:
    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    proc = popen_on((cpu,), [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == f"[{cpu}]"
    assert os.sched_getaffinity(0) == mine


def test_group_usage_sums_the_processes_of_a_group() -> None:
    code = "import sys, time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        usage = group_usage(child.pid)
    finally:
        child.kill()
        child.communicate()
    assert usage is not None and usage.rss_mb > 1 and usage.threads == 1


def test_the_machine_description_says_what_the_report_needs() -> None:
    info = describe_machine(split_cpus())
    assert info["cores"] >= 1 and info["gil"] in ("on", "off")
    assert info["python"].startswith("CPython") or info["python"]
