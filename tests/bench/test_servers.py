"""Servers under test: a refused combination is unavailable, a crash is failed, never a number."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from threadloom.bench.machine import split_cpus
from threadloom.bench.plan import WORKLOADS, app_workload
from threadloom.bench.runner import _unavailable_reason
from threadloom.bench.servers import (
    ServerFailed,
    ServerProcess,
    Unavailable,
    free_port,
    probe_ws,
    serve_argv,
)
from threadloom.bench.workloads import hello_wsgi
from threadloom.testing import running_server

ROOT = Path(__file__).parent.parent.parent


def test_the_command_line_is_what_users_type() -> None:
    argv = serve_argv("workers", WORKLOADS["ws"], 8123, {"workers": "3"})
    assert argv[:5] == [
        sys.executable,
        "-m",
        "threadloom",
        "serve",
        "threadloom.bench.workloads:echo_sync",
    ]
    assert "--bind" in argv and "127.0.0.1:8123" in argv
    assert argv[argv.index("--model") + 1] == "pool" and argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--interface") + 1] == "websocket"
    asyncio_argv = serve_argv("asyncio", WORKLOADS["io"], 8123, {})
    assert "threadloom.bench.workloads:io_asgi" in asyncio_argv
    assert "--no-access-log" in asyncio_argv
    assert "--no-config" in asyncio_argv  # the folder's pyproject.toml must not change a run


def test_a_server_that_refuses_the_combination_is_unavailable(tmp_path: Path) -> None:
    argv = serve_argv("pool", WORKLOADS["hello"], free_port(), {"interface": "asgi"})
    server = ServerProcess(argv, split_cpus().server, tmp_path, {})
    with pytest.raises(Unavailable, match="--interface asgi does not fit this app"):
        server.start(WORKLOADS["hello"])
    server.stop()


def test_a_server_that_crashes_is_failed(tmp_path: Path) -> None:
    workload = app_workload("tests.bench.crashing:app", "wsgi", False)
    argv = serve_argv("pool", workload, free_port(), {})
    server = ServerProcess(argv, (), tmp_path, {"PYTHONPATH": str(ROOT)})
    with pytest.raises(ServerFailed, match=r"exited while starting \(exit status 3\)"):
        server.start(workload)
    server.stop()


def test_a_server_without_websocket_support_is_unavailable_for_ws() -> None:
    with running_server(hello_wsgi, model="pool") as server:
        problem = probe_ws(int(server.addresses[0][1]))
    assert problem.startswith("unavailable: the server answered the WebSocket Upgrade with")


def test_an_async_app_is_unavailable_to_the_thread_models() -> None:
    workload = app_workload("tests.bench.apps:asgi_app", "asgi", True)
    assert _unavailable_reason(workload, "pool") == "an async app runs only under the asyncio model"
    assert _unavailable_reason(workload, "asyncio") == ""
