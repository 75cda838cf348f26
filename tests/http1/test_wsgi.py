"""WSGI over HTTP/1.1 under every model: real sockets, http.client, httpx and raw bytes."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import time
import wsgiref.validate
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http1 import apps
from tests.http1.client import closed_after, connect, exchange, read_response
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(model: str) -> Iterator[Any]:
    """Start an app under the test's model; yields a function app -> (host, port)."""
    stack: list[Any] = []

    def start(app: Any, **options: Any) -> tuple[str, int]:
        options.setdefault("access_log", False)
        ctx = running_server(app, model=model, **options)
        server: Server = ctx.__enter__()
        stack.append(ctx)
        return server.addresses[0]  # type: ignore[no-any-return]

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def get(
    address: tuple[str, int],
    path: str = "/",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10 * timeout_factor())
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_hello(serve: Any) -> None:
    status, headers, body = get(serve(apps.hello))
    assert (status, body) == (200, b"Hello, world!")
    assert headers["content-length"] == "13"
    assert headers["server"] == "threadloom"
    assert "date" in headers


def test_keep_alive_100_requests(serve: Any) -> None:
    address = serve(apps.hello)
    with httpx.Client(base_url=f"http://{address[0]}:{address[1]}") as client:
        for _ in range(100):
            assert client.get("/").content == b"Hello, world!"
        assert client.get("/").http_version == "HTTP/1.1"


def test_one_connection_for_many_requests(serve: Any) -> None:
    address = serve(apps.hello)
    with connect(address) as sock:
        buffer = bytearray()
        for _ in range(20):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock, buffer).body == b"Hello, world!"


def test_pipelined_requests_answered_in_order(serve: Any) -> None:
    address = serve(apps.echo)
    raw = b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(10))
    responses = exchange(address, raw, count=10)
    assert [r.body for r in responses] == [f"GET /p{i}?\n".encode() for i in range(10)]


def _slow_or_path(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]


def test_pipelined_burst_larger_than_one_read(serve: Any) -> None:
    """More bytes waiting than one read takes (64 KiB): none may be left behind unread.

    The burst is sent while the app serves a slow request, so that all of it is waiting
    in the socket when the server next reads.
    """
    address = serve(_slow_or_path)
    count = 2500
    raw = b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(count))
    assert len(raw) > 65536
    with connect(address, timeout=20) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        sock.sendall(raw)
        buffer = bytearray()
        bodies = [read_response(sock, buffer).body for _ in range(count + 1)]
    assert bodies == [b"/slow"] + [f"/p{i}".encode() for i in range(count)]


def test_request_arriving_while_the_app_runs(serve: Any) -> None:
    """A request sent while the app still serves the one before is read and answered."""
    address = serve(_slow_or_path)
    with connect(address) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # the app is sleeping now
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer).body == b"/slow"
        assert read_response(sock, buffer).body == b"/next"
        time.sleep(0.1)  # and the connection is still served afterwards
        sock.sendall(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer).body == b"/later"


def test_http10_closes_unless_keep_alive(serve: Any) -> None:
    address = serve(apps.hello)
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.body == b"Hello, world!"
        assert closed_after(sock)
    with connect(address) as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = read_response(sock, buffer)
            assert response.headers["connection"].lower() == "keep-alive"


