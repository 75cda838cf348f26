"""``--static /prefix=DIR``: files served before the app, under every model and interface,
with conditional requests, ranges and precompressed siblings, and nothing outside DIR."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadloom.server import Server
from threadloom.testing import MODELS, running_server

CSS = b"body { color: #333; }\n" * 50
BIG = os.urandom(6 * 1024 * 1024 + 12345)  # more than both ends' socket buffers take


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"app"]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"app"})


CASES = [(m, wsgi_app) for m in MODELS] + [("asyncio", asgi_app)]
IDS = [f"{m}-{'asgi' if app is asgi_app else 'wsgi'}" for m, app in CASES]


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    public = root / "public"
    (public / "sub").mkdir(parents=True)
    (public / "site.css").write_bytes(CSS)
    (public / "app.js").write_bytes(b"console.log('plain');\n")
    (public / "app.js.gz").write_bytes(gzip.compress(b"console.log('gzip');\n"))
    (public / "app.js.br").write_bytes(b"pretend-brotli")
    (public / "sub" / "deep.txt").write_bytes(b"deep\n")
    (public / "big.bin").write_bytes(BIG)
    (root / "secret.txt").write_bytes(b"secret\n")
    (public / "escape").symlink_to(root / "secret.txt")
    (public / "inside").symlink_to(public / "site.css")
    (public / "leak.txt").write_bytes(b"plain\n")
    (public / "leak.txt.gz").symlink_to(root / "secret.txt")  # a sibling that leaves DIR
    os.mkfifo(public / "pipe")  # opening it for reading would block until a writer comes
    return public


@pytest.fixture(params=CASES, ids=IDS)
def server(request: pytest.FixtureRequest, public: Path) -> Iterator[Server]:
    model, app = request.param
    with running_server(app, model=model, static=(f"/static={public}",), access_log=False) as s:
        yield s


def get(server: Server, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return fetch(server, "GET", target, headers)


def fetch(
    server: Server, method: str, target: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*server.addresses[0], timeout=10)
    try:
        conn.request(method, target, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def raw_status(server: Any, target: bytes) -> int:
    """The status for a target sent as is (what http.client would clean up first)."""
    address = server.addresses[0] if isinstance(server, Server) else server.address
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_file_with_its_validators_and_type(server: Server) -> None:
    status, headers, body = get(server, "/static/site.css")
    assert (status, body) == (200, CSS)
    assert headers["Content-Type"] == "text/css"
    assert headers["Content-Length"] == str(len(CSS))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"].startswith('"') and headers["Last-Modified"].endswith("GMT")
    assert get(server, "/static/sub/deep.txt")[2] == b"deep\n"
    assert get(server, "/static/inside")[2] == CSS  # a symlink that stays inside DIR
    assert get(server, "/elsewhere")[2] == b"app"  # not a mount: the app answers


def test_head_and_other_methods(server: Server) -> None:
    status, headers, body = fetch(server, "HEAD", "/static/site.css", {})
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(CSS)))
    status, headers, _ = fetch(server, "POST", "/static/site.css", {})
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_conditional_requests_answer_304(server: Server, public: Path) -> None:
    _, headers, _ = get(server, "/static/site.css")
    assert get(server, "/static/site.css", If_None_Match=headers["ETag"])[0] == 304
    assert get(server, "/static/site.css", If_None_Match='"other", ' + headers["ETag"])[0] == 304
    assert get(server, "/static/site.css", If_None_Match='"other"')[0] == 200
    later = email.utils.formatdate(os.stat(public / "site.css").st_mtime + 60, usegmt=True)
    assert get(server, "/static/site.css", If_Modified_Since=later)[0] == 304
    earlier = email.utils.formatdate(os.stat(public / "site.css").st_mtime - 60, usegmt=True)
    assert get(server, "/static/site.css", If_Modified_Since=earlier)[0] == 200


def test_ranges(server: Server) -> None:
    size = len(CSS)
    status, headers, body = get(server, "/static/site.css", Range="bytes=2-5")
    assert (status, body, headers["Content-Range"]) == (206, CSS[2:6], f"bytes 2-5/{size}")
    assert get(server, "/static/site.css", Range="bytes=-3")[2] == CSS[-3:]
    assert get(server, "/static/site.css", Range=f"bytes={size - 4}-")[2] == CSS[-4:]
    status, headers, _ = get(server, "/static/site.css", Range=f"bytes={size}-")
    assert (status, headers["Content-Range"]) == (416, f"bytes */{size}")
    assert get(server, "/static/site.css", Range="bytes=0-1,4-5")[0] == 200  # several: whole
    assert get(server, "/static/site.css", Range="bytes=1-2", If_Range='"old"')[0] == 200


def test_precompressed_siblings_when_accepted(server: Server) -> None:
    status, headers, body = get(server, "/static/app.js", Accept_Encoding="gzip, br")
    assert (status, headers["Content-Encoding"], body) == (200, "br", b"pretend-brotli")
    assert headers["Vary"] == "Accept-Encoding"
    _, headers, body = get(server, "/static/app.js", Accept_Encoding="gzip")
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == (
        b"console.log('gzip');\n"
    )
    _, headers, body = get(server, "/static/app.js", Accept_Encoding="br;q=0, identity")
    assert "Content-Encoding" not in headers and body == b"console.log('plain');\n"
    assert headers["Content-Type"] in ("text/javascript", "application/javascript")


@pytest.mark.parametrize(
    "target",
    [
        b"/static/../secret.txt",
        b"/static/%2e%2e/secret.txt",
        b"/static/%2E%2E%2Fsecret.txt",
        b"/static/sub%2fdeep.txt",
        b"/static/sub%5cdeep.txt",
        b"/static/sub\\deep.txt",
        b"/static/site.css%00.png",
        b"/static/C:/Windows/win.ini",
        b"/static/c:%5cboot.ini",
        b"/static//etc/passwd",
        b"/static/./site.css",
        b"/static/escape",  # a symlink out of DIR
        b"/static/sub",  # a directory
        b"/static/sub/",
        b"/static",
        b"/static/missing.css",
        b"/static/%ff.css",  # not UTF-8
    ],
)
def test_nothing_outside_the_folder(server: Server, target: bytes) -> None:
    assert raw_status(server, target) == 404


def test_a_precompressed_sibling_that_leaves_the_folder_is_never_sent(server: Server) -> None:
    status, headers, body = get(server, "/static/leak.txt", accept_encoding="gzip")
    assert (status, body) == (200, b"plain\n")
    assert "Content-Encoding" not in headers


def test_a_fifo_is_a_404_and_blocks_nothing(server: Server) -> None:
    assert get(server, "/static/pipe")[0] == 404
    assert get(server, "/static/site.css")[0] == 200


def test_a_changed_file_gets_new_validators(tmp_path: Path) -> None:
    """The memo of head fields is checked against the file's size, mtime and inode (the
    memo is the interface's, the same under every model)."""
    folder = tmp_path / "files"
    folder.mkdir()
    target = folder / "note.txt"
    target.write_bytes(b"one\n")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    with running_server(wsgi_app, static=(f"/files={folder}",), access_log=False) as other:
        first = get(other, "/files/note.txt")
        target.write_bytes(b"two\n")  # the same size, a new mtime
        os.utime(target, ns=(2_000_000_000, 2_000_000_000))
        second = get(other, "/files/note.txt")
    assert first[2] == b"one\n" and second[2] == b"two\n"
    assert first[1]["ETag"] != second[1]["ETag"]
    assert first[1]["Last-Modified"] != second[1]["Last-Modified"]


