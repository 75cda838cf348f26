"""The WebSocket examples, loaded the way `threadloom serve module:attr` loads them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.ws.test_ws_serving import open_ws
from threadloom.loading import import_app
from threadloom.testing import running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_tutorial_section_6_as_written() -> None:
    handler = import_app("tutorial_6_websocket:handle_client")
    with (
        running_server(handler, model="asyncio", access_log=False) as server,
        open_ws(server) as ws,
    ):
        ws.send("hello")
        assert ws.recv() == "Server received: hello"


@pytest.mark.parametrize(
    ("target", "model"),
    [("chat:chat", "pool"), ("chat:chat", "threads"), ("chat:chat_async", "asyncio")],
)
def test_chat_room_broadcasts_to_everyone(target: str, model: str) -> None:
    handler = import_app(target)
    with running_server(handler, model=model, access_log=False) as server:
        room = (
            sys.modules["chat"].async_members if model == "asyncio" else sys.modules["chat"].members
        )
        with open_ws(server) as alice, open_ws(server) as bob, open_ws(server) as carol:
            deadline = time.monotonic() + 5
            while (
                len(room) < 3 and time.monotonic() < deadline
            ):  # handlers join after the handshake
                time.sleep(0.01)
            bob.send("hello room")
            assert [m.recv(timeout=5) for m in (alice, bob, carol)] == ["hello room"] * 3
