"""WebSocket attacks, under every model (sync handlers) and asyncio (async handlers).

A permessage-deflate bomb (the limit counts decompressed bytes, websockets
CVE-2018-1000518), floods of pings and of tiny fragments, a peer that never reads (the send
buffer stays bounded and the write times out) and a peer that never answers our Close (the
TCP connection is dropped after the close timeout). The server runs in a process of its own
so that its peak memory can be read.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.adversarial import apps, wsraw
from tests.adversarial.support import ServerProcess, spent_cpu, wait_until
from threadloom.engine import ws_session
from threadloom.testing import MODELS, running_server, timeout_factor

MAX = 1024 * 1024
HANDLERS = [(m, "ws_echo") for m in MODELS] + [("asyncio", "ws_echo_async")]
#: 64 MiB of zeros deflate to about 64 KiB: a bomb against a 1 MiB limit.
BOMB = wsraw.deflated(bytes(64 * MAX))


@pytest.fixture(scope="module", params=HANDLERS, ids=[f"{m}-{h}" for m, h in HANDLERS])
def ws_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    model, handler = request.param
    with ServerProcess(
        f"tests.adversarial.apps:{handler}",
        model,
        "--timeout-io",
        str(1.0 * timeout_factor()),
        "--ws-max-size",
        str(MAX),
        "--threads",
        "16",
    ) as server:
        sock = wsraw.handshake(server.address)  # warm up: the first connection costs most
        sock.sendall(wsraw.frame(0x1, b"warm"))
        assert wsraw.read_frame(sock) == (0x1, b"warm")
        sock.close()
        yield server


def _grown_mib(server: ServerProcess, peak: int) -> float:
    return (server.peak_kib() - peak) / 1024


@pytest.mark.slow
def test_deflate_bomb_is_closed_with_1009_without_inflating(ws_server: ServerProcess) -> None:
    peak = ws_server.peak_kib()
    for _ in range(5):
        sock = wsraw.handshake(ws_server.address, deflate=True)
        sock.sendall(wsraw.frame(0x2, BOMB, rsv1=True))
        assert wsraw.close_code(sock) == 1009
        sock.close()
    assert _grown_mib(ws_server, peak) < 16, "the bomb was inflated"


@pytest.mark.slow
def test_tiny_fragment_flood(ws_server: ServerProcess) -> None:
    """A message sent one byte per frame: over the limit it is closed with 1009, and the
    fragments on the way cost about what they carry."""
    peak = ws_server.peak_kib()
    sock = wsraw.handshake(ws_server.address)
    one = wsraw.frame(0x0, b"z", fin=False)
    sock.sendall(wsraw.frame(0x2, b"z", fin=False))
    try:
        for _ in range(MAX // 4096 + 8):  # a little over the 1 MiB limit
            sock.sendall(one * 4096)
    except OSError:
        pass  # closed once over the limit
    assert wsraw.close_code(sock) == 1009
    sock.close()
    assert _grown_mib(ws_server, peak) < 16
    # empty fragments never grow the message: a flood of them is only CPU, then it ends
    sock = wsraw.handshake(ws_server.address)
    sock.sendall(wsraw.frame(0x1, b"", fin=False) + wsraw.frame(0x0, b"", fin=False) * 100_000)
    sock.sendall(wsraw.frame(0x0, b"end"))
    assert wsraw.read_frame(sock) == (0x1, b"end")
    sock.close()


@pytest.mark.slow
def test_ping_flood_from_a_reading_peer_is_answered(ws_server: ServerProcess) -> None:
    sock = wsraw.handshake(ws_server.address)
    sock.sendall(wsraw.frame(0x9, b"p") * 10_000 + wsraw.frame(0x1, b"after"))
    pongs = 0
    while (frame := wsraw.read_frame(sock))[0] == 0xA:
        pongs += 1
    assert frame == (0x1, b"after") and pongs == 10_000
    sock.close()


@pytest.mark.slow
def test_ping_flood_from_a_peer_that_never_reads(ws_server: ServerProcess) -> None:
    """The pongs it never reads stop the server reading more pings (no growing buffer),
    and after --timeout-io of that the connection is dropped."""
    peak, fds = ws_server.peak_kib(), ws_server.fds()
    sock = wsraw.handshake(ws_server.address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(0.5)
    pings = wsraw.frame(0x9, b"p" * 125) * 1000
    deadline = time.monotonic() + 10 * timeout_factor()
    try:
        while time.monotonic() < deadline:
            sock.sendall(pings)
    except OSError:
        pass  # the server stopped reading, then dropped us
    assert _grown_mib(ws_server, peak) < 16
    wait_until(lambda: ws_server.fds() <= fds, 10, "the stalled connection to be dropped")
    sock.close()
    assert spent_cpu(ws_server.pid, 0.3) < 0.2


FLOODERS = [(m, "ws_flood") for m in MODELS] + [("asyncio", "ws_flood_async")]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "handler"), FLOODERS, ids=[f"{m}-{h}" for m, h in FLOODERS])
def test_peer_that_never_reads_bounded_buffer_and_write_timeout(model: str, handler: str) -> None:
    """A handler that sends 64 KiB messages for ever to a peer that reads none: its send
    blocks (a bounded buffer), then fails after --timeout-io, and the connection is gone."""
    with ServerProcess(f"tests.adversarial.apps:{handler}", model, "--timeout-io", "1") as server:
        warm = wsraw.handshake(server.address)  # the first sync handler sets up the pool
        warm.sendall(wsraw.frame(0x1, b"go"))
        assert wsraw.read_frame(warm)[0] == 0x2
        warm.close()
        time.sleep(0.3)
        socks = []
        try:
            fds, peak = server.fds(), server.peak_kib()
            for _ in range(1 if model == "single" else 5):
                sock = wsraw.handshake(server.address)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(wsraw.frame(0x1, b"go"))
                socks.append(sock)
            time.sleep(0.5)
            wait_until(lambda: server.fds() <= fds, 10, "the stalled sends to time out")
            assert _grown_mib(server, peak) < 32
            assert "Traceback" not in server.stderr
        finally:
            for sock in socks:
                sock.close()


class Dribblers:
    """WebSocket peers with a 4 KiB window that read 2 KiB a second each, on one thread."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.socks = []
        for _ in range(count):
            sock = wsraw.handshake(address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(wsraw.frame(0x1, b"go"))
            sock.setblocking(False)
            self.socks.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, name="test-ws-dribblers")
        self._thread.start()

    def _dribble(self) -> None:
        while not self._stop.wait(1.0):
            for sock in self.socks:
                try:
                    sock.recv(2048)
                except OSError:
                    pass  # (nothing yet, or dropped: the test watches the server's fds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


