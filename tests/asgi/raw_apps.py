"""Bare ASGI callables, for the error paths a framework would hide."""

from __future__ import annotations

from typing import Any


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def raises_early(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    raise ValueError("no response at all")


async def raises_late(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("half a response")


async def returns_silently(scope: dict[str, Any], receive: Any, send: Any) -> None:
    return None


async def injects_header(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-bad", b"a\r\nset-cookie: evil=1")],
        }
    )
    await send({"type": "http.response.body", "body": b"never"})


async def lifespan_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "config missing"})
        return
