"""``--gc-freeze`` (the default): what is alive once the app is loaded is frozen out of the
cyclic collector's full collections, in the process that serves (each worker's too); and
``--gc-threshold`` (10,000 by default): the young generation is collected less often,
unless the app chose its own thresholds."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest

from tests.adversarial.support import ServerProcess
from threadloom.testing import MODELS, timeout_factor


def answer(address: tuple[str, int]) -> int:
    conn = http.client.HTTPConnection(*address, timeout=10 * timeout_factor())
    try:
        conn.request("GET", "/")
        return int(conn.getresponse().read())
    finally:
        conn.close()


@pytest.mark.parametrize("model", MODELS)
def test_the_loaded_objects_are_frozen_unless_asked_not_to(model: str) -> None:
    with ServerProcess("tests.ops.ops_apps:frozen", model) as server:
        assert answer(server.address) > 10_000  # the interpreter, threadloom, the app
    with ServerProcess("tests.ops.ops_apps:frozen", model, "--no-gc-freeze") as server:
        assert answer(server.address) == 0


@pytest.mark.parametrize("preload", [(), ("--preload",)], ids=["fresh-import", "preload"])
def test_workers_freeze_and_the_supervisor_too(preload: tuple[str, ...]) -> None:
    """Workers serve frozen (what the supervisor froze before it forked, and their own);
    with --no-gc-freeze neither freezes anything."""
    app = "tests.ops.ops_apps:frozen"
    with ServerProcess(app, "pool", "--workers", "2", *preload) as server:
        assert answer(server.address) > 10_000
    with ServerProcess(app, "pool", "--workers", "2", "--no-gc-freeze", *preload) as server:
        assert answer(server.address) == 0


@pytest.mark.parametrize("model", MODELS)
def test_the_young_generation_is_collected_every_gc_threshold_allocations(model: str) -> None:
    app = "tests.ops.ops_apps:young_threshold"
    with ServerProcess(app, model) as server:
        assert answer(server.address) == 10_000
    with ServerProcess(app, model, "--gc-threshold", "2500") as server:
        assert answer(server.address) == 2500
    with ServerProcess(app, model, "--gc-threshold", "0") as server:
        assert answer(server.address) == pythons_own_threshold()


def pythons_own_threshold() -> int:
    """The young generation's threshold of a fresh interpreter (this one's may have been
    set by a server that served in it)."""
    line = "import gc; print(gc.get_threshold()[0])"
    done = subprocess.run([sys.executable, "-c", line], capture_output=True, check=True)
    return int(done.stdout)


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["one-process", "workers"])
def test_thresholds_the_app_set_are_kept(workers: tuple[str, ...]) -> None:
    with ServerProcess("tests.ops.own_thresholds_app:app", "pool", *workers) as server:
        assert answer(server.address) == 1234
