"""WebSocket handlers and an ASGI app the tests serve, written as users write them."""

from __future__ import annotations

from typing import Any


def echo(ws: Any) -> None:
    """The sync echo of the issue: a blocking program gets WebSockets without asyncio."""
    for message in ws:
        ws.send(message)


async def handle_client(websocket: Any, path: str) -> None:
    """Tutorial section 6, as written there (its print aside)."""
    async for message in websocket:
        await websocket.send(f"Server received: {message}")


async def async_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def describe(ws: Any) -> None:
    """Sends what the server knows about the connection, then closes with 4000."""
    ws.send(f"{ws.path}|{ws.request_headers.get('x-test')}|{ws.remote_address[0]}")
    ws.close(4000, "done")


def fails(ws: Any) -> None:
    ws.recv()
    raise RuntimeError("handler bug")


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app with a websocket route (echo), a refusing route and plain HTTP."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    subprotocol = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001})
            return
        reply = {k: message[k] for k in ("text", "bytes") if message.get(k) is not None}
        await send({"type": "websocket.send", **reply})
