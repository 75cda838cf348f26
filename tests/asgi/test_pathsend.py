"""``http.response.pathsend`` over HTTP/1.1 under asyncio: the server sends the file.

Real sockets and clients (``http.client``, raw bytes where the framing itself is checked).
HTTP/2 has its twin in ``tests/http2/test_pathsend_h2.py``.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.adversarial.support import wait_until
from tests.asgi import pathsend_apps
from tests.http1.client import closed_after, connect, exchange, read_response
from threadloom.server import Server
from threadloom.testing import running_server, timeout_factor

#: Larger than a MiB and not a multiple of any slice the server reads.
BIG = bytes(range(256)) * 4100 + b"the end"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An empty file, a small one and one over a MiB."""
    made = {"empty": b"", "small": b"hello from a file\n", "big": BIG}
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in made}


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server(pathsend_apps.send_path, model="asyncio", access_log=False) as running:
        yield running


def target(path: Path | str) -> str:
    return "/file?" + quote(str(path))


@contextmanager
def client(server: Server) -> Iterator[http.client.HTTPConnection]:
    """One keep-alive connection (``http.client`` opens another if the server closes it)."""
    host, port = server.addresses[0]
    conn = http.client.HTTPConnection(host, port, timeout=10 * timeout_factor())
    try:
        yield conn
    finally:
        conn.close()


def get(
    conn: http.client.HTTPConnection, path: Path | str, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, target(path), headers=headers)
    response = conn.getresponse()
    return response, response.read()


def fds_open_to(path: Path) -> int:
    """Descriptors of this process (the server runs in it) open to ``path``."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == str(path)
        except OSError:
            pass  # (closed meanwhile, or the listing's own descriptor)
    return count


def test_bodies_are_the_files_and_the_connection_is_kept(
    server: Server, files: dict[str, Path]
) -> None:
    with client(server) as conn:
        for name in ("small", "empty", "big", "small", "big"):
            response, body = get(conn, files[name])
            assert response.status == 200, name
            assert body == files[name].read_bytes(), name
            assert response.getheader("content-length") == str(len(body))
            assert response.getheader("transfer-encoding") is None
            if name == "small" and body and conn.sock is not None:
                first = conn.sock
        assert conn.sock is first, "a pathsend response closed the connection"


def test_pipelined_requests_wait_for_the_file_before_them(
    server: Server, files: dict[str, Path]
) -> None:
    raw = b"".join(
        f"GET {target(files[name])} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for name in ("big", "small", "big")
    )
    bodies = [r.body for r in exchange(server.addresses[0], raw, count=3)]
    assert bodies == [BIG, files["small"].read_bytes(), BIG]


def test_the_apps_content_length_must_be_the_files_size(
    server: Server, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with client(server) as conn:
        response, body = get(conn, files["big"], **{"x-length": str(len(BIG))})
        assert (response.status, body) == (200, BIG)
        response, body = get(conn, files["big"], **{"x-length": str(len(BIG) - 1)})
        assert response.status == 500 and response.will_close
    with client(server) as conn:
        assert get(conn, files["small"])[0].status == 200
    refusals = [r for r in caplog.records if r.name == "threadloom.app"]
    assert len(refusals) == 1 and "Content-Length" in str(refusals[0].exc_info[1])


@pytest.mark.parametrize("app_length", [False, True], ids=["our-length", "app-length"])
def test_head_has_the_files_length_and_no_body(
    server: Server, files: dict[str, Path], app_length: bool
) -> None:
    headers = {"x-length": str(len(BIG))} if app_length else {}
    raw = f"HEAD {target(files['big'])} HTTP/1.1\r\nHost: x\r\n".encode()
    raw += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
    raw += f"GET {target(files['small'])} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with connect(server.addresses[0]) as sock:
        sock.sendall(raw)
        buffer = bytearray()
        head = read_response(sock, buffer, head_only=True)
        assert head.status == 200 and head.headers["content-length"] == str(len(BIG))
        after = read_response(sock, buffer)  # the next response follows at once: no body
        assert after.status == 200 and after.body == files["small"].read_bytes()


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_send_no_file(
    server: Server, files: dict[str, Path], status: int
) -> None:
    raw = f"GET {target(files['big'])} HTTP/1.1\r\nHost: x\r\nx-status: {status}\r\n\r\n"
    raw += f"GET {target(files['small'])} HTTP/1.1\r\nHost: x\r\n\r\n"
    first, second = exchange(server.addresses[0], raw.encode(), count=2)
    assert first.status == status and first.body == b""
    assert second.body == files["small"].read_bytes()


def test_a_missing_file_is_a_500_logged_in_one_line(
    server: Server, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    missing = files["small"].with_name("missing")
    with client(server) as conn:
        response, _ = get(conn, missing)
        assert response.status == 500 and response.will_close
    with client(server) as conn:
        response, body = get(conn, files["small"])
        assert response.status == 200 and body == files["small"].read_bytes()
    (record,) = [r for r in caplog.records if r.name == "threadloom.app"]
    assert record.exc_info is None and "\n" not in record.getMessage()
    assert str(missing) in record.getMessage() and "No such file" in record.getMessage()


@pytest.mark.parametrize(
    ("app", "query", "said"),
    [
        (pathsend_apps.send_path, "{dir}", "not a regular file"),
        (pathsend_apps.send_path, "/no/such/dir/file", "No such file"),
        (pathsend_apps.send_path, "bad%00path", "cannot open"),
        (pathsend_apps.send_not_a_path, "", "needs a str path"),
    ],
    ids=["directory", "missing-dir", "nul", "bytes"],
)
def test_what_cannot_be_sent_is_a_500(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture, app: Any, query: str, said: str
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    query = query.format(dir=quote(str(files["small"].parent)))
    with running_server(app, model="asyncio", access_log=False) as running:
        raw = f"GET /file?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert exchange(running.addresses[0], raw)[0].status == 500
        assert exchange(running.addresses[0], raw)[0].status == 500  # and it still serves
    messages = [r.getMessage() for r in caplog.records if r.name == "threadloom.app"]
    assert len(messages) == 2 and all(said in m for m in messages), messages


def test_a_relative_path_is_opened_from_the_working_directory(
    server: Server, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec asks for an absolute path, but Starlette passes on a relative one as it
    was given (FastAPI's docs do so): the server opens it where the app's open() would."""
    monkeypatch.chdir(files["small"].parent)
    with client(server) as conn:
        response, body = get(conn, "small")
        assert response.status == 200 and body == files["small"].read_bytes()


