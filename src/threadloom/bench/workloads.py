"""The bench workloads: the same logic in a sync form and an async form.

A comparison of models means something only if every model runs the same work. Each workload
is therefore written twice, once for the models that run code on threads (WSGI apps and sync
WebSocket handlers: ``single``, ``threads``, ``pool``, ``workers``) and once for the event loop
(ASGI apps and async WebSocket handlers: ``asyncio``), and both forms answer byte for byte the
same. The servers the bench starts import this module, so it stays standard-library only.

* ``hello``: the trivial response; measures the server itself.
* ``io``: waits 10 ms first, as a handler waiting on a database would.
* ``cpu``: about 1 ms of pure-Python work (``THREADLOOM_BENCH_CPU_LOOPS`` iterations, which
  the bench calibrates on the machine so it is about 1 ms there too).
* ``ws``: WebSocket echo.
* ``idle``: ``hello``, while many idle keep-alive connections are held open.
* ``h2``: ``hello`` over HTTP/2 (h2load, 10 streams in flight per connection).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!"
IO_WAIT_S = 0.010
#: Iterations of :func:`spin`; about 1 ms on a 2020s x86 core. The bench passes a calibrated one.
CPU_LOOPS = int(os.environ.get("THREADLOOM_BENCH_CPU_LOOPS", "30000"))

_WSGI_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_ASGI_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]
_START: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": _ASGI_HEADERS}
_BODY: dict[str, Any] = {"type": "http.response.body", "body": HELLO}

StartResponse = Callable[[str, list[tuple[str, str]]], object]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def spin(loops: int) -> int:
    """Pure-Python arithmetic that holds the GIL the whole time; the result defeats no-op tricks."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def hello_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``hello``, sync form."""
    start_response("200 OK", _WSGI_HEADERS)
    return [HELLO]


def io_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``io``, sync form: the thread blocks for the wait, as a blocking driver would."""
    time.sleep(IO_WAIT_S)
    start_response("200 OK", _WSGI_HEADERS)
    return [HELLO]


def cpu_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``cpu``, sync form."""
    spin(CPU_LOOPS)
    start_response("200 OK", _WSGI_HEADERS)
    return [HELLO]


async def _lifespan(receive: Receive, send: Send) -> None:
    """Answer startup and shutdown so the server runs the app with lifespan on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello_asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``hello``, async form."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(_START)
    await send(_BODY)


async def io_asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``io``, async form: the loop serves other requests during the wait."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await asyncio.sleep(IO_WAIT_S)
    await send(_START)
    await send(_BODY)


async def cpu_asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``cpu``, async form: the work runs on the loop, as naive async code does."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    spin(CPU_LOOPS)
    await send(_START)
    await send(_BODY)


def echo_sync(ws: Any) -> None:
    """``ws``, sync form: the tutorial's echo on a thread."""
    for message in ws:
        ws.send(message)


async def echo_async(ws: Any) -> None:
    """``ws``, async form: the tutorial's echo on the loop."""
    async for message in ws:
        await ws.send(message)
