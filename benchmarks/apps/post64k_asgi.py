"""post64k: a 64 KiB request body read whole and echoed back (ASGI form)."""

from appkit import Receive, Scope, Send, asgi_headers, asgi_start, serve_lifespan


async def read_body(receive: Receive) -> bytes:
    """Gather ``http.request`` messages until ``more_body`` is false (or the client left)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo the request body with its length."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    body = await read_body(receive)
    await send(asgi_start(asgi_headers("application/octet-stream", len(body))))
    await send({"type": "http.response.body", "body": body})