def test_connection_close_is_honoured(serve: Any) -> None:
    with connect(serve(apps.hello)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.headers["connection"] == "close"
        assert closed_after(sock)


def test_post_body_and_query(serve: Any) -> None:
    status, _, body = get(serve(apps.echo), "/a%20b?x=1&y=2", "POST", b"payload" * 1000)
    assert status == 200
    assert body == b"POST /a b?x=1&y=2\n" + b"payload" * 1000


def test_chunked_request_body(serve: Any) -> None:
    address = serve(apps.echo)
    raw = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert exchange(address, raw)[0].body == b"POST /up?\nhello world"


def test_chunked_response(serve: Any) -> None:
    response = exchange(serve(apps.stream), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"".join(f"line {i}\n".encode() for i in range(100))


def test_streamed_response_on_http10_is_close_delimited(serve: Any) -> None:
    response = exchange(serve(apps.stream), b"GET / HTTP/1.0\r\n\r\n")[0]
    assert "transfer-encoding" not in response.headers
    assert response.body.endswith(b"line 99\n")


def test_head_has_no_body(serve: Any) -> None:
    address = serve(apps.hello)
    with connect(address) as sock:
        buffer = bytearray()
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_response(sock, buffer, head_only=True)
        assert head.status == 200
        assert read_response(sock, buffer).body == b"Hello, world!"


def test_expect_100_continue(serve: Any) -> None:
    address = serve(apps.echo)
    with connect(address) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        buffer = bytearray()
        interim = read_response(sock, buffer)
        assert interim.status == 100
        sock.sendall(b"hello")
        assert read_response(sock, buffer).body == b"POST /?\nhello"


def test_legacy_write_callable(serve: Any) -> None:
    assert get(serve(apps.legacy_write))[2] == b"written and returned"


def test_close_called_on_iterable(serve: Any) -> None:
    before = apps.ClosingBody.closed
    assert get(serve(apps.closing))[2] == b"closing body"
    deadline = time.monotonic() + 2
    while apps.ClosingBody.closed == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert apps.ClosingBody.closed == before + 1


def test_file_wrapper(serve: Any) -> None:
    status, _, body = get(serve(apps.file_wrapper))
    with open(apps.FILE_PATH, "rb") as f:
        assert (status, body) == (200, f.read())
    assert get(serve(apps.bytesio_wrapper))[2] == b"from memory"


def test_app_failing_early_gives_500_and_server_goes_on(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    address = serve(apps.fails_early)
    assert get(address)[0] == 500
    assert get(address)[0] == 500
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 2 and "broken before" in str(errors[0].exc_info[1])  # type: ignore[index]


def test_app_failing_late_closes_the_connection(serve: Any) -> None:
    with connect(serve(apps.fails_late)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert b"partial" in data
        assert not data.endswith(b"0\r\n\r\n")  # never a clean end: the client sees truncation


def test_header_injection_becomes_500(serve: Any) -> None:
    response = exchange(serve(apps.header_injection), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    assert response.status == 500
    assert b"evil" not in response.raw_head and b"never sent" not in response.body


def test_exc_info_replaces_the_response(serve: Any) -> None:
    status, _, body = get(serve(apps.exc_info_app))
    assert (status, body) == (500, b"recovered")


def test_environ(serve: Any) -> None:
    address = serve(apps.environ_dump)
    for _ in range(2):  # the second time, the names are known to the environ key cache
        _, _, body = get(address, "/p%C3%A9?q=1", headers={"X-Custom": "v", "X_Spoof": "no"})
        env = dict(line.split("=", 1) for line in body.decode("latin-1").splitlines())
        assert "HTTP_X_SPOOF" not in env
        assert "" not in env
    assert env["PATH_INFO"] == "/p\xc3\xa9"
    assert env["QUERY_STRING"] == "q=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert "HTTP_X_SPOOF" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(address[1])
    assert env["wsgi.url_scheme"] == "http"


def test_wsgiref_validator_finds_nothing(serve: Any) -> None:
    address = serve(wsgiref.validate.validator(apps.validated_echo), interface="wsgi")
    # the validator raises AssertionError inside the app on any violation: a 500 here
    assert get(address, "/v?x=1", "POST", b"abc")[0::2] == (200, b"POST abc")
    assert get(address, "/")[0::2] == (200, b"GET ")


def test_streamed_upload_bounded_memory(serve: Any) -> None:
    address = serve(apps.digest)
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    sha = hashlib.sha256()
    with connect(address, timeout=60) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            sock.sendall(block)
            sha.update(block)
        response = read_response(sock, bytearray())
    assert response.body.decode() == f"{size} {sha.hexdigest()}"


def test_idle_keep_alive_closed_after_timeout(serve: Any) -> None:
    address = serve(apps.hello, timeout_keep_alive=0.5)
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(sock, bytearray())
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.3 < time.monotonic() - started < 3 * timeout_factor()


def test_slow_head_gets_408(serve: Any) -> None:
    address = serve(apps.hello, timeout_header=0.5)
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost:")
        response = read_response(sock, bytearray())
        assert response.status == 408
        assert closed_after(sock)


def test_client_that_vanishes_leaves_server_serving(serve: Any) -> None:
    address = serve(apps.stream)
    for _ in range(5):
        sock = socket.create_connection(address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    assert get(address)[0] == 200


def test_upgrade_request_answered_as_plain_http_keeps_the_connection(serve: Any) -> None:
    address = serve(apps.echo)
    with connect(address) as sock:
        sock.sendall(
            b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
            b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buffer = bytearray()
        assert read_response(sock, buffer).body == b"GET /up?\n"
        assert read_response(sock, buffer).body == b"GET /after?\n"


def head_with_length(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1234")])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 1234]


def test_head_may_state_the_get_length(serve: Any) -> None:
    with connect(serve(head_with_length)) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(sock, bytearray(), head_only=True)
        assert (response.status, response.headers["content-length"]) == (200, "1234")
