"""A real browser (headless Chromium) opens a WebSocket, sends and receives, under each model.

The page comes from a small WSGI app on one server; the WebSocket is the sync echo handler on
a second server under the model being tested (browsers allow cross-origin WebSockets). The
page reports what came back with a `fetch` to the page server, so no browser automation
protocol is needed: the test waits for that request.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import need_tool
from tests.ws import handlers
from threadloom.testing import MODELS, running_server, timeout_factor

PAGE = """<!doctype html><meta charset="utf-8"><title>ws test</title>
<script>
const ws = new WebSocket("ws://127.0.0.1:%(port)d/chat");
ws.onopen = () => ws.send("hello from chromium \\u2713");
ws.onmessage = (event) => fetch("/result?got=" + encodeURIComponent(event.data));
ws.onerror = () => fetch("/result?got=ERROR");
</script>"""


class PageApp:
    """Serves the page; records what the page reports."""

    def __init__(self) -> None:
        self.ws_port = 0
        self.reported: list[str] = []
        self.done = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/result":
            self.reported += parse_qs(environ["QUERY_STRING"]).get("got", [])
            self.done.set()
            start_response("204 No Content", [])
            return []
        body = (PAGE % {"port": self.ws_port}).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]


@pytest.mark.parametrize("model", MODELS)
def test_chromium_sends_and_receives(model: str, tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page = PageApp()
    with (
        running_server(page, model="threads", access_log=False) as page_server,
        running_server(handlers.echo, model=model, access_log=False) as ws_server,
    ):
        page.ws_port = ws_server.addresses[0][1]
        host, port = page_server.addresses[0]
        browser = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"http://{host}:{port}/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert page.done.wait(30 * timeout_factor()), "the page never reported back"
        finally:
            browser.kill()
            browser.wait(10)
    assert page.reported == ["hello from chromium \u2713"]
