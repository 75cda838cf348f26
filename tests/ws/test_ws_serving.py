"""WebSocket end to end: real `websockets` clients against every model that applies."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.http1.client import read_response
from tests.ws import handlers
from threadloom import WSGIWithWebSocket
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor


def url(server: Server, path: str = "/") -> str:
    host, port = server.addresses[0]
    return f"ws://{host}:{port}{path}"


def open_ws(server: Server, path: str = "/", **options: Any) -> Any:
    return connect(url(server, path), open_timeout=5 * timeout_factor(), **options)


@pytest.mark.parametrize("model", MODELS)
def test_sync_echo_text_binary_and_large(model: str) -> None:
    with (
        running_server(handlers.echo, model=model, access_log=False) as server,
        open_ws(server) as ws,
    ):
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send(b"\x00\x01\xff")
        assert ws.recv() == b"\x00\x01\xff"
        big = "é" * 200_000  # 400 KB of UTF-8, compressed and fragmented on the way
        ws.send(big)
        assert ws.recv() == big
        ws.send(["part one ", "part two"])  # a fragmented message
        assert ws.recv() == "part one part two"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("compression", ["deflate", None])
def test_compression_negotiated_or_not(model: str, compression: str | None) -> None:
    with (
        running_server(handlers.echo, model=model, access_log=False) as server,
        open_ws(server, compression=compression) as ws,
    ):
        offered = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (offered is not None) == (compression is not None)
        ws.send("x" * 10_000)
        assert ws.recv() == "x" * 10_000


def test_tutorial_handler_with_path_under_asyncio() -> None:
    with (
        running_server(handlers.handle_client, model="asyncio", access_log=False) as server,
        open_ws(server, "/chat?room=1") as ws,
    ):
        ws.send("hi")
        assert ws.recv() == "Server received: hi"


def test_async_handler_needs_asyncio() -> None:
    with (
        pytest.raises(Exception, match="asyncio"),
        running_server(handlers.async_echo, model="pool"),
    ):
        pass


@pytest.mark.parametrize("model", MODELS)
def test_handler_sees_path_headers_and_peer(model: str) -> None:
    with (
        running_server(handlers.describe, model=model, access_log=False) as server,
        open_ws(server, "/room/7?x=1", additional_headers={"X-Test": "yes"}) as ws,
    ):
        assert ws.recv() == "/room/7?x=1|yes|127.0.0.1"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


@pytest.mark.parametrize("model", MODELS)
def test_oversized_message_closes_1009(model: str) -> None:
    with running_server(handlers.echo, model=model, access_log=False, ws_max_size=1000) as server:
        with open_ws(server) as ws:
            ws.send("a" * 1000)
            assert ws.recv() == "a" * 1000
            ws.send("a" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        with open_ws(server) as ws:  # and the server goes on
            ws.send("again")
            assert ws.recv() == "again"


@pytest.mark.parametrize("model", MODELS)
def test_failing_handler_closes_1011_and_server_serves_on(model: str) -> None:
    with running_server(handlers.fails, model=model, access_log=False) as server:
        with open_ws(server) as ws:
            ws.send("boom")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        with open_ws(server) as ws:
            ws.send("boom")


def raw_exchange(server: Server, head: bytes) -> tuple[int, dict[str, str]]:
    with socket.create_connection(server.addresses[0], timeout=5 * timeout_factor()) as sock:
        sock.sendall(head)
        response = read_response(sock, bytearray())
        return response.status, {k.lower(): v for k, v in response.headers.items()}


KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def handshake(
    method: bytes = b"GET", connection: bytes = b"Upgrade", key: bytes = KEY, version: bytes = b"13"
) -> bytes:
    """A raw handshake request with one part changed."""
    head = (
        method
        + b" / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
        + connection
        + b"\r\nSec-WebSocket-Key: "
        + key
        + b"\r\nContent-Length: 0\r\n"
    )
    if version:
        head += b"Sec-WebSocket-Version: " + version + b"\r\n"
    return head + b"\r\n"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),  # plain HTTP to a WebSocket endpoint
        (handshake(version=b"8"), 426),
        (handshake(version=b""), 426),
        (handshake(key=b"short"), 400),
        # without `Connection: Upgrade` it is no upgrade at all in HTTP's eyes: 426 says how
        (handshake(connection=b"keep-alive"), 426),
        (handshake(method=b"POST"), 400),
    ],
    ids=["plain-get", "version-8", "no-version", "bad-key", "no-connection-upgrade", "post"],
)
def test_bad_handshakes_refused(model: str, head: bytes, status: int) -> None:
    with running_server(handlers.echo, model=model, access_log=False) as server:
        got, headers = raw_exchange(server, head)
        assert got == status
        if status == 426:
            assert "upgrade" in headers or "sec-websocket-version" in headers
        with open_ws(server) as ws:  # the server goes on
            ws.send("ok")
            assert ws.recv() == "ok"


def test_asgi_websocket_route_and_plain_http() -> None:
    with running_server(handlers.asgi_app, model="asyncio", access_log=False) as server:
        with open_ws(server, "/echo", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            ws.send("text")
            assert ws.recv() == "text"
            ws.send(b"bin")
            assert ws.recv() == b"bin"
            ws.send("bye")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        with pytest.raises(InvalidStatus) as denied:
            open_ws(server, "/deny")
        assert denied.value.response.status_code == 403
        status, _ = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200


@pytest.mark.parametrize(
    ("model", "handler"),
    [*((m, handlers.echo) for m in MODELS), ("asyncio", handlers.async_echo)],
    ids=[*(f"{m}-sync" for m in MODELS), "asyncio-async"],
)
def test_shutdown_closes_open_websockets_with_1001(model: str, handler: Any) -> None:
    server_cm = running_server(handler, model=model, access_log=False, graceful_timeout=20)
    server = server_cm.__enter__()
    with open_ws(server) as ws:
        ws.send("still here")
        assert ws.recv() == "still here"
        started = time.monotonic()
        server_cm.__exit__(None, None, None)  # a graceful stop, as on SIGTERM
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert time.monotonic() - started < 10  # the stop did not wait out graceful_timeout


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain " + environ["PATH_INFO"].encode()]


@pytest.mark.parametrize("model", MODELS)
def test_wsgi_app_with_websocket_handler_on_one_port(model: str) -> None:
    app = WSGIWithWebSocket(hello_wsgi, handlers.echo)
    with running_server(app, model=model, access_log=False) as server:
        host, port = server.addresses[0]
        # one connection at a time, for `single`'s sake
        assert httpx.get(f"http://{host}:{port}/page").text == "plain /page"
        with open_ws(server, "/live") as ws:
            ws.send("over the same port")
            assert ws.recv() == "over the same port"
        assert httpx.get(f"http://{host}:{port}/again").text == "plain /again"
