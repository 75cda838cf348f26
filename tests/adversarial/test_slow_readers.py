"""The slow-read attack: hundreds of clients ask for a large response (pipelined) and read
it a few bytes at a time through a tiny TCP window, under every model.

What must hold (RELIABILITY.md has the figures):

* a slow reader never holds a worker: what the socket does not take goes to the
  connection's owner (the pool's I/O thread, the loop), so a normal client is still served
  at once (except under ``single``, which serves one connection at a time by design);
* no copy of the body per reader: the server's memory grows by well under 64 MiB for
  readers of the same 8 MiB bytes object (each used to hold head + body joined), and so
  does the kernel's for their send buffers (``TCP_NOTSENT_LOWAT``: 300 readers pinned
  about 1.1 GB of kernel memory without it, and the loop copying into it delayed normal
  clients under ``asyncio`` by up to 175 ms);
* a reader slower than ``--min-send-rate`` is dropped once ``--timeout-io`` of grace is
  spent, and the drop is logged and counted.

``THREADLOOM_SLOW_READERS`` sets how many readers (default 300, as the issue's attack).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable

import pytest

from tests.adversarial.support import (
    RAMP,
    ServerProcess,
    SlowReaders,
    kernel_tcp_mib,
    served_within,
    wait_until,
)
from threadloom.testing import MODELS, timeout_factor

READERS = int(os.environ.get("THREADLOOM_SLOW_READERS", "300"))
GRACE_S = 2.0  # --timeout-io (about 200 readers connected at once: see RELIABILITY.md)
RATE = 4096  # --min-send-rate: the readers take 32 bytes a second
HELLO = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

CASES = [
    *((m, "tests.adversarial.apps:eight_mib") for m in MODELS),
    ("asyncio", "tests.adversarial.apps:asgi_eight_mib"),
    *((m, "tests.adversarial.apps:file_eight_mib") for m in MODELS),  # wsgi.file_wrapper
]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "app"), CASES, ids=[f"{m}-{a.split(':')[1]}" for m, a in CASES])
def test_slow_readers_hold_no_worker_nor_copies_and_are_dropped(model: str, app: str) -> None:
    with ServerProcess(app, model, *ATTACKED) as server:
        report = attack_with_slow_readers(
            server,
            3 if model == "single" else READERS,
            lambda: served_within(server.address, 5, HELLO),
        )
    print(f"{model} {app}: {report}")


#: The server's flags under attack: a worker pool small enough to take whole.
ATTACKED = ("--threads", "4", "--timeout-io", str(GRACE_S), "--min-send-rate", str(RATE))


def attack_with_slow_readers(
    server: ServerProcess,
    count: int,
    probe: Callable[[], tuple[int, float]],
    context: ssl.SSLContext | None = None,
) -> str:
    """Run the attack on ``server`` while ``probe`` (a normal client) is answered in time;
    check the readers are dropped and cost no copies; return the figures."""
    single = server.model == "single"
    assert probe()[0] == 200
    SlowReaders(server.address, 1, context).stop()  # (a first big response: pages touched)
    time.sleep(0.2)
    before, kernel_before = server.rss_kib(), kernel_tcp_mib()
    readers = SlowReaders(server.address, count, context)
    grown_mib = kernel_mib = 0.0  # the most each was above `before` while readers were on

    def measure() -> None:
        nonlocal grown_mib, kernel_mib
        grown_mib = max(grown_mib, (server.rss_kib() - before) / 1024)
        kernel_mib = max(kernel_mib, kernel_tcp_mib() - kernel_before)

    try:
        slowest = 0.0
        probes = 0
        # probe while they connect and for as long again (the first are dropped by then)
        probing_ends = time.monotonic() + 2 * count / RAMP
        while not single and time.monotonic() < probing_ends:
            status, took = probe()
            assert status == 200, f"a normal client got {status} during the attack"
            slowest, probes = max(slowest, took), probes + 1
            measure()
            time.sleep(0.05)
        assert readers.connected.wait(30)
        measure()
        assert readers.all_closed((GRACE_S + 10) * timeout_factor() * (count if single else 1)), (
            f"{count - len(readers.closed)} of {count} slow readers still connected"
        )
    finally:
        readers.stop()

    def dropped() -> int:
        return server.stderr.count("reads its response too slowly (--min-send-rate)")

    wait_until(lambda: dropped() >= count, 5, f"{count} drops in the log")
    assert grown_mib < 64, f"{count} slow readers cost {grown_mib:.0f} MiB"
    assert kernel_mib < 64, f"{count} slow readers pinned {kernel_mib:.0f} MiB of kernel memory"
    if not single:
        assert slowest < 0.1 * timeout_factor(), f"a normal client waited {slowest:.3f}s"
    assert probe()[0] == 200
    return (
        f"{count} readers, {probes} probes, slowest {slowest * 1000:.0f} ms,"
        f" RSS +{grown_mib:.1f} MiB, kernel +{kernel_mib:.0f} MiB, {dropped()} dropped"
    )
