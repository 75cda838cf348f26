"""Shutdown with long-lived work open, under every model: the first pain in every peer's
tracker (uvicorn #451 and #675, gunicorn #2529, granian #568).

SIGTERM with open WebSockets closes each with 1001 ("going away"); streaming responses and
server-sent events end at ``--graceful-timeout``; and the process always exits in time, even
when a peer never answers its Close.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tests.adversarial import wsraw
from tests.adversarial.support import ServerProcess, wait_until
from threadloom.testing import MODELS, timeout_factor

GRACE = 1.0
#: How long after the grace period a process may take to be gone (interpreter exit).
SLACK = 5.0
LISTENERS = [(m, "ws_listen") for m in MODELS] + [("asyncio", "ws_listen_async")]


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Client sockets, closed at the end whatever happened."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def _exits_in_time(server: ServerProcess, grace: float) -> float:
    """Seconds from now until the process exited, asserted within grace + slack."""
    started = time.monotonic()
    status = server.wait((grace + SLACK) * timeout_factor())
    assert status == 0, server.stderr
    return time.monotonic() - started


def _sigterm_with_websockets_open(
    server: ServerProcess, model: str, opened: list[socket.socket]
) -> list[socket.socket]:
    """Open WebSockets (one under single), SIGTERM, and check each is told 1001."""
    socks = [wsraw.handshake(server.address) for _ in range(1 if model == "single" else 3)]
    opened.extend(socks)
    server.signal(signal.SIGTERM)
    for sock in socks:
        assert wsraw.close_code(sock) == 1001
    return socks


@pytest.mark.slow
@pytest.mark.parametrize(("model", "handler"), LISTENERS, ids=[f"{m}-{h}" for m, h in LISTENERS])
def test_sigterm_closes_websockets_with_1001(
    model: str, handler: str, opened: list[socket.socket]
) -> None:
    with ServerProcess(
        f"tests.adversarial.apps:{handler}", model, "--graceful-timeout", str(GRACE)
    ) as server:
        for sock in _sigterm_with_websockets_open(server, model, opened):
            sock.sendall(wsraw.frame(0x8, b"\x03\xe9"))  # our Close (1001) completes it
        took = _exits_in_time(server, GRACE)
        assert took < GRACE, f"a clean close handshake still waited {took:.2f}s"


@pytest.mark.slow
@pytest.mark.parametrize(("model", "handler"), LISTENERS, ids=[f"{m}-{h}" for m, h in LISTENERS])
def test_sigterm_with_peers_that_never_answer_the_close(
    model: str, handler: str, opened: list[socket.socket]
) -> None:
    with ServerProcess(
        f"tests.adversarial.apps:{handler}", model, "--graceful-timeout", str(GRACE)
    ) as server:
        _sigterm_with_websockets_open(server, model, opened)  # and we never answer the close
        _exits_in_time(server, GRACE)


STREAMS = [(m, "tests.adversarial.apps:router") for m in MODELS] + [
    ("asyncio", "tests.adversarial.apps:asgi_app")
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "app"), STREAMS, ids=[f"{m}-{a.rsplit(':', 1)[1]}" for m, a in STREAMS]
)
def test_sigterm_ends_streams_and_sse_at_the_graceful_timeout(
    model: str, app: str, opened: list[socket.socket]
) -> None:
    with ServerProcess(app, model, "--graceful-timeout", str(GRACE)) as server:
        socks = opened
        for _ in range(1 if model == "single" else 3):
            sock = socket.create_connection(server.address)
            socks.append(sock)
            sock.settimeout((GRACE + SLACK) * timeout_factor())
            sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"data: tick" in sock.recv(65536)
        server.signal(signal.SIGTERM)
        started = time.monotonic()
        for sock in socks:
            while sock.recv(65536):  # events go on during the grace period, then the end
                pass
        ended = time.monotonic() - started
        assert 0.5 * GRACE <= ended < GRACE + SLACK * timeout_factor()
        _exits_in_time(server, GRACE)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_second_sigterm_stops_at_once(model: str, opened: list[socket.socket]) -> None:
    with ServerProcess(
        "tests.adversarial.apps:router", model, "--graceful-timeout", "30"
    ) as server:
        sock = socket.create_connection(server.address)
        opened.append(sock)
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)
        server.signal(signal.SIGTERM)
        # two signals before Python runs its handler count as one (CPython keeps a flag,
        # not a count): send the second once the first has been acted on
        wait_until(lambda: "stopping gracefully" in server.stderr, 10, "the first SIGTERM")
        server.signal(signal.SIGTERM)
        started = time.monotonic()
        # cut short (not a clean exit), long before the 30 s of grace
        try:
            status = server.wait(2 * SLACK * timeout_factor())
        except Exception as exc:
            raise AssertionError(server.stderr) from exc
        assert status != 0
        assert time.monotonic() - started < 2 * SLACK * timeout_factor()
