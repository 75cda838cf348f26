"""The tutorial's raw TCP handlers under every model that can run them (real sockets)."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import talk
from tests.models import handlers
from threadloom.testing import CONCURRENT_MODELS, MODELS, running_server, timeout_factor

SYNC_HANDLERS = [handlers.handle_client, handlers.RequestHandler]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("handler", SYNC_HANDLERS, ids=["function", "socketserver-class"])
def test_tutorial_sync_handler(model: str, handler: Any) -> None:
    with running_server(handler, model=model) as server:
        for _ in range(3):
            assert talk(server.addresses[0]) == b"Hello from server!"


def test_tutorial_async_handler_under_asyncio() -> None:
    with running_server(handlers.handle_streams, model="asyncio") as server:
        assert talk(server.addresses[0]) == b"Hello from server!"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops(loop: str) -> None:
    pytest.importorskip(loop)
    with running_server(handlers.handle_streams, model="asyncio", loop=loop) as server:
        assert talk(server.addresses[0]) == b"Hello from server!"


def _eight_slow_clients(address: Any) -> tuple[float, list[bytes]]:
    started = time.monotonic()
    with ThreadPoolExecutor(8) as clients:
        replies = list(clients.map(lambda _: talk(address, timeout=10), range(8)))
    return time.monotonic() - started, replies


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_eight_slow_clients_served_at_once(model: str) -> None:
    with running_server(handlers.slow_handler, model=model, threads=8) as server:
        elapsed, replies = _eight_slow_clients(server.addresses[0])
    assert replies == [b"slow hello"] * 8
    assert elapsed < 0.5 * 3 * timeout_factor(), f"{model} took {elapsed:.2f}s for 8 clients"


def test_eight_slow_async_clients_served_at_once() -> None:
    with running_server(handlers.slow_streams, model="asyncio") as server:
        elapsed, replies = _eight_slow_clients(server.addresses[0])
    assert replies == [b"slow hello"] * 8
    assert elapsed < 1.5 * timeout_factor()


def test_single_serves_one_after_another() -> None:
    with running_server(handlers.slow_handler, model="single") as server:
        elapsed, replies = _eight_slow_clients(server.addresses[0])
    assert replies == [b"slow hello"] * 8
    assert elapsed >= 8 * 0.5 * 0.95, f"single finished 8 slow clients in {elapsed:.2f}s"


@pytest.mark.parametrize(
    ("model", "handler"),
    [*((m, handlers.raising_handler) for m in MODELS), ("asyncio", handlers.raising_streams)],
)
def test_raising_handler_is_logged_and_server_goes_on(
    model: str, handler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    with running_server(handler, model=model) as server:
        address = server.addresses[0]
        assert talk(address, b"boom") == b""
        assert talk(address, b"ok") == b"echo:ok"
    failures = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info and "blew up" in str(failures[0].exc_info[1])


@pytest.mark.parametrize("model", ["threads", "pool", "asyncio"])
def test_max_connections_holds(model: str, caplog: pytest.LogCaptureFixture) -> None:
    gate = handlers.Gate()
    caplog.set_level(logging.WARNING, logger="threadloom")
    with running_server(gate.handler, model=model, threads=8, max_connections=3) as server:
        clients = [socket.create_connection(server.addresses[0]) for _ in range(5)]
        try:
            for client in clients:
                client.settimeout(5 * timeout_factor())
            admitted = [c.recv(2) for c in clients[:3]]
            assert admitted == [b"in"] * 3
            clients[3].settimeout(0.3)
            with pytest.raises(TimeoutError):
                clients[3].recv(2)  # accepted by the kernel, not by us: waits in the backlog
            assert gate.most == 3
            gate.release.set()
            clients[3].settimeout(5 * timeout_factor())
            assert clients[3].recv(2) == b"in"
            assert clients[4].recv(2) == b"in"
        finally:
            gate.release.set()
            for client in clients:
                client.close()
    assert gate.most == 3
    cap_lines = [r for r in caplog.records if "max-connections" in r.getMessage()]
    assert len(cap_lines) == 1


@pytest.mark.parametrize("model", MODELS)
def test_unix_socket(model: str, tmp_path: Any) -> None:
    path = str(tmp_path / "tl.sock")
    with running_server(handlers.handle_client, model=model, bind=(f"unix:{path}",)) as server:
        assert server.urls == [f"unix:{path}"]
        assert talk(path) == b"Hello from server!"


@pytest.mark.parametrize("model", MODELS)
def test_several_binds(model: str, tmp_path: Any) -> None:
    path = str(tmp_path / "tl.sock")
    binds = ("127.0.0.1:0", f"unix:{path}")
    with running_server(handlers.handle_client, model=model, bind=binds) as server:
        assert talk(server.addresses[0]) == b"Hello from server!"
        assert talk(path) == b"Hello from server!"


@pytest.mark.parametrize("model", MODELS)
def test_stop_lets_in_flight_handler_finish(model: str) -> None:
    with running_server(handlers.slow_handler, model=model) as server:
        client = socket.create_connection(server.addresses[0])
        client.sendall(b"hi")
        time.sleep(0.1)
        server.stop()
        client.settimeout(5)
        assert client.recv(100) == b"slow hello"
        client.close()
        with pytest.raises(OSError):
            talk(server.addresses[0], timeout=1)
