"""Apps the ops tests serve: each answers with its worker's pid, so tests can tell them apart."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

Env = dict[str, Any]
StartResponse = Callable[..., Any]


def app(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """``/``: the pid; ``/slow?S``: say so on stderr, sleep S seconds, then the pid."""
    if environ["PATH_INFO"] == "/slow":
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(float(environ.get("QUERY_STRING") or 1))
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    body = str(os.getpid()).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same for ASGI (with a lifespan that succeeds)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def failing_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app whose startup fails: in a worker, after the supervisor checked it."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


async def exits_at_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app whose workers die as they start, without a word: a crash loop."""
    if scope["type"] == "lifespan":
        os._exit(1)


def wedged(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """``/hang``: say so on stderr, then never return (a worker this app serves is wedged)."""
    if environ["PATH_INFO"] == "/hang":
        print(f"hanging in {os.getpid()}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    return app(environ, start_response)


def frozen(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """How many objects the cyclic garbage collector was told to leave alone (--gc-freeze)."""
    import gc

    body = str(gc.get_freeze_count()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def young_threshold(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """The cyclic collector's young-generation threshold while serving (--gc-threshold)."""
    import gc

    body = str(gc.get_threshold()[0]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
