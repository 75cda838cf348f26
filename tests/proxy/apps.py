"""Apps that report what the server told them about the client, as JSON."""

from __future__ import annotations

import json
import socket
from typing import Any


def whoami(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: the client, scheme, host and request id the app sees."""
    seen = {
        "remote": environ["REMOTE_ADDR"],
        "scheme": environ["wsgi.url_scheme"],
        "host": environ.get("HTTP_HOST"),
        "request_id": environ.get("HTTP_X_REQUEST_ID"),
    }
    if environ.get("PATH_INFO") == "/own-id":
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Request-ID", "mine")])
    else:
        start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def upload(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: answers with the body it was sent, reversed (both directions are large)."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body[::-1]]


async def asgi_whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: the same report from the scope."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = dict(scope["headers"])
    seen = {
        "remote": scope["client"][0] if scope["client"] else None,
        "scheme": scope["scheme"],
        "host": headers.get(b"host", b"").decode(),
        "request_id": headers.get(b"x-request-id", b"").decode() or None,
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


def raw_echo(sock: socket.socket, addr: Any) -> None:
    """Raw: says who it thinks the client is, then echoes one message."""
    sock.sendall(f"{addr[0] if isinstance(addr, tuple) else addr}\n".encode())
    data = sock.recv(1024)
    sock.sendall(data)


async def raw_echo_streams(reader: Any, writer: Any) -> None:
    """Raw asyncio streams: the same."""
    peer = writer.get_extra_info("peername")
    writer.write(f"{peer[0]}\n".encode())
    writer.write(await reader.read(1024))
    await writer.drain()
    writer.close()


async def asgi_ws_whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI websocket: accepts, says "client scheme", closes."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    client = scope["client"][0] if scope["client"] else None
    await send({"type": "websocket.send", "text": f"{client} {scope['scheme']}"})
    await send({"type": "websocket.close"})
