"""A Starlette app under threadloom's asyncio model (ASGI 3, with lifespan).

    threadloom serve starlette_app:app --model asyncio --bind 127.0.0.1:8080

(run from this folder). Try ``curl localhost:8080/`` and ``curl -d hi localhost:8080/echo``.
"""

import contextlib

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    print("starting up")
    yield {"started": True}
    print("shutting down")


async def home(request):
    return PlainTextResponse("Hello from Starlette on threadloom!")


async def echo(request):
    return Response(await request.body(), media_type="application/octet-stream")


app = Starlette(
    routes=[Route("/", home), Route("/echo", echo, methods=["POST"])], lifespan=lifespan
)
