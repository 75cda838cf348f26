"""Slowloris, slow POST and slow readers, under every model.

Hundreds of clients dribble request heads or bodies; a normal client must still be served
within a second (one at a time under ``single``, which is what that model is), and the
dribblers must be cut off by the timeouts: ``--timeout-header`` for a head (counted from its
first byte, so dribbling does not extend it), ``--timeout-io`` plus ``--min-body-rate`` for
a body. Clients that never read a big response cost a bounded buffer, and their writes give
up after ``--timeout-io``.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from tests.adversarial import apps
from tests.adversarial.support import (
    ServerProcess,
    closed_by_server,
    served_within,
    spent_cpu,
    wait_until,
)
from threadloom.testing import MODELS, running_server, timeout_factor

#: Dribblers per concurrent model; ``single`` gets a few (each waits its turn in the backlog).
CROWD = 200


def crowd(model: str) -> int:
    return 2 if model == "single" else CROWD


class Dribblers:
    """Many connections that send a request a little at a time and never finish it."""

    def __init__(self, address: object, count: int, first: bytes) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(address)  # type: ignore[arg-type]
            sock.setblocking(False)
            sock.send(first)
            self.socks.append(sock)

    def drip(self, data: bytes) -> None:
        for sock in self.socks:
            try:
                sock.send(data)
            except OSError:
                pass  # already cut off

    def wait_closed(self, timeout: float, drip: bytes = b"") -> int:
        """Go on dripping ``drip`` every 0.25 s until the server has closed every one (a
        dribbler never stops on its own); return how many are still open after ``timeout``."""
        open_ = set(self.socks)
        deadline = time.monotonic() + timeout * timeout_factor()
        next_drip = time.monotonic()
        with selectors.DefaultSelector() as selector:
            for sock in open_:
                selector.register(sock, selectors.EVENT_READ)
            while open_ and time.monotonic() < deadline:
                if drip and time.monotonic() >= next_drip:
                    self.drip(drip)
                    next_drip = time.monotonic() + 0.25
                wait = min(deadline, next_drip if drip else deadline) - time.monotonic()
                for key, _ in selector.select(max(wait, 0.0)):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                        open_.discard(sock)
        return len(open_)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


@pytest.fixture
def dribblers() -> Iterator[list[Dribblers]]:
    made: list[Dribblers] = []
    yield made
    for group in made:
        group.close()


def _dribble_while_served(
    server_address: object, group: Dribblers, drip: bytes, model: str
) -> tuple[int, float]:
    """Drip for about a second while one normal client is served; its (status, seconds)."""
    group.drip(drip)
    if model == "single":
        return served_within(server_address, 10)
    status, took = served_within(server_address, 5)
    for _ in range(4):
        time.sleep(0.25)
        group.drip(drip)
    return status, took


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_slowloris_heads_are_cut_off_and_others_served(
    model: str, dribblers: list[Dribblers]
) -> None:
    timeout = 1.0 * timeout_factor()
    with running_server(apps.hello, model=model, access_log=False, timeout_header=timeout) as srv:
        group = Dribblers(srv.addresses[0], crowd(model), b"GET / HTTP/1.1\r\nHost: x\r\n")
        dribblers.append(group)
        status, took = _dribble_while_served(srv.addresses[0], group, b"X-Drip: 1\r\n", model)
        assert status == 200
        if model == "single":
            # one at a time: the client waits until each dribbler ahead of it is cut off
            assert took >= 0.5 * timeout
        else:
            assert took < 1.0 * timeout_factor(), f"a normal client waited {took:.2f}s"
        # the deadline counts from a head's first byte: dribbling never pushes it back
        drip = b"X-Drip: 1\r\n"
        left = group.wait_closed(timeout * (crowd(model) if model == "single" else 1) + 3, drip)
        assert left == 0, f"{left} dribbling heads outlived --timeout-header"
        assert served_within(srv.addresses[0], 5)[0] == 200


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_slow_post_bodies_are_cut_off_and_others_served(
    model: str, dribblers: list[Dribblers]
) -> None:
    timeout = 1.0 * timeout_factor()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    with running_server(apps.echo, model=model, access_log=False, timeout_io=timeout) as srv:
        group = Dribblers(srv.addresses[0], crowd(model), head + b"a")
        dribblers.append(group)
        status, took = _dribble_while_served(srv.addresses[0], group, b"b", model)
        assert status == 200
        if model != "single":
            assert took < 1.0 * timeout_factor(), f"a normal client waited {took:.2f}s"
        # a byte every 0.25 s beats the stall bound but not the body budget (1 KiB/s)
        left = group.wait_closed(timeout * (crowd(model) if model == "single" else 2) + 3, b"b")
        assert left == 0, f"{left} dribbling bodies outlived --timeout-io/--min-body-rate"
        assert served_within(srv.addresses[0], 5)[0] == 200


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pool", "asyncio"])
def test_slow_uploads_holding_workers_are_cut_off(model: str, dribblers: list[Dribblers]) -> None:
    """Bodies over 64 KiB go to a worker thread before they are complete: dribbling the rest
    would hold every worker for ever without the body budget (``--min-body-rate``)."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 70_000
    with running_server(
        apps.echo,
        model=model,
        threads=2,
        access_log=False,
        timeout_io=1.0 * timeout_factor(),
        min_body_rate=1_000_000,  # 70 KB buy only 70 ms beyond the grace
    ) as srv:
        group = Dribblers(srv.addresses[0], 4, head)
        dribblers.append(group)
        for _ in range(4):
            time.sleep(0.25)
            group.drip(b"b")
        assert group.wait_closed(5) == 0, "slow uploads held their workers"
        assert served_within(srv.addresses[0], 5)[0] == 200


