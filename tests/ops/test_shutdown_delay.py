"""``--shutdown-delay``: SIGTERM turns the probes to 503 at once, serving goes on, then a drain."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests.ops.support import Proc, address, get, scaled

Spawn = Callable[..., Proc]
DELAY = 2.0


@pytest.mark.parametrize("workers", ["0", "2"])
def test_probes_fail_at_once_then_serving_goes_on_for_the_delay(spawn: Spawn, workers: str) -> None:
    args = ("--workers", workers, "--shutdown-delay", str(DELAY), "--bind", "127.0.0.1:0")
    proc = spawn("ops_apps:app", *args, "--metrics-bind", "127.0.0.1:0")
    ops = address(proc.expect(r"health and readiness on http://(\S+)")[1])
    where = address(proc.serving())
    assert get(where)[0] == 200  # served, so the model accepts: ready
    assert get(ops, "/readyz") == (200, "ready\n")

    proc.send(signal.SIGTERM)
    sent = time.monotonic()
    proc.expect("/readyz answers 503")  # logged once it is so
    assert get(ops, "/readyz") == (503, "draining\n")
    assert get(ops, "/healthz") == (503, "draining\n")

    served = []
    while time.monotonic() - sent < DELAY - 0.5:  # requests keep succeeding meanwhile
        served.append(get(where)[0])
        time.sleep(0.1)
    assert served and set(served) == {200}

    slow: list[tuple[int, str]] = []
    client = threading.Thread(target=lambda: slow.append(get(where, "/slow?1")))
    client.start()  # in flight when the drain begins: it must finish
    proc.expect("slow request started")
    status, text = proc.finish(timeout=scaled(15))
    client.join()
    took = time.monotonic() - sent
    assert status == 0, text
    assert slow and slow[0][0] == 200, text
    assert took >= DELAY, took
    with pytest.raises(OSError):
        get(where)
