"""The slow-read attack: hundreds of clients ask for a large response (pipelined) and read
it a few bytes at a time through a tiny TCP window, under every model.

What must hold (RELIABILITY.md has the figures):

* a slow reader never holds a worker: what the socket does not take goes to the
  connection's owner (the pool's I/O thread, the loop), so a normal client is still served
  at once (except under ``single``, which serves one connection at a time by design);
* no copy of the body per reader: the server's memory grows by well under 64 MiB for
  readers of the same 8 MiB bytes object (each used to hold head + body joined);
* a reader slower than ``--min-send-rate`` is dropped once ``--timeout-io`` of grace is
  spent, and the drop is logged and counted.

``THREADLOOM_SLOW_READERS`` sets how many readers (default 300).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.adversarial.support import ServerProcess, served_within, wait_until
from threadloom.testing import MODELS, timeout_factor

READERS = int(os.environ.get("THREADLOOM_SLOW_READERS", "300"))
GRACE_S = 2.0  # --timeout-io (about 200 readers connected at once: see RELIABILITY.md)
RAMP = 100  # new readers a second (slowhttptest -r: 50 by default)
RATE = 4096  # --min-send-rate: the readers take 32 bytes a second
HELLO = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
BIG = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

CASES = [
    *((m, "tests.adversarial.apps:eight_mib") for m in MODELS),
    ("asyncio", "tests.adversarial.apps:asgi_eight_mib"),
    *((m, "tests.adversarial.apps:file_eight_mib") for m in MODELS),  # wsgi.file_wrapper
]


_TCP_ESTABLISHED = 1


def _established(sock: socket.socket) -> bool:
    """Whether the server still holds the connection. A reset (how a slow reader is
    dropped) leaves the bytes already received readable, which at 32 bytes a second would
    take minutes to reach: the kernel's TCP state says it at once."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == _TCP_ESTABLISHED


class SlowReaders:
    """Connections with a 4 KiB receive buffer that pipeline two requests for the big
    response, then read 32 bytes from each, once a second, on one thread."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.address = address
        self.count = count
        self.socks: list[socket.socket] = []
        self.closed: set[socket.socket] = set()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._attack, name="test-slow-readers")
        self._thread.start()

    def _attack(self) -> None:
        """Connect at RAMP connections a second (as slowhttptest's -r), then read."""
        started = time.monotonic()
        for n in range(self.count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(self.address)
            sock.sendall(BIG + BIG)
            sock.setblocking(False)
            self.socks.append(sock)
            time.sleep(max(started + (n + 1) / RAMP - time.monotonic(), 0.0))
        self.connected.set()
        while not self._stop.wait(1.0):
            for sock in self.socks:
                if sock in self.closed:
                    continue
                try:
                    if not sock.recv(32) or not _established(sock):
                        self.closed.add(sock)
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed.add(sock)

    def all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.closed) < len(self.socks) and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.closed) == len(self.socks)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.connected.set()
        for sock in self.socks:
            sock.close()


@pytest.mark.slow
@pytest.mark.parametrize(("model", "app"), CASES, ids=[f"{m}-{a.split(':')[1]}" for m, a in CASES])
def test_slow_readers_hold_no_worker_nor_copies_and_are_dropped(model: str, app: str) -> None:
    count = 3 if model == "single" else READERS
    args = ("--threads", "4", "--timeout-io", str(GRACE_S), "--min-send-rate", str(RATE))
    with ServerProcess(app, model, *args) as server:
        assert served_within(server.address, 5, HELLO)[0] == 200
        served_within(server.address, 5, BIG)  # the big body built once, the pages touched
        time.sleep(0.2)
        before = server.rss_kib()
        readers = SlowReaders(server.address, count)
        try:
            slowest = 0.0
            probes = 0
            # probe while they connect and for as long again (the first are dropped by then)
            probing_ends = time.monotonic() + 2 * count / RAMP
            while model != "single" and time.monotonic() < probing_ends:
                status, took = served_within(server.address, 5, HELLO)
                assert status == 200, f"a normal client got {status} during the attack"
                slowest, probes = max(slowest, took), probes + 1
                time.sleep(0.05)
            assert readers.connected.wait(30)
            grown_mib = (server.rss_kib() - before) / 1024
            assert readers.all_closed(
                (GRACE_S + 10) * timeout_factor() * (count if model == "single" else 1)
            ), f"{count - len(readers.closed)} of {count} slow readers still connected"
        finally:
            readers.stop()

        def dropped() -> int:
            return server.stderr.count("reads its response too slowly (--min-send-rate)")

        wait_until(lambda: dropped() >= count, 5, f"{count} drops in the log")
        assert grown_mib < 64, f"{count} slow readers cost {grown_mib:.0f} MiB"
        if model != "single":
            assert slowest < 0.1 * timeout_factor(), f"a normal client waited {slowest:.3f}s"
        print(
            f"{model} {app}: {count} readers, {probes} probes, slowest {slowest * 1000:.0f} ms,"
            f" RSS +{grown_mib:.1f} MiB, {dropped()} dropped"
        )
        assert served_within(server.address, 5, HELLO)[0] == 200
