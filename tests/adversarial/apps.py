"""Apps the adversarial tests serve: each stands for one kind of user code under attack.

They are importable as ``tests.adversarial.apps:NAME`` from the repository root, so the
tests that need a server process of its own (memory, CPU, descriptors, signals) run them
with ``python -m threadloom serve``.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

Env = dict[str, Any]
Scope = dict[str, Any]

#: The size of the big responses slow readers never read.
BIG = 32 * 1024 * 1024
_BLOCK = b"x" * 65536


def hello(environ: Env, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def echo(environ: Env, start_response: Any) -> Iterable[bytes]:
    """The body back, so that a test sees what the app got."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def big(environ: Env, start_response: Any) -> Iterator[bytes]:
    """32 MiB, streamed, for clients that never read it."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(BIG // len(_BLOCK)):
        yield _BLOCK


class Gate:
    """Holds apps that hang until the test releases them (so no thread outlives a test)."""

    event = threading.Event()
    entered = threading.Semaphore(0)


def hang(environ: Env, start_response: Any) -> Iterable[bytes]:
    """``/hang`` waits (at most 30 s) until the test opens the gate; anything else is quick."""
    if environ["PATH_INFO"] == "/hang":
        Gate.entered.release()
        Gate.event.wait(30)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"late" if environ["PATH_INFO"] == "/hang" else b"quick"]


def sleepy(environ: Env, start_response: Any) -> Iterable[bytes]:
    """Sleeps for the seconds in the query string: a handler that hangs, for a process."""
    time.sleep(float(environ["QUERY_STRING"] or "3600"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept"]


def raises(environ: Env, start_response: Any) -> Iterable[bytes]:
    raise RuntimeError("an app bug, on purpose")


class Tracked:
    """Response iterables that count how often the server closed them."""

    closed = 0
    lock = threading.Lock()


def _tracked_stream() -> Iterator[bytes]:
    try:
        while True:
            yield _BLOCK
    finally:
        with Tracked.lock:
            Tracked.closed += 1


def endless(environ: Env, start_response: Any) -> Iterator[bytes]:
    """A stream that never ends by itself: only the server's close() of it stops it."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _tracked_stream()


class BadClose:
    """An iterable whose close() raises: the server must still release the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"body"

    def close(self) -> None:
        raise RuntimeError("close() failed, on purpose")


def bad_close(environ: Env, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return BadClose()


def sse(environ: Env, start_response: Any) -> Iterator[bytes]:
    """Server-sent events for ever: only shutdown ends it."""
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    n = 0
    while True:
        n += 1
        yield f"data: tick {n}\n\n".encode()
        time.sleep(0.05)


def leaky_raw(client_socket: socket.socket, addr: Any) -> None:
    """A raw handler that answers and returns without closing its socket."""
    client_socket.recv(1024)
    client_socket.sendall(b"bye")


async def asgi_app(scope: Scope, receive: Any, send: Any) -> None:
    """ASGI: ``/big`` streams 32 MiB, ``/sse`` never ends, ``/flood`` sends without ever
    sleeping, ``/incomplete`` never finishes its response, ``/upload`` reads the whole body;
    anything else says hello."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/upload":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await _answer(send, str(size).encode())
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if path == "/big":
        for _ in range(BIG // len(_BLOCK)):
            await send({"type": "http.response.body", "body": _BLOCK, "more_body": True})
    elif path == "/sse":
        n = 0
        while True:
            n += 1
            body = f"data: tick {n}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await asyncio.sleep(0.05)
    elif path == "/flood":  # sends as fast as it may, never sleeping: only an error stops it
        while True:
            await send({"type": "http.response.body", "body": _BLOCK, "more_body": True})
    elif path == "/incomplete":
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        return
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def _answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def ws_echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


async def ws_echo_async(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def ws_flood(ws: Any) -> None:
    """Sends 64 KiB messages for as long as it may: for a peer that never reads."""
    ws.recv()
    while True:
        ws.send(_BLOCK)


async def ws_flood_async(ws: Any) -> None:
    await ws.recv()
    while True:
        await ws.send(_BLOCK)


def ws_trickle(ws: Any) -> None:
    """Sends small messages for as long as it may: each send waits a little for a slow peer."""
    ws.recv()
    while True:
        ws.send(_LINE)


async def ws_trickle_async(ws: Any) -> None:
    await ws.recv()
    while True:
        await ws.send(_LINE)


_LINE = b"x" * 100


def ws_listen(ws: Any) -> None:
    """Only listens (a chat client's reader): ends when the peer or the server closes."""
    for _ in ws:
        pass


async def ws_listen_async(ws: Any) -> None:
    async for _ in ws:
        pass


ROUTES = {
    "/big": big,
    "/echo": echo,
    "/raise": raises,
    "/sleep": sleepy,
    "/endless": endless,
    "/bad-close": bad_close,
    "/sse": sse,
}


def router(environ: Env, start_response: Any) -> Iterable[bytes]:
    """One WSGI app for the process tests: the route named by the path, else hello."""
    return ROUTES.get(environ["PATH_INFO"], hello)(environ, start_response)


def ws_close_at_once(ws: Any) -> None:
    """Closes first: for a peer that never answers the Close."""
    ws.close(1000, "bye")


async def ws_close_at_once_async(ws: Any) -> None:
    await ws.close(1000, "bye")


#: One 8 MiB body, the same object for every request: many slow readers of it must cost
#: the server about nothing beyond the kernel's buffers (no copy per connection).
EIGHT_MIB = b"r" * (8 * 1024 * 1024)


def eight_mib(environ: Env, start_response: Any) -> Iterable[bytes]:
    """``/hello``: a few bytes; anything else: :data:`EIGHT_MIB` in one piece."""
    if environ["PATH_INFO"] == "/hello":
        return hello(environ, start_response)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [EIGHT_MIB]


def file_eight_mib(environ: Env, start_response: Any) -> Iterable[bytes]:
    """The same 8 MiB as a file through ``wsgi.file_wrapper`` (sendfile where the model can)."""
    if environ["PATH_INFO"] == "/hello":
        return hello(environ, start_response)
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(EIGHT_MIB))),
    ]
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](open(_eight_mib_file(), "rb"))


_EIGHT_MIB_FILE: list[str] = []


def _eight_mib_file() -> str:
    """A file of :data:`EIGHT_MIB`, written once per server process, removed at its exit."""
    if not _EIGHT_MIB_FILE:
        fd, path = tempfile.mkstemp(prefix="threadloom-eight-mib-")
        with os.fdopen(fd, "wb") as file:
            file.write(EIGHT_MIB)
        atexit.register(os.unlink, path)
        _EIGHT_MIB_FILE.append(path)
    return _EIGHT_MIB_FILE[0]


async def asgi_eight_mib(scope: Scope, receive: Any, send: Any) -> None:
    """The same for ASGI: one body message."""
    if scope["type"] != "http":
        return
    body = b"Hello, world!" if scope["path"] == "/hello" else EIGHT_MIB
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
