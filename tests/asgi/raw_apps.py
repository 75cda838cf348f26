"""Bare ASGI callables, for the error paths a framework would hide."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

#: What :func:`context_keeper` sets per request, as a framework keeps request state.
REQUEST_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_path", default=None
)


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


async def context_keeper(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sets a context variable, may wait, then resets it with its token (as asgiref's
    ``ThreadSensitiveContext`` does under Django), which fails if the app was resumed in
    another context; ``/keep`` leaves it set. Answers what it held before: a request must
    never see another's."""
    if scope["type"] != "http":
        return
    before = REQUEST_PATH.get()
    token = REQUEST_PATH.set(scope["path"])
    if scope["path"] == "/wait":
        await asyncio.sleep(0.01)
    if scope["path"] != "/keep":
        REQUEST_PATH.reset(token)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(before).encode()})


async def hogs_the_loop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Keeps the event loop for the seconds its query string says, as CPU-bound work in an
    ASGI app would (``time.sleep``: nothing else on the loop runs meanwhile)."""
    if scope["type"] != "http":
        return
    time.sleep(float(scope["query_string"] or b"0"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
