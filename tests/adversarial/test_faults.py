"""Faults from peers and from apps, under every model: the server recovers, leaks nothing
and never spins.

Peers: a reset before the server even accepted (waitress CVE-2024-49769), resets and
half-closes in the middle of a request and of a response. Apps: handlers that raise, hang
(``--timeout-request`` answers 503 for them) or leak (a socket left open, a stream the
client abandoned, a ``close()`` that raises). And many short connections: memory and
threads stay flat (CPython's ThreadingMixIn once kept every finished thread, bpo-37193).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.adversarial import apps
from tests.adversarial.support import (
    ServerProcess,
    closed_by_server,
    served_within,
    sockets,
    spent_cpu,
    status_of,
    wait_until,
)
from tests.http1.client import read_response
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.testing import CONCURRENT_MODELS, MODELS, running_server, timeout_factor

ROUTER = "tests.adversarial.apps:router"


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture(scope="module", params=MODELS)
def router_process(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server process per model for the peer faults (they must not disturb it)."""
    with ServerProcess(ROUTER, str(request.param), "--timeout-io", "2") as server:
        assert served_within(server.address, 5)[0] == 200
        time.sleep(0.2)
        yield server


def _settled(server: ServerProcess, fds: int) -> None:
    """The server is back where it was: its descriptors freed, idle, still serving."""
    wait_until(lambda: server.fds() <= fds, 10, "the server to release the connections")
    assert spent_cpu(server.pid, 0.3) < 0.15, "the server is spinning"
    assert served_within(server.address, 5)[0] == 200


@pytest.mark.slow
def test_peers_that_reset_before_accept(router_process: ServerProcess) -> None:
    """Connect and reset at once, 300 times: accept() meets dead peers (CVE-2024-49769)."""
    fds = router_process.fds()
    for _ in range(300):
        sock = socket.socket()
        sock.connect(router_process.address)
        _reset(sock)
    _settled(router_process, fds)


MID_REQUEST = [
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 200_000,
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ",
]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["reset", "half-close"])
def test_resets_and_half_closes_mid_request(router_process: ServerProcess, how: str) -> None:
    fds = router_process.fds()
    for raw in MID_REQUEST:
        sock = socket.create_connection(router_process.address)
        sock.sendall(raw)
        if how == "reset":
            _reset(sock)
            continue
        sock.shutdown(socket.SHUT_WR)  # EOF in the middle: never a request, at most a 400
        sock.settimeout(5 * timeout_factor())
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
        sock.close()
        assert not reply or reply.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 200 ")), reply[:80]
        if raw.endswith((b"partial", b"hel", b": ")):  # a small broken request: never served
            assert not reply.startswith(b"HTTP/1.1 200 "), raw
    _settled(router_process, fds)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/big", "/endless", "/sse"])
def test_resets_and_half_closes_mid_response(router_process: ServerProcess, path: str) -> None:
    fds = router_process.fds()
    for how in ("reset", "half-close", "close"):
        sock = socket.create_connection(router_process.address)
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        if how == "reset":
            _reset(sock)
        elif how == "close":
            sock.close()
        else:
            sock.shutdown(socket.SHUT_WR)  # we said all we had to say; the stream goes on
            assert sock.recv(65536)
            sock.close()
    _settled(router_process, fds)


def test_half_close_after_a_whole_request_still_gets_the_response() -> None:
    """A client may shut its write side once its request is sent (RFC 9112 9.6)."""
    for model in MODELS:
        with (
            running_server(apps.hello, model=model, access_log=False) as server,
            socket.create_connection(server.addresses[0]) as sock,
        ):
            sock.settimeout(5 * timeout_factor())
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            response = read_response(sock, bytearray())
            assert response.status == 200 and response.body == b"Hello, world!", model
            assert closed_by_server(sock, 5)


# -- apps that raise, hang or leak ---------------------------------------------------------


@pytest.mark.slow
def test_handlers_that_raise_lose_only_their_request(router_process: ServerProcess) -> None:
    fds = router_process.fds()
    threads = router_process.threads()
    raw = b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n"
    assert [status_of(router_process.address, raw) for _ in range(50)] == [500] * 50
    _settled(router_process, fds)
    assert router_process.threads() <= threads + 1  # asyncio may start one more pool thread
    assert "app raised" in router_process.stderr


@pytest.fixture
def gate() -> Iterator[type[apps.Gate]]:
    """The gate that holds ``/hang``; always opened at the end so no thread outlives a test."""
    apps.Gate.event.clear()
    apps.Gate.entered = threading.Semaphore(0)
    yield apps.Gate
    apps.Gate.event.set()


