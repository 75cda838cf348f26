"""``threadloom`` with no APP, as a user runs it: the page on one port, the TCP hello beside it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from tests.cli.test_cli import free_port, one_line_error, threadloom
from tests.conftest import talk
from threadloom.demo.runner import DEMO_THREADS, browser_url, split_binds
from threadloom.testing import MODELS, timeout_factor


def wait_for_banner(proc: subprocess.Popen[str]) -> str:
    """Read the log until the demo says where it is (both servers are listening by then)."""
    assert proc.stderr is not None
    seen = []
    while line := proc.stderr.readline():
        seen.append(line)
        if "threadloom demo: open " in line:
            return "".join(seen)
    raise AssertionError("the demo did not start: " + "".join(seen))


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM; the demo must exit 0 without a traceback (and is killed if it hangs)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30 * timeout_factor())
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    page, hello = free_port(), free_port()
    assert page != hello
    yield page, hello


@pytest.mark.parametrize("model", MODELS)
def test_demo_serves_page_live_feed_and_tcp_hello(model: str, ports: tuple[int, int]) -> None:
    page, hello = ports
    args = ["--bind", f"127.0.0.1:{page}", "--bind", f"127.0.0.1:{hello}", "--no-access-log"]
    proc = threadloom(*(["--model", model] if model != "pool" else []), *args)
    try:
        log = wait_for_banner(proc)
        assert f"open http://127.0.0.1:{page}/ in a browser" in log
        assert f"printf hi | nc 127.0.0.1 {hello}" in log
        assert f"model {model}" in log
        html = httpx.get(f"http://127.0.0.1:{page}/", timeout=10).text
        assert f'data-model="{model}"' in html and f'data-hello="127.0.0.1:{hello}"' in html
        assert talk(("127.0.0.1", hello)) == b"Hello from server!"
        with connect(f"ws://127.0.0.1:{page}/live", open_timeout=10) as ws:
            figures = json.loads(ws.recv(timeout=10))
            assert figures["model"] == model and figures["threads"] == DEMO_THREADS
            started = time.monotonic()
            stop(proc)  # with the feed open: it is told the server is going away
            with pytest.raises(ConnectionClosedOK) as closed:
                while True:
                    ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert time.monotonic() - started < 10 * timeout_factor()
    finally:
        if proc.poll() is None:
            stop(proc)


def test_threads_flag_is_respected(ports: tuple[int, int]) -> None:
    page, hello = ports
    args = ["--threads", "3", "--bind", f"127.0.0.1:{page}", "--bind", f":{hello}"]
    proc = threadloom("serve", *args)  # `serve` with no APP is the demo too
    try:
        wait_for_banner(proc)
        figures = httpx.get(f"http://127.0.0.1:{page}/stats", timeout=10).json()
        assert figures["threads"] == 3
        assert talk(("127.0.0.1", hello)) == b"Hello from server!"
    finally:
        stop(proc)


def test_hello_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(threadloom("--bind", "127.0.0.1:0", "--bind", f"127.0.0.1:{port}"))
    assert "address already in use" in line and str(port) in line


@pytest.mark.parametrize(
    ("binds", "page", "hello"),
    [
        (("127.0.0.1:8000",), ("127.0.0.1:8000",), "127.0.0.1:8001"),
        ((":9000",), (":9000",), "0.0.0.0:9001"),
        (("[::1]:8000",), ("[::1]:8000",), "[::1]:8001"),
        (("127.0.0.1:0",), ("127.0.0.1:0",), "127.0.0.1:0"),
        (("127.0.0.1:65535",), ("127.0.0.1:65535",), None),
        (("unix:/tmp/demo.sock",), ("unix:/tmp/demo.sock",), None),
        (("fd://3",), ("fd://3",), None),
        (("a:1", "b:2"), ("a:1",), "b:2"),
        (("a:1", "b:2", "unix:/tmp/h.sock"), ("a:1", "b:2"), "unix:/tmp/h.sock"),
    ],
)
def test_where_the_hello_goes(binds: tuple[str, ...], page: tuple[str, ...], hello: str) -> None:
    assert split_binds(binds) == (page, hello)


@pytest.mark.parametrize(
    ("address", "tls", "url"),
    [
        ("127.0.0.1:8000", False, "http://127.0.0.1:8000/"),
        ("0.0.0.0:8000", True, "https://127.0.0.1:8000/"),
        ("[::]:8000", False, "http://[::1]:8000/"),
        ("unix:/tmp/demo.sock", False, "unix:/tmp/demo.sock"),
    ],
)
def test_browser_url(address: str, tls: bool, url: str) -> None:
    assert browser_url(address, tls) == url
