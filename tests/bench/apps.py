"""Apps a user might hand to ``threadloom bench --app`` (tests run the bench on them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A user's WSGI app: any model runs it."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A user's ASGI app (no lifespan support, as the spec allows): only asyncio runs it."""
    if scope["type"] != "http":
        raise RuntimeError("lifespan not supported")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok\n"})


def handle_client(client_socket: Any, addr: Any) -> None:
    """The tutorial's section 1 handler, without its prints."""
    client_socket.recv(1024)
    client_socket.send(b"Hello from server!")
    client_socket.close()