def test_keep_alive_goes_on_after_a_file(server: Server) -> None:
    conn = http.client.HTTPConnection(*server.addresses[0], timeout=10)
    try:
        for target in ("/static/site.css", "/static/missing", "/elsewhere", "/static/app.js"):
            conn.request("GET", target)
            conn.getresponse().read()
    finally:
        conn.close()


def test_a_large_file_to_a_lagging_reader_then_the_next_request(server: Server) -> None:
    """The socket fills, the rest of the file goes out on later writable edges (under
    asyncio, ``sendfile`` with the transport's wake pieces between), every byte in order,
    and the pipelined request after it is answered after it."""
    check_lagging_download(server)


def test_a_large_file_to_a_lagging_reader_on_the_stdlib_loop(public: Path) -> None:
    """The same under asyncio's own loop (``--loop asyncio``), whose transport reports its
    drain by the same write-buffer limits as uvloop's."""
    static = (f"/static={public}",)
    with running_server(asgi_app, "asyncio", loop="asyncio", static=static) as server:
        check_lagging_download(server)


def check_lagging_download(server: Server) -> None:
    with socket.create_connection(server.addresses[0], timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(
            b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /static/site.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        time.sleep(0.3)  # the server's socket fills while nobody reads
        data = bytearray()
        while chunk := sock.recv(256 * 1024):
            data += chunk
            time.sleep(0.001)  # a reader that keeps lagging
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"\r\ncontent-length: {len(BIG)}".encode() in head.lower()
    body, rest = rest[: len(BIG)], rest[len(BIG) :]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(BIG).hexdigest()
    second_head, _, second_body = rest.partition(b"\r\n\r\n")
    assert second_head.startswith(b"HTTP/1.1 200") and second_body == CSS


def test_a_bad_mount_is_one_line() -> None:
    from threadloom.errors import ConfigError

    with pytest.raises(ConfigError, match="expected /PREFIX=DIR"):
        Server(wsgi_app, static=("static=.",))
    with pytest.raises(ConfigError, match="is not a directory"):
        Server(wsgi_app, static=("/static=/no/such/folder",))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_gigabyte_file_with_flat_memory(model: str, tmp_path: Path) -> None:
    from tests.adversarial.support import ServerProcess

    size = 1024**3
    with (tmp_path / "big.bin").open("wb") as file:
        file.truncate(size)  # sparse: the page cache serves zeros, the disk holds nothing
    mount = f"/files={tmp_path}"
    app = "tests.static.test_static:wsgi_app"
    with ServerProcess(app, model, "--static", mount) as server:
        assert raw_status(server, b"/elsewhere") == 200  # warm: the first request's imports
        before = server.peak_kib()
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = 0
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        grown_mib = (server.peak_kib() - before) / 1024
    assert received > size  # the head, then every byte
    assert grown_mib < 32, f"serving 1 GiB grew the server by {grown_mib:.0f} MiB"


def test_over_http2_the_same_answers(server: Server) -> None:
    """HTTP/2 gets the same files, validators, ranges and refusals, as header lists and
    DATA frames (read a piece at a time: no sendfile under HTTP/2's framing)."""
    from tests.http2.client import H2Client

    with H2Client(server.addresses[0]) as client:
        whole = client.request("/static/site.css")
        ranged = client.request("/static/site.css", headers=[("range", "bytes=0-3")])
        missing = client.request("/static/../secret.txt")
        app = client.request("/elsewhere")
        answers = client.wait(whole, ranged, missing, app)
    assert answers[0].status == 200 and answers[0].body == CSS
    assert answers[0].headers[b"content-type"].startswith(b"text/css")
    assert b"etag" in answers[0].headers and b"last-modified" in answers[0].headers
    assert answers[1].status == 206 and answers[1].body == CSS[:4]
    assert answers[2].status == 404
    assert answers[3].body == b"app"
