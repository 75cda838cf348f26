"""What the raw WSGI and ASGI apps share: typed signatures, lifespan, plain responses.

Every raw workload is one small module (``<workload>_wsgi.py`` / ``<workload>_asgi.py``) whose
``app`` the servers import; the helpers here keep the two forms of a workload sending the same
status, headers and body, which is what makes a WSGI server and an ASGI server comparable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WsgiApp = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def headers(content_type: str, length: int) -> list[tuple[str, str]]:
    """The only two headers every app sends, so both forms put the same bytes on the wire."""
    return [("Content-Type", content_type), ("Content-Length", str(length))]


def asgi_headers(content_type: str, length: int) -> list[tuple[bytes, bytes]]:
    """The headers of :func:`headers` as ASGI wants them (HTTP/1.1 header names are
    case-insensitive; every server writes its own casing)."""
    return [
        (name.lower().encode(), value.encode()) for name, value in headers(content_type, length)
    ]


def asgi_start(response_headers: list[tuple[bytes, bytes]]) -> Message:
    """A fresh ``http.response.start`` per request, as an app would build it."""
    return {"type": "http.response.start", "status": 200, "headers": response_headers}


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Accept start-up and shutdown: some servers refuse apps that reject lifespan."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def plain_wsgi(body: bytes) -> WsgiApp:
    """A WSGI app answering every request with ``body`` as text/plain."""
    response_headers = headers("text/plain", len(body))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", response_headers)
        return [body]

    return app


def plain_asgi(body: bytes) -> AsgiApp:
    """The ASGI form of :func:`plain_wsgi`."""
    response_headers = asgi_headers("text/plain", len(body))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        await send(asgi_start(response_headers))
        await send({"type": "http.response.body", "body": body})

    return app