TRICKLERS = [(m, "ws_trickle") for m in MODELS] + [("asyncio", "ws_trickle_async")]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "handler"), TRICKLERS, ids=[f"{m}-{h}" for m, h in TRICKLERS])
def test_peer_that_reads_a_little_now_and_then_is_dropped(model: str, handler: str) -> None:
    """A peer that takes 2 KiB a second lets each small send through within the stall
    bound, so that bound alone never ends it: --min-send-rate does, after the grace."""
    rate = ("--timeout-io", "3", "--min-send-rate", "4096")
    with ServerProcess(f"tests.adversarial.apps:{handler}", model, *rate) as server:
        warm = wsraw.handshake(server.address)  # the first sync handler sets up the pool
        warm.sendall(wsraw.frame(0x1, b"go"))
        assert wsraw.read_frame(warm)[0] == 0x2
        warm.close()
        time.sleep(0.3)
        fds, peak = server.fds(), server.peak_kib()
        dribblers = Dribblers(server.address, 1 if model == "single" else 5)
        try:
            wait_until(lambda: server.fds() <= fds, 30, "the dribbling readers to be dropped")
            assert _grown_mib(server, peak) < 32
            assert "Traceback" not in server.stderr
        finally:
            dribblers.stop()


CLOSERS = [(m, apps.ws_close_at_once) for m in MODELS] + [("asyncio", apps.ws_close_at_once_async)]


@pytest.mark.parametrize(
    ("model", "handler"), CLOSERS, ids=[f"{m}-{h.__name__}" for m, h in CLOSERS]
)
def test_peer_that_never_answers_our_close(
    model: str, handler: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """We close first; the peer never sends its Close: TCP is dropped after the close
    timeout (5 s; 0.5 s here) instead of waiting for ever."""
    monkeypatch.setattr(ws_session, "CLOSE_TIMEOUT", 0.5)
    with running_server(handler, model=model, access_log=False) as server:
        sock = wsraw.handshake(server.addresses[0])
        started = time.monotonic()
        assert wsraw.close_code(sock) == 1000
        with pytest.raises(ConnectionError):
            wsraw.read_frame(sock)  # nothing more, then EOF: we never answered
        assert time.monotonic() - started < 0.5 + 3 * timeout_factor()
        sock.close()


@pytest.mark.parametrize("model", MODELS)
def test_sender_in_a_loop_to_a_peer_that_reset(model: str) -> None:
    """A handler that sends in a tight loop while its peer resets: its send fails, and the
    server (the event loop under asyncio) goes on serving others."""
    handler = "ws_flood_async" if model == "asyncio" else "ws_flood"
    with ServerProcess(f"tests.adversarial.apps:{handler}", model) as server:
        for _ in range(3):
            sock = wsraw.handshake(server.address)
            sock.sendall(wsraw.frame(0x1, b"go"))
            assert wsraw.read_frame(sock)[0] == 0x2
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(0.3)
        assert spent_cpu(server.pid, 0.5) < 0.25, "the server spins"
        wsraw.handshake(server.address).close()  # still serving
