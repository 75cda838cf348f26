"""ASGI 3 under the asyncio model: Starlette as users write it, and the raw error paths."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as connect_ws

from tests.asgi import raw_apps
from tests.http1.client import closed_after, connect, exchange
from threadloom.errors import ConfigError
from threadloom.server import Server
from threadloom.testing import running_server

starlette_app = pytest.importorskip("tests.asgi.starlette_app")


def base_url(server: Server) -> str:
    host, port = server.addresses[0]
    return f"http://{host}:{port}"


def test_starlette_routes_bodies_streams_and_lifespan() -> None:
    starlette_app.EVENTS.clear()
    with running_server(starlette_app.app, model="asyncio", access_log=False) as server:
        assert starlette_app.EVENTS == ["startup"]
        with httpx.Client(base_url=base_url(server)) as client:
            assert client.get("/").text == "Hello from Starlette on threadloom!"
            body = bytes(range(256)) * 400  # 100 KB
            echoed = client.post("/echo", content=body)
            assert echoed.content == body and echoed.headers["x-length"] == str(len(body))
            streamed = client.get("/chunks")
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert streamed.text == "".join(f"{i}\n" for i in range(2000))
            state = client.get("/state/caf%C3%A9").json()
            assert state == {
                "greeting": "hello from lifespan state",
                "path": "/state/café",
                "raw": "/state/caf%C3%A9",
                "client": "127.0.0.1",
            }
            assert client.get("/missing").status_code == 404
            assert client.get("/boom").status_code == 500
            assert client.get("/").status_code == 200
        host, port = server.addresses[0]
        with connect_ws(f"ws://{host}:{port}/shout") as ws:
            assert ws.recv() == "hello from lifespan state"
            ws.send("quiet please")
            assert ws.recv() == "QUIET PLEASE"
    assert starlette_app.EVENTS == ["startup", "shutdown"]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_each_request_runs_in_a_context_of_its_own(http2: bool) -> None:
    """A context variable set before the app's first wait is still its own after it (a
    token made before can reset it: Django's asgiref needs that), and what one request sets
    is not seen by the next one on the same connection."""
    with (
        running_server(raw_apps.context_keeper, model="asyncio", access_log=False) as server,
        httpx.Client(base_url=base_url(server), http1=not http2, http2=http2, timeout=10) as client,
    ):
        for path in ("/wait", "/keep", "/", "/wait", "/keep", "/"):
            answer = client.get(path)
            assert answer.status_code == 200, f"{path}: {answer.status_code}"
            assert answer.text == "None", f"{path} saw what an earlier request set"
            assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


def test_client_vanishing_mid_stream_leaves_server_serving() -> None:
    with running_server(starlette_app.app, model="asyncio", access_log=False) as server:
        for _ in range(5):
            sock = socket.create_connection(server.addresses[0])
            sock.sendall(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(100)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()
        with httpx.Client(base_url=base_url(server)) as client:
            assert client.get("/").status_code == 200


def test_lifespan_failure_stops_start_up() -> None:
    server = Server(starlette_app.failing_app, model="asyncio", bind=("127.0.0.1:0",))
    server.start()
    with pytest.raises(ConfigError, match=r"database unreachable|startup failed"):
        server.serve_forever()


def test_lifespan_failure_message_from_the_command_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "threadloom",
            "serve",
            "raw_apps:lifespan_fails",
            "--model",
            "asyncio",
            "--bind",
            "127.0.0.1:0",
        ],
        cwd=Path(__file__).parent,
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "application startup failed: config missing" in proc.stderr


def test_asgi_under_a_thread_model_says_use_asyncio() -> None:
    with pytest.raises(ConfigError, match="--model asyncio"):
        Server(raw_apps.hello, model="pool", bind=("127.0.0.1:0",)).start()


@pytest.mark.parametrize(
    ("app", "status"),
    [
        (raw_apps.raises_early, 500),
        (raw_apps.returns_silently, 500),
        (raw_apps.injects_header, 500),
    ],
)
def test_app_errors_answer_500_and_are_logged_once(
    app: object, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    with running_server(app, model="asyncio", access_log=False) as server:
        response = exchange(server.addresses[0], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0]
        assert response.status == status
        assert b"evil" not in response.raw_head
        assert (
            exchange(server.addresses[0], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0].status == status
        )
    assert len([r for r in caplog.records if r.name == "threadloom.app"]) == 2


def test_app_failing_after_start_closes_connection() -> None:
    with running_server(raw_apps.raises_late, model="asyncio", access_log=False) as server:
        sock = connect(server.addresses[0])
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert b"partial" in data and not data.endswith(b"0\r\n\r\n")
            assert closed_after(sock)


def test_keep_alive_and_pipelining() -> None:
    with running_server(raw_apps.hello, model="asyncio", access_log=False) as server:
        raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20
        responses = exchange(server.addresses[0], raw, count=20)
        assert [r.body for r in responses] == [b"Hello, world!"] * 20
