"""The demo's page, endpoints and WebSockets, under every model, with real clients."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from threadloom.demo.live import MAX_NAME, MAX_TEXT, parse_message
from threadloom.demo.runner import DemoApp
from threadloom.demo.web import DemoInfo
from threadloom.server import Server
from threadloom.testing import CONCURRENT_MODELS, MODELS, running_server, timeout_factor

FIGURES = {
    "open_connections",
    "requests_per_second",
    "busy_threads",
    "idle_threads",
    "queue_depth",
    "rss_bytes",
    "requests_total",
    "model",
    "threads",
}


@contextmanager
def demo(model: str) -> Iterator[Server]:
    info = DemoInfo(model, threads=8, hello="127.0.0.1:8001")
    with running_server(DemoApp(info), model=model, threads=8, access_log=False) as server:
        yield server


def base(server: Server) -> str:
    host, port = server.addresses[0]
    return f"http://{host}:{port}"


def open_ws(server: Server, path: str) -> ClientConnection:
    return connect(base(server).replace("http", "ws", 1) + path, open_timeout=5 * timeout_factor())


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=5 * timeout_factor()))
    return data


@pytest.mark.parametrize("model", MODELS)
def test_page_and_its_files(model: str) -> None:
    with demo(model) as server, httpx.Client(base_url=base(server)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert f'data-model="{model}"' in page.text and 'data-hello="127.0.0.1:8001"' in page.text
        assert "{{" not in page.text
        assert client.get("/demo.css").headers["content-type"].startswith("text/css")
        assert "WebSocket" in client.get("/demo.js").text
        head = client.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == page.headers["content-length"]
        refused = client.post("/hello")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        assert client.get("/nothing-here").status_code == 404
        # single serves one connection at a time: the demo never leaves one idle
        assert (page.headers.get("connection") == "close") == (model == "single")


@pytest.mark.parametrize("model", MODELS)
def test_load_endpoints(model: str) -> None:
    with demo(model) as server, httpx.Client(base_url=base(server)) as client:
        assert client.get("/hello").text == "Hello from server!"
        started = time.monotonic()
        assert client.get("/sleep", params={"ms": 80}).text == "slept 80 ms\n"
        assert time.monotonic() - started >= 0.08
        started = time.monotonic()
        spun = client.get("/cpu", params={"ms": 40})
        assert spun.status_code == 200 and spun.text.startswith("spun 40 ms of CPU")
        assert time.monotonic() - started >= 0.04
        assert client.get("/sleep").text == "slept 0 ms\n"
        for path, ms in [("/sleep", "5001"), ("/cpu", "2001"), ("/cpu", "-1"), ("/sleep", "x")]:
            bad = client.get(path, params={"ms": ms})
            assert bad.status_code == 400 and "whole number" in bad.text


@pytest.mark.parametrize("model", MODELS)
def test_stats_as_json(model: str) -> None:
    with demo(model) as server, httpx.Client(base_url=base(server)) as client:
        client.get("/hello")
        figures = client.get("/stats").json()
        assert figures.keys() >= FIGURES
        assert figures["model"] == model and figures["threads"] == 8
        assert figures["requests_total"] >= 1 and figures["rss_bytes"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_live_feed_pushes_figures_every_half_second(model: str) -> None:
    with demo(model) as server, open_ws(server, "/live") as ws:
        pushes = [recv_json(ws) for _ in range(3)]
    for figures in pushes:
        assert figures.keys() >= FIGURES
        assert figures["model"] == model
        assert figures["open_connections"] >= 1  # this very socket
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(pushes)]
    assert all(0.35 <= gap <= 1.0 * timeout_factor() for gap in gaps), gaps


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_chat_reaches_everyone_and_keeps_history(model: str) -> None:
    with demo(model) as server:
        with open_ws(server, "/chat") as ann:
            assert recv_json(ann) == {"type": "presence", "count": 1}
            with open_ws(server, "/chat") as bob:
                assert recv_json(bob) == {"type": "presence", "count": 2}
                assert recv_json(ann) == {"type": "presence", "count": 2}
                ann.send(json.dumps({"name": "ann", "text": "  hello, room  "}))
                for ws in (ann, bob):
                    message = recv_json(ws)
                    assert message["type"] == "message" and message["at"] > 0
                    assert (message["name"], message["text"]) == ("ann", "hello, room")
            assert recv_json(ann) == {"type": "presence", "count": 1}  # bob left
        with open_ws(server, "/chat") as cid:  # a newcomer sees what was said before
            assert recv_json(cid)["text"] == "hello, room"
            assert recv_json(cid) == {"type": "presence", "count": 1}


def test_chat_under_single_answers_its_one_client() -> None:
    with demo("single") as server, open_ws(server, "/chat") as ws:
        assert recv_json(ws) == {"type": "presence", "count": 1}
        ws.send("plain text is a message too")
        assert recv_json(ws)["text"] == "plain text is a message too"


@pytest.mark.parametrize("model", ["single", "pool"])
def test_unknown_websocket_path_is_closed_4404(model: str) -> None:
    with (
        demo(model) as server,
        open_ws(server, "/nowhere") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5 * timeout_factor())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"name": "ann", "text": "hi"}', {"name": "ann", "text": "hi"}),
        ('{"text": "hi"}', {"name": "guest", "text": "hi"}),
        ('{"name": "   ", "text": "hi"}', {"name": "guest", "text": "hi"}),
        (b"bytes too", {"name": "guest", "text": "bytes too"}),
        ("[1, 2]", {"name": "guest", "text": "[1, 2]"}),
        ('{"name": "ann", "text": "   "}', None),
        ("", None),
        (
            json.dumps({"name": "n" * 100, "text": "t" * 1000}),
            {"name": "n" * MAX_NAME, "text": "t" * MAX_TEXT},
        ),
    ],
)
def test_chat_messages_are_trimmed(raw: str | bytes, expected: dict[str, str] | None) -> None:
    assert parse_message(raw) == expected
