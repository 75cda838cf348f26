"""A person's view: headless Chromium opens the demo page, watches it go live, chats, and a
screenshot is kept in the tmp dir (and becomes docs/demo.png, the README's picture, when
THREADLOOM_UPDATE_SCREENSHOT=1).

Chromium is driven through the DevTools protocol over the ``websockets`` client: that lets
the test wait for ``<html data-live="connected">``, type into the chat like a person, read
the DOM, fire the page's burst buttons and take the screenshot, with no browser-automation
library.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.cli.test_cli import free_port, threadloom
from tests.conftest import need_tool
from tests.demo.test_demo_command import stop, wait_for_banner
from threadloom.testing import timeout_factor

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "demo.png"
WIDTH, HEIGHT = 1280, 900


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands, page errors, polling the DOM."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.errors: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=20 * timeout_factor()))
            if message.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(message["params"]["exceptionDetails"])[:500])
            if message.get("id") == number:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 20) -> Any:
        deadline = time.monotonic() + seconds * timeout_factor()
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)
        return value

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}),
            )


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    """A headless Chromium on a blank page, driven over its DevTools port."""
    binary = need_tool("chromium")
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helpers share a process group, ended with it below
    )
    try:
        port = devtools_port(profile / "DevToolsActivePort", browser)
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            devtools = DevTools(ws)
            devtools.call("Runtime.enable")
            devtools.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield devtools
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(10)


def devtools_port(marker: Path, browser: subprocess.Popen[bytes]) -> int:
    """Chromium writes the port it chose (``--remote-debugging-port=0``) into the profile."""
    deadline = time.monotonic() + 20 * timeout_factor()
    while time.monotonic() < deadline:
        assert browser.poll() is None, "chromium exited"
        if marker.exists() and (text := marker.read_text()).count("\n") >= 1:
            return int(text.splitlines()[0])
        time.sleep(0.05)
    raise AssertionError("chromium did not open its DevTools port")


def chat_json(ws: ClientConnection) -> dict[str, Any]:
    """The next chat message (presence updates skipped)."""
    while True:
        data: dict[str, Any] = json.loads(ws.recv(timeout=10 * timeout_factor()))
        if data["type"] == "message":
            return data


def test_the_page_goes_live_chats_and_looks_right(chromium: DevTools, tmp_path: Path) -> None:
    page_port, hello_port = free_port(), free_port()
    proc = threadloom(
        "--bind", f"127.0.0.1:{page_port}", "--bind", f"127.0.0.1:{hello_port}", "--no-access-log"
    )
    try:
        wait_for_banner(proc)
        url = f"http://127.0.0.1:{page_port}/"
        with connect(url.replace("http", "ws", 1) + "chat", open_timeout=10) as ada:
            ada.send(json.dumps({"name": "ada", "text": "Hi from a Python websockets client!"}))
            assert chat_json(ada)["name"] == "ada"  # everyone gets it, the sender too
            chromium.call("Page.navigate", url=url)
            chromium.wait_for("document.documentElement?.dataset.live === 'connected'")
            assert chromium.evaluate("document.getElementById('model-name').textContent") == "pool"
            current = "document.querySelector('.model-list li.current').dataset.model"
            assert chromium.evaluate(current) == "pool"
            chromium.wait_for("!document.getElementById('chat-text').disabled")
            chromium.wait_for("document.querySelector('.msg .bubble')?.textContent")

            sent = "Hello from headless Chromium \u2713"
            chromium.evaluate("document.getElementById('chat-name').value = 'grace'")
            chromium.evaluate("document.getElementById('chat-text').focus()")
            chromium.call("Input.insertText", text=sent)
            chromium.press_enter()
            mine = "document.querySelector('.msg.mine .bubble')?.textContent"
            assert chromium.wait_for(mine) == sent  # shown only once the server sent it back
            got = chat_json(ada)
            assert (got["name"], got["text"]) == ("grace", sent)  # and everyone else got it

            fire_bursts_and_watch(chromium)
            save_screenshot(chromium, tmp_path / "demo.png")
        assert chromium.errors == []
    finally:
        stop(proc)


def fire_bursts_and_watch(chromium: DevTools) -> None:
    """Press the burst buttons like a person; the figures and the results list move."""
    button = "document.querySelector('.bursts button[data-path=\"{}\"]')"
    results = "document.querySelectorAll('#results li:not(.empty)').length === {}"
    for done, path in enumerate(["/hello", "/cpu?ms=50"], start=1):
        chromium.evaluate(button.format(path) + ".click()")
        chromium.wait_for(results.format(done))
    chromium.evaluate(button.format("/sleep?ms=500") + ".click()")
    # the page's two WebSockets, ada's, and the browser's six requests at a time
    busy = "Number(document.querySelector('[data-key=busy_threads] output').textContent) >= 8"
    chromium.wait_for(busy)
    rate = "document.querySelector('[data-key=requests_per_second] output').textContent"
    assert float(chromium.evaluate(rate)) > 0


def save_screenshot(chromium: DevTools, path: Path) -> None:
    shot = chromium.call("Page.captureScreenshot", format="png")
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 20_000  # a real page, not a blank one
    if os.environ.get("THREADLOOM_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture
        shutil.copyfile(path, DOCS_SCREENSHOT)


def test_under_single_the_page_polls_and_says_why_the_chat_is_off(
    chromium: DevTools, tmp_path: Path
) -> None:
    page_port, hello_port = free_port(), free_port()
    proc = threadloom(
        "--model",
        "single",
        "--bind",
        f"127.0.0.1:{page_port}",
        "--bind",
        f"127.0.0.1:{hello_port}",
        "--no-access-log",
    )
    try:
        wait_for_banner(proc)
        chromium.call("Page.navigate", url=f"http://127.0.0.1:{page_port}/")
        chromium.wait_for("document.documentElement?.dataset.live === 'connected'")
        note = chromium.evaluate("document.getElementById('chat-note').textContent")
        assert "one connection at a time" in note
        assert chromium.evaluate("document.getElementById('chat-text').disabled") is True
        # the bursts still get through, one connection after another
        chromium.evaluate("document.querySelector('.bursts button[data-path=\"/hello\"]').click()")
        chromium.wait_for("document.querySelector('#results .how')?.textContent")
        assert "failed" not in chromium.evaluate("document.querySelector('#results').textContent")
        shot = chromium.call("Page.captureScreenshot", format="png")
        (tmp_path / "demo-single.png").write_bytes(base64.b64decode(shot["data"]))
        assert chromium.errors == []
    finally:
        stop(proc)