def test_pathsend_out_of_order(server: Server, files: dict[str, Path]) -> None:
    """Before http.response.start: a 500. After a body message (the response has begun,
    chunked): the connection is closed with the response unfinished."""
    raw = f"GET {target(files['small'])} HTTP/1.1\r\nHost: x\r\nx-no-start: 1\r\n\r\n"
    assert exchange(server.addresses[0], raw.encode())[0].status == 500
    with connect(server.addresses[0]) as sock:
        raw = f"GET {target(files['small'])} HTTP/1.1\r\nHost: x\r\nx-body-first: 1\r\n\r\n"
        sock.sendall(raw.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"first" in data
        assert not data.endswith(b"0\r\n\r\n") and closed_after(sock)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_client_leaving_mid_file_closes_the_descriptor(server: Server, tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    with huge.open("wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: far more than the socket buffers hold
    sock = connect(server.addresses[0])
    sock.sendall(f"GET {target(huge)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    wait_until(lambda: fds_open_to(huge) == 1, 5, "the server to hold the file open")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, the file far from sent
    wait_until(lambda: fds_open_to(huge) == 0, 5, "the server to close the file")
    with client(server) as conn:
        assert get(conn, huge, method="HEAD")[0].status == 200


def test_starlette_file_response_hands_the_server_the_path(files: dict[str, Path]) -> None:
    pytest.importorskip("starlette")
    app = pathsend_apps.RecordingApp()
    with (
        running_server(app, model="asyncio", access_log=False) as running,
        client(running) as conn,
    ):
        response, body = get(conn, files["big"])
        assert response.status == 200 and body == BIG
        assert response.getheader("content-length") == str(len(BIG))
    assert "http.response.pathsend" in app.extensions
    assert app.sent == ["http.response.start", "http.response.pathsend"]
