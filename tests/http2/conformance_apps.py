"""The apps the conformance suite serves, one WSGI and one ASGI, alike on the wire.

* ``/big`` answers ``BIG`` bytes (frame sizes and flow control on the response side);
* ``/hold`` neither reads its body nor answers until :class:`Gate` lets it go, so that
  the body it was sent stays in the server's window;
* ``/noread`` answers without reading the body (its window must come back all the same);
* any other path echoes what the app saw: ``METHOD PATH BODYLENGTH te=TE`` then the body.

A response to HEAD carries the same text: the server must not send it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from threadloom.testing import timeout_factor

BIG = 40_000


def _answer(method: str, path: str, body: bytes, te: str) -> bytes:
    if path == "/big":
        return b"b" * BIG
    return f"{method} {path} {len(body)} te={te}\n".encode("latin-1") + body


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/hold":
        Gate.hold_thread()
    body = b"" if path in ("/hold", "/noread") else environ["wsgi.input"].read()
    text = _answer(
        environ["REQUEST_METHOD"], environ["PATH_INFO"], body, environ.get("HTTP_TE", "")
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text]


class Gate:
    """Holds ``/hold`` apps until the test lets them go (bounded, so none outlives it)."""

    lock = threading.Lock()
    event = threading.Event()  # for WSGI apps, on their threads
    held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []  # ASGI apps

    @classmethod
    def hold_thread(cls) -> None:
        with cls.lock:
            event = cls.event
        event.wait(10 * timeout_factor())

    @classmethod
    async def hold(cls) -> None:
        event = asyncio.Event()
        with cls.lock:
            cls.held.append((asyncio.get_running_loop(), event))
        try:
            await asyncio.wait_for(event.wait(), 10 * timeout_factor())
        except TimeoutError:
            pass

    @classmethod
    def release(cls) -> None:
        with cls.lock:
            held, cls.held = cls.held, []
            event, cls.event = cls.event, threading.Event()
        event.set()
        for loop, waiting in held:
            if not loop.is_closed():
                loop.call_soon_threadsafe(waiting.set)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] in ("/hold", "/noread"):
        if scope["path"] == "/hold":
            await Gate.hold()
        body = b""
    else:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
    te = dict(scope["headers"]).get(b"te", b"").decode("latin-1")
    text = _answer(scope["method"], scope["path"], body, te)
    start = {"type": "http.response.start", "status": 200}
    await send({**start, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text})
