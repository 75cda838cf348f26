"""Files without ``os.sendfile``, ``sendmsg`` or ``os.pread`` (Windows), under every model.

``THREADLOOM_NO_SENDFILE=1`` forces the outbox to read a file and send it (the path TLS
takes); the functions themselves are removed from ``os`` for the test, so a call that
still reached for one would fail. A reader that lags makes the outbox keep the file and
send the rest from the connection's owner (the pool's I/O thread, the connection's thread,
the loop), from the right offsets: the bytes are random, so a slip shows.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadloom import portable
from threadloom.testing import MODELS, running_server, timeout_factor

SIZE = 8 * 1024 * 1024  # more than the kernel buffers of both ends take
START, END = 1_000_003, 2_500_000  # a range that starts off any page or piece boundary


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "big.bin").write_bytes(os.urandom(SIZE))
    return folder


@pytest.fixture
def without_sendfile(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(portable.NO_SENDFILE_ENV, "1")
    monkeypatch.delattr(os, "sendfile")
    monkeypatch.delattr(os, "pread")
    assert not portable.kernel_sends_files()
    yield


def file_app(folder: Path) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = folder / "big.bin"
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))],
        )
        return environ["wsgi.file_wrapper"](path.open("rb"))

    return app


def lagging_get(address: Any, target: str, extra: str = "") -> tuple[bytes, bytes]:
    """GET ``target``, waiting before reading: the server's socket fills and the rest
    waits in its outbox. Returns (head, body)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # (not below loopback's 64 KiB segment: the window would never reopen by one, and
        # the sender would wait for its persist timer: seconds, whatever the server does)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
        sock.settimeout(20 * timeout_factor())
        sock.connect(address)
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        time.sleep(0.3)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        chunks = [body]
        while length > (got := sum(map(len, chunks))):  # (by its length, not the close)
            chunks.append(sock.recv(min(65536, length - got)))
            assert chunks[-1], "the connection closed early"
    return head, b"".join(chunks)


@pytest.mark.parametrize("model", MODELS)
def test_files_are_read_and_sent_without_sendfile(
    model: str, folder: Path, without_sendfile: None
) -> None:
    expected = (folder / "big.bin").read_bytes()
    static = (f"/static={folder}",)
    with running_server(file_app(folder), model=model, static=static, access_log=False) as server:
        address = server.addresses[0]
        head, body = lagging_get(address, "/wrapped")  # wsgi.file_wrapper
        assert head.startswith(b"HTTP/1.1 200")
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
        head, body = lagging_get(address, "/static/big.bin")
        assert head.startswith(b"HTTP/1.1 200") and body == expected
        head, body = lagging_get(address, "/static/big.bin", f"Range: bytes={START}-{END}\r\n")
        assert head.startswith(b"HTTP/1.1 206") and body == expected[START : END + 1]
