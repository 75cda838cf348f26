"""json: a small dict serialised by the standard library on every request (ASGI form)."""

import json

from appkit import Receive, Scope, Send, asgi_headers, asgi_start, serve_lifespan
from payloads import JSON_DOC


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Serialise per request, as an API view does, rather than serve cached bytes."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    body = json.dumps(JSON_DOC).encode()
    await send(asgi_start(asgi_headers("application/json", len(body))))
    await send({"type": "http.response.body", "body": body})