def _never_read(address: object, raw: bytes, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        sock.sendall(raw)
        socks.append(sock)
    return socks


SLOW_READER_APPS = [(m, "tests.adversarial.apps:big", "/") for m in MODELS] + [
    ("asyncio", "tests.adversarial.apps:asgi_app", "/big")
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "app", "path"),
    SLOW_READER_APPS,
    ids=[f"{m}-{a[-3:]}" for m, a, _ in SLOW_READER_APPS],
)
def test_slow_readers_cost_bounded_memory_and_time_out(model: str, app: str, path: str) -> None:
    """10 clients ask for 32 MiB each and never read: the server keeps a bounded buffer
    per client (not 320 MiB), gives up on each after ``--timeout-io`` and frees it."""
    count = 1 if model == "single" else 10
    with ServerProcess(app, model, "--timeout-io", str(0.5 * timeout_factor())) as server:
        assert served_within(server.address, 5)[0] == 200
        time.sleep(0.3)  # the first request's connection is released
        fds, peak = server.fds(), server.peak_kib()
        raw = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()
        socks = _never_read(server.address, raw, count)
        try:
            time.sleep(0.5)  # let the server fill the socket buffers
            wait_until(lambda: server.fds() <= fds, 15, "the stalled writes to time out")
            grown_mib = (server.peak_kib() - peak) / 1024
            assert grown_mib < 48, f"{count} stalled readers cost {grown_mib:.0f} MiB"
            assert spent_cpu(server.pid, 0.5) < 0.3
            assert all(closed_by_server(sock, 5) for sock in socks)
            assert served_within(server.address, 5)[0] == 200
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("model", MODELS)
def test_head_deadlines_are_kept_to_the_tenth_of_a_second(model: str) -> None:
    """Heads begun at staggered moments are each cut off ``--timeout-header`` after their
    first byte, not whenever a periodic sweep comes round (``pool`` swept twice a second
    and cut some up to 0.5 s late)."""
    timeout, count = 1.0, 1 if model == "single" else 12
    with running_server(apps.hello, model=model, access_log=False, timeout_header=timeout) as srv:
        socks, began = [], []
        for _ in range(count):
            sock = socket.create_connection(srv.addresses[0])
            sock.sendall(b"GET / HTTP/1.1\r\n")
            began.append(time.monotonic())
            socks.append(sock)
            time.sleep(0.07)
        late = []
        try:
            for sock, start in zip(socks, began, strict=True):
                sock.settimeout(5 * timeout_factor())
                assert b"408" in sock.recv(4096)
                while sock.recv(4096):
                    pass
                late.append(time.monotonic() - start - timeout)
        finally:
            for sock in socks:
                sock.close()
        # the last socket is read last: its lateness is the truest measure
        assert max(late) < 0.25 * timeout_factor(), [f"{x:.2f}" for x in late]
