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


def test_each_worker_freezes_its_own() -> None:
    with ServerProcess("tests.ops.ops_apps:frozen", "pool", "--workers", "2") as server:
        assert frozen_count(server.address) > 10_000
