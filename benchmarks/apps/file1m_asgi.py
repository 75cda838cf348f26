"""file1m: a 1 MiB file from disk (ASGI form).

Through the ``http.response.pathsend`` extension when the server lists it in
``scope["extensions"]`` (threadloom and granian do: the server then opens and sends the file
itself, the app never reading it); else the app reads the file and sends its bytes in one
body message. Either way the same head (the app's Content-Length) and the same bytes go on
the wire. The path is absolute, as the extension asks.
"""

from pathlib import Path

from appkit import Receive, Scope, Send, asgi_headers, asgi_start, serve_lifespan
from payloads import FILE_NAME, FILE_SIZE

PATH = Path(__file__).resolve().with_name(FILE_NAME)
HEADERS = asgi_headers("application/octet-stream", FILE_SIZE)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Hand the path over when the server can send it, else read per request."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await send(asgi_start(HEADERS))
    if "http.response.pathsend" in (scope.get("extensions") or {}):
        await send({"type": "http.response.pathsend", "path": str(PATH)})
    else:
        await send({"type": "http.response.body", "body": PATH.read_bytes()})
