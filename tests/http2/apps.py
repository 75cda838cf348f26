"""The same small apps as WSGI and ASGI, for the HTTP/2 tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

BIG = b"x" * (4 * 1024 * 1024)
SLEEP_S = 0.5


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(SLEEP_S)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [BIG]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk %d\n" % i for i in range(1000))
    if path == "/fail":
        raise RuntimeError("the app failed on purpose")
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nb")])
        return [b"never sent"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive")])
    return [environ["SERVER_PROTOCOL"].encode()]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/sleep":
        await asyncio.sleep(SLEEP_S)
    if path == "/hog":  # CPU-bound work, as far as the loop can tell: nothing else runs
        time.sleep(SLEEP_S)
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await _whole(send, body)
        return
    if path == "/big":
        await _whole(send, BIG)
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(1000):
            chunk = b"chunk %d\n" % i
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/fail":
        raise RuntimeError("the app failed on purpose")
    if path == "/bad-header":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]}
        )
        await send({"type": "http.response.body", "body": b"never sent"})
        return
    await _whole(send, b"HTTP/" + scope["http_version"].encode())


async def _whole(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})
