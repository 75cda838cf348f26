"""Every way a WebSocket conversation ends, as the handler sees it, under every model.

A sync handler (every model), an async handler and an ASGI app (asyncio) each record the
``(code, reason)`` that ended their conversation; for each ending all of them must see the
same pair, the one in :data:`ENDINGS`. The client is real: the ``websockets`` client where it
can say what is meant, raw frames (``tests/adversarial/wsraw.py``) where it must misbehave.
"""

from __future__ import annotations

import queue
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

from tests.adversarial import wsraw
from threadloom.interfaces.websocket import ConnectionClosed
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

Seen = queue.SimpleQueue[tuple[int, str]]

#: (code, reason) the handler sees, for each way a conversation ends.
ENDINGS: dict[str, tuple[int, str]] = {
    "client-close": (4000, "bye"),
    "client-close-no-code": (1005, ""),
    "protocol-error": (1002, "reserved opcode 3"),
    "invalid-utf8": (1007, "invalid UTF-8"),
    "too-big": (1009, "message too big"),
    "server-close": (4001, "done"),
    "connection-lost": (1006, "connection lost"),
    "ping-timeout": (1011, "keepalive ping timeout"),
    "server-shutdown": (1001, "server shutting down"),
}
MAX_SIZE = 100
PING_INTERVAL = 0.3


def sync_handler(seen: Seen) -> Callable[[Any], None]:
    def handler(ws: Any) -> None:
        try:
            while True:
                message = ws.recv()
                if message == "close-me":
                    ws.close(4001, "done")
                else:
                    ws.send(message)
        except ConnectionClosed as exc:
            seen.put((exc.code, exc.reason))

    return handler


def async_handler(seen: Seen) -> Callable[[Any], Any]:
    async def handler(ws: Any) -> None:
        try:
            while True:
                message = await ws.recv()
                if message == "close-me":
                    await ws.close(4001, "done")
                else:
                    await ws.send(message)
        except ConnectionClosed as exc:
            seen.put((exc.code, exc.reason))

    return handler


def asgi_app(seen: Seen) -> Callable[[Any, Any, Any], Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.put((message["code"], message.get("reason", "")))
                return
            if message.get("text") == "close-me":
                await send({"type": "websocket.close", "code": 4001, "reason": "done"})
            else:
                reply = {k: message[k] for k in ("text", "bytes") if message.get(k) is not None}
                await send({"type": "websocket.send", **reply})

    return app


KINDS: dict[str, Callable[[Seen], Any]] = {
    "sync": sync_handler,
    "async": async_handler,
    "asgi": asgi_app,
}
CASES = [(m, "sync") for m in MODELS] + [("asyncio", "async"), ("asyncio", "asgi")]


def echo_once(sock: socket.socket) -> None:
    """A message and its echo: the handler is running and waits in ``recv``."""
    sock.sendall(wsraw.frame(0x1, b"hello"))
    assert wsraw.read_frame(sock) == (0x1, b"hello")


def end_raw(ending: str, server: Server) -> None:
    """Endings that need a misbehaving client: raw frames."""
    sock = wsraw.handshake(server.addresses[0])
    with sock:
        echo_once(sock)
        if ending == "client-close-no-code":
            sock.sendall(wsraw.frame(0x8, b""))
            assert wsraw.close_code(sock) == 1005
        elif ending == "protocol-error":
            sock.sendall(wsraw.frame(0x3, b""))
            assert wsraw.close_code(sock) == 1002
        elif ending == "invalid-utf8":
            sock.sendall(wsraw.frame(0x1, b"ok \xff"))
            assert wsraw.close_code(sock) == 1007
        elif ending == "too-big":
            sock.sendall(wsraw.frame(0x1, b"a" * (MAX_SIZE + 1)))
            assert wsraw.close_code(sock) == 1009
        elif ending == "connection-lost":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif ending == "ping-timeout":  # never answers the ping: closed after two intervals
            assert wsraw.read_frame(sock)[0] == 0x9
            assert wsraw.close_code(sock) == 1011


def end_with_client(ending: str, server: Server) -> None:
    host, port = server.addresses[0]
    with connect(f"ws://{host}:{port}/", open_timeout=5 * timeout_factor()) as ws:
        ws.send("hello")
        assert ws.recv() == "hello"
        if ending == "client-close":
            ws.close(4000, "bye")
        elif ending == "server-close":
            ws.send("close-me")
            with pytest.raises(ClientClosed) as closed:
                ws.recv(timeout=5 * timeout_factor())
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        elif ending == "server-shutdown":
            server.stop()
            with pytest.raises(ClientClosed) as closed:
                ws.recv(timeout=5 * timeout_factor())
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize(("model", "kind"), CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_handler_sees_the_same_close_under_every_model(model: str, kind: str, ending: str) -> None:
    seen: Seen = queue.SimpleQueue()
    with running_server(
        KINDS[kind](seen),
        model=model,
        access_log=False,
        ws_max_size=MAX_SIZE,
        ws_ping_interval=PING_INTERVAL if ending == "ping-timeout" else 0,
    ) as server:
        if ending in ("client-close", "server-close", "server-shutdown"):
            end_with_client(ending, server)
        else:
            end_raw(ending, server)
        assert seen.get(timeout=5 * timeout_factor()) == ENDINGS[ending]
