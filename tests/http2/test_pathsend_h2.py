"""``http.response.pathsend`` over HTTP/2 under asyncio, under each core (conftest).

httpx (prior knowledge) for what users see; :class:`RawPeer`, which never opens its
window, for a file that must wait for the client, and a client that leaves or resets the
stream halfway. HTTP/1.1 has its twin in ``tests/asgi/test_pathsend.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hyperframe.frame import RstStreamFrame, WindowUpdateFrame

from tests.adversarial.support import wait_until
from tests.asgi import pathsend_apps
from tests.asgi.test_pathsend import BIG, fds_open_to, files, target
from tests.http2.support import RawPeer
from threadloom.server import Server
from threadloom.testing import running_server, timeout_factor

__all__ = ["files"]  # a fixture, shared with the HTTP/1.1 tests

CANCEL = 0x8  # RST_STREAM's error code for a client that no longer wants the stream


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server(pathsend_apps.send_path, model="asyncio", access_log=False) as running:
        yield running


@pytest.fixture
def h2(server: Server) -> Iterator[httpx.Client]:
    host, port = server.addresses[0]
    with httpx.Client(
        base_url=f"http://{host}:{port}", http1=False, http2=True, timeout=10 * timeout_factor()
    ) as client:
        yield client


def test_bodies_are_the_files_under_the_window(h2: httpx.Client, files: dict[str, Path]) -> None:
    """The big file is many times the initial 64 KiB window: it goes out as the client
    gives the window back, all streams on one connection."""
    for name in ("small", "empty", "big", "small"):
        response = h2.get(target(files[name]))
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200, name
        assert response.content == files[name].read_bytes(), name
        assert response.headers["content-length"] == str(len(response.content))


def test_head_and_the_apps_length(h2: httpx.Client, files: dict[str, Path]) -> None:
    head = h2.head(target(files["big"]))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(BIG))
    right = h2.get(target(files["big"]), headers={"x-length": str(len(BIG))})
    assert right.status_code == 200 and right.content == BIG
    wrong = h2.get(target(files["big"]), headers={"x-length": "12"})
    assert wrong.status_code == 500
    assert h2.get(target(files["small"])).status_code == 200  # the connection lives on


def test_a_missing_file_is_a_500_logged_in_one_line(
    h2: httpx.Client, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="threadloom")
    missing = files["small"].with_name("missing")
    assert h2.get(target(missing)).status_code == 500
    assert h2.get(target(files["small"])).content == files["small"].read_bytes()
    (record,) = [r for r in caplog.records if r.name == "threadloom.app"]
    assert record.exc_info is None and str(missing) in record.getMessage()


def test_pathsend_after_a_body_resets_the_stream(h2: httpx.Client, files: dict[str, Path]) -> None:
    with pytest.raises(httpx.HTTPError):
        h2.get(target(files["small"]), headers={"x-body-first": "1"})
    assert h2.get(target(files["small"])).status_code == 200


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("leave", ["reset-stream", "close-connection"])
def test_a_client_leaving_mid_file_closes_the_descriptor(
    server: Server, files: dict[str, Path], leave: str
) -> None:
    """RawPeer never gives the window back: the server sends 64 KiB and waits, the file
    open, until the client resets the stream or closes the connection."""
    peer = RawPeer(server.addresses[0])
    try:
        peer.send(peer.request(1, target(files["big"])))
        assert peer.read_until(lambda: peer.body.get(1, 0) >= 65535), peer.story()
        assert fds_open_to(files["big"]) == 1
        if leave == "reset-stream":
            peer.send(RstStreamFrame(1, error_code=CANCEL))
        else:
            peer.close()
        wait_until(lambda: fds_open_to(files["big"]) == 0, 5, "the server to close the file")
        if leave == "reset-stream":  # the connection serves on, once its window opens
            peer.send([peer.request(3, target(files["small"])), WindowUpdateFrame(0, 1 << 16)])
            assert peer.read_until(lambda: 3 in peer.ended), peer.story()
            assert peer.statuses[3] == 200
    finally:
        peer.close()
    assert peer.body.get(1, 0) < len(BIG)


def test_starlette_file_response_hands_the_server_the_path(files: dict[str, Path]) -> None:
    pytest.importorskip("starlette")
    app = pathsend_apps.RecordingApp()
    with running_server(app, model="asyncio", access_log=False) as running:
        host, port = running.addresses[0]
        with httpx.Client(http1=False, http2=True, timeout=10 * timeout_factor()) as client:
            response = client.get(f"http://{host}:{port}/?{quote(str(files['big']))}")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200 and response.content == BIG
    assert app.sent == ["http.response.start", "http.response.pathsend"]
