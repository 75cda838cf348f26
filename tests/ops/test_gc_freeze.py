"""``--gc-freeze`` (the default): what is alive once the app is loaded is frozen out of the
cyclic collector's full collections, in the process that serves (each worker's too)."""

from __future__ import annotations

import http.client

import pytest

from tests.adversarial.support import ServerProcess
from threadloom.testing import MODELS, timeout_factor


def frozen_count(address: tuple[str, int]) -> int:
    conn = http.client.HTTPConnection(*address, timeout=10 * timeout_factor())
    try:
        conn.request("GET", "/")
        return int(conn.getresponse().read())
    finally:
        conn.close()


@pytest.mark.parametrize("model", MODELS)
def test_the_loaded_objects_are_frozen_unless_asked_not_to(model: str) -> None:
    with ServerProcess("tests.ops.ops_apps:frozen", model) as server:
        assert frozen_count(server.address) > 10_000  # the interpreter, threadloom, the app
    with ServerProcess("tests.ops.ops_apps:frozen", model, "--no-gc-freeze") as server:
        assert frozen_count(server.address) == 0


@pytest.mark.parametrize("preload", [(), ("--preload",)], ids=["fresh-import", "preload"])
def test_workers_freeze_and_the_supervisor_too(preload: tuple[str, ...]) -> None:
    """Workers serve frozen (what the supervisor froze before it forked, and their own);
    with --no-gc-freeze neither freezes anything."""
    app = "tests.ops.ops_apps:frozen"
    with ServerProcess(app, "pool", "--workers", "2", *preload) as server:
        assert frozen_count(server.address) > 10_000
    with ServerProcess(app, "pool", "--workers", "2", "--no-gc-freeze", *preload) as server:
        assert frozen_count(server.address) == 0
