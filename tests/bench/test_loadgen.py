"""The load generators against real servers: the built-in client (HTTP, WebSocket, raw, idle),
wrk with the package's Lua script, and the do-nothing responder that measures their ceiling."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from tests.bench import apps
from tests.conftest import need_tool
from threadloom.bench.generators import Generator, LoadFailed
from threadloom.bench.machine import CpuSplit
from threadloom.bench.runner import _judge, _wait_port
from threadloom.bench.servers import free_port, probe_http, probe_ws
from threadloom.bench.workloads import hello_wsgi
from threadloom.testing import running_server

UNPINNED = CpuSplit((), ())


@pytest.fixture
def builtin() -> Iterator[Generator]:
    """The built-in generator, its process stopped after the test."""
    with Generator(UNPINNED, wrk=None) as generator:
        yield generator


def clean(result: dict[str, Any]) -> bool:
    return not any(result["errors"].values()) and result["non_2xx"] == 0


def port_of(server: Any) -> int:
    return int(server.addresses[0][1])


def test_builtin_http_keeps_every_connection_busy_on_a_concurrent_server(
    builtin: Generator,
) -> None:
    with running_server(hello_wsgi, model="pool") as server:
        result = builtin.run("http", port_of(server), 4, 0.5, 2.0)
    assert result["requests"] > 50 and clean(result)
    assert result["answered"] == 4 and result["starved"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert _judge(result, 4, 2.0, None)["status"] == "ok"


def test_builtin_http_sees_single_leave_all_but_one_connection_waiting(builtin: Generator) -> None:
    with running_server(hello_wsgi, model="single", timeout_keep_alive=30.0) as server:
        result = builtin.run("http", port_of(server), 4, 0.5, 2.0)
    assert result["requests"] > 0 and result["answered"] == 1 and result["starved"] == 3
    judged = _judge(result, 4, 2.0, None)
    assert judged["status"] == "timeout"
    assert judged["note"].startswith("3 of 4 connections got no answer within 2 s")


def test_builtin_counts_error_responses(builtin: Generator) -> None:
    def not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Length", "0")])
        return []

    with running_server(not_found, model="pool") as server:
        result = builtin.run("http", port_of(server), 2, 0.5, 2.0)
    assert result["non_2xx"] == result["requests"] > 0
    assert _judge(result, 2, 2.0, None)["status"] == "errors"


@pytest.fixture
def websockets_echo() -> Iterator[int]:
    """The websockets library's own server: a real peer for the built-in WebSocket client."""

    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.socket.getsockname()[1])
        server.shutdown()
    thread.join(10)


def test_builtin_websocket_client_against_the_websockets_library(
    websockets_echo: int, builtin: Generator
) -> None:
    assert probe_ws(websockets_echo) == ""
    result = builtin.run("ws", websockets_echo, 3, 0.5, 2.0)
    assert result["requests"] > 20 and clean(result)
    assert result["answered"] == 3


def test_builtin_raw_runs_the_tutorial_exchange(builtin: Generator) -> None:
    with running_server(apps.handle_client, model="threads") as server:
        result = builtin.run("raw", port_of(server), 2, 0.5, 2.0)
    assert result["requests"] > 10 and clean(result)


def test_idle_holds_connections_until_told_to_measure(builtin: Generator) -> None:
    with running_server(hello_wsgi, model="pool", timeout_keep_alive=30.0) as server:
        load = builtin.start("idle", port_of(server), 20, 0.3, 2.0, rounds=2)
        assert load.held() == 20
        load.go()
        results = load.results(5.0)
    assert len(results) == 2
    for result in results:
        assert result["idle"] == 20 and result["idle_answered"] == 20
        assert result["requests"] > 0 and clean(result)


@pytest.mark.parametrize("mode", ["http", "ws"])
def test_the_responder_gives_the_generator_a_ceiling(mode: str, builtin: Generator) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "threadloom.bench.responder", "--port", str(port)]
    responder = subprocess.Popen([*argv, "--ws"] if mode == "ws" else argv)
    try:
        _wait_port(port)
        assert (probe_ws if mode == "ws" else probe_http)(port) == ""
        result = builtin.run(mode, port, 8, 0.5, 2.0)
    finally:
        responder.kill()
        responder.wait()
    assert result["requests_per_s"] > 500 and clean(result)


def test_wrk_with_the_package_script() -> None:
    wrk = Generator(UNPINNED, wrk=need_tool("wrk"))
    with running_server(hello_wsgi, model="pool") as server:
        result = wrk.run("http", port_of(server), 4, 1, 2.0)
    assert result["requests"] > 100 and clean(result)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert "answered" not in result  # wrk cannot say; Little's law stands in
    assert _judge(result, 4, 2.0, None)["status"] == "ok"


def test_one_builtin_process_serves_load_after_load(builtin: Generator) -> None:
    with running_server(hello_wsgi, model="asyncio") as server:
        first = builtin.run("http", port_of(server), 2, 0.3, 2.0)
        process = builtin.builtin.proc
        second = builtin.run("http", port_of(server), 3, 0.3, 2.0)
    assert builtin.builtin.proc is process is not None
    assert first["answered"] == 2 and second["answered"] == 3


def test_a_failing_builtin_load_is_reported_and_the_next_one_runs(builtin: Generator) -> None:
    with pytest.raises(LoadFailed, match="ValueError: unknown mode 'nosuchmode'"):
        builtin.start("nosuchmode", 1, 1, 0.1, 1.0).results(1.0)
    with running_server(hello_wsgi, model="pool") as server:
        assert builtin.run("http", port_of(server), 1, 0.3, 2.0)["requests"] > 0