@pytest.mark.parametrize("model", MODELS)
def test_hanging_handler_gets_503_from_timeout_request(
    model: str, gate: type[apps.Gate], caplog: pytest.LogCaptureFixture
) -> None:
    """``--timeout-request``: the client is answered 503 and let go; the stuck thread is
    logged with where it is stuck, and the server goes on (one at a time under single)."""
    caplog.set_level(logging.ERROR, logger="threadloom.http")
    limit = 0.5 * timeout_factor()
    with running_server(apps.hang, model=model, access_log=False, timeout_request=limit) as srv:
        status, took = served_within(srv.addresses[0], 10, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503
        assert limit * 0.9 <= took < limit + 2 * timeout_factor()
        if model == "single":
            gate.event.set()  # single is stuck with the app until it returns
        assert served_within(srv.addresses[0], 5)[0] == 200
        gate.event.set()
    messages = [r.getMessage() for r in caplog.records if "--timeout-request" in r.getMessage()]
    assert len(messages) == 1 and "in hang" in messages[0] and "Gate.event.wait" in messages[0]


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_timeout_request_frees_clients_of_every_stuck_thread(
    model: str, gate: type[apps.Gate]
) -> None:
    """Four hung requests with four threads: each client gets its 503; meanwhile the pool is
    used up (threads cannot be killed), which is why the default is off; once the app
    returns, service resumes."""
    options = {"threads": 4, "timeout_request": 0.3 * timeout_factor(), "access_log": False}
    with running_server(apps.hang, model=model, **options) as srv:
        hung = b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n"
        results: list[int] = []
        clients = [
            threading.Thread(target=lambda: results.append(status_of(srv.addresses[0], hung)))
            for _ in range(4)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10 * timeout_factor())
        assert results == [503] * 4
        gate.event.set()
        assert served_within(srv.addresses[0], 5)[0] == 200


@pytest.mark.parametrize("model", MODELS)
def test_timeout_request_never_cuts_a_response_that_started(model: str) -> None:
    """Once bytes are on their way the timeout is over: a slow stream is not cut."""

    def slow_stream(environ: dict[str, object], start_response: object) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        yield b"first "
        time.sleep(0.6)
        yield b"second"

    with (
        running_server(slow_stream, model=model, access_log=False, timeout_request=0.2) as srv,
        socket.create_connection(srv.addresses[0]) as sock,
    ):
        sock.settimeout(5 * timeout_factor())
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, bytearray()).body == b"first second"


def test_timeout_request_is_validated() -> None:
    with pytest.raises(ConfigError, match="timeout-request"):
        Config(timeout_request=-1).validated()
    assert Config().timeout_request == 0  # off unless asked for: see RELIABILITY.md


def _fds() -> int:
    return sockets(os.getpid())


@pytest.mark.parametrize("model", MODELS)
def test_handlers_that_leak_their_socket_or_stream(model: str) -> None:
    """A raw handler that never closes its socket, a stream the client walks away from, a
    ``close()`` that raises: the server closes and releases all of them."""
    with running_server(apps.leaky_raw, model=model) as srv:
        fds = _fds()
        for _ in range(30):
            with socket.create_connection(srv.addresses[0]) as sock:
                sock.sendall(b"hi")
                assert sock.recv(10) == b"bye"
        wait_until(lambda: _fds() <= fds, 5, "the raw sockets to be closed")
    apps.Tracked.closed = 0
    with running_server(apps.router, model=model, access_log=False) as srv:
        fds = _fds()
        for _ in range(10):
            with socket.create_connection(srv.addresses[0]) as sock:
                sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536)
        assert status_of(srv.addresses[0], b"GET /bad-close HTTP/1.1\r\nHost: x\r\n\r\n") == 200
        wait_until(lambda: apps.Tracked.closed == 10, 10, "the abandoned streams to be closed")
        wait_until(lambda: _fds() <= fds, 5, "the connections to be released")


def test_asgi_app_that_never_finishes_its_response() -> None:
    with running_server(apps.asgi_app, model="asyncio", access_log=False) as srv:
        fds = _fds()
        for _ in range(10):
            with socket.create_connection(srv.addresses[0]) as sock:
                sock.sendall(b"GET /incomplete HTTP/1.1\r\nHost: x\r\n\r\n")
                assert closed_by_server(sock, 5)
        wait_until(lambda: _fds() <= fds, 5, "the connections to be released")
        assert served_within(srv.addresses[0], 5)[0] == 200


# -- many short connections ------------------------------------------------------------------

#: The CI version; benchmarks/soak.py --connections 1000000 is the long one.
SHORT_CONNECTIONS = 2000


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_short_connections_leave_memory_and_threads_flat(model: str) -> None:
    with ServerProcess("tests.adversarial.apps:hello", model) as server:
        for _ in range(300):  # warm up: pools, caches and allocator arenas fill
            status_of(server.address)
        time.sleep(0.2)
        rss, threads = server.rss_kib(), server.threads()
        statuses = [status_of(server.address) for _ in range(SHORT_CONNECTIONS)]
        assert statuses == [200] * SHORT_CONNECTIONS
        time.sleep(0.2)
        grown = server.rss_kib() - rss
        assert grown < 4096, f"{SHORT_CONNECTIONS} connections grew memory {grown} KiB"
        assert server.threads() <= threads, "finished connections left threads behind"


def test_asgi_app_sending_in_a_loop_to_a_peer_that_reset() -> None:
    """``while True: await send(...)`` to a client that reset: before the fix the loop never
    yielded (writes to a closing transport were dropped without a pause), so the event loop
    span for ever and served nobody."""
    with ServerProcess("tests.adversarial.apps:asgi_app", "asyncio") as server:
        for _ in range(3):
            sock = socket.create_connection(server.address)
            sock.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            _reset(sock)
        time.sleep(0.3)
        assert spent_cpu(server.pid, 0.5) < 0.25, "the event loop spins"
        assert served_within(server.address, 5)[0] == 200
