"""io: 10 ms of waiting per request, as on a database, then hello (ASGI form).

The wait is ``asyncio.sleep``, as an async driver's would be: the loop serves other
connections meanwhile, so throughput is bounded by connections, not threads.
"""

import asyncio

from appkit import Receive, Scope, Send, asgi_headers, asgi_start, serve_lifespan
from payloads import HELLO, IO_SLEEP_S

HEADERS = asgi_headers("text/plain", len(HELLO))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Wait, then answer like hello."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await asyncio.sleep(IO_SLEEP_S)
    await send(asgi_start(HEADERS))
    await send({"type": "http.response.body", "body": HELLO})
