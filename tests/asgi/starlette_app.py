"""A Starlette app with what a real one has: routing, bodies, streaming, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    EVENTS.append("startup")
    yield {"greeting": "hello from lifespan state"}
    EVENTS.append("shutdown")


async def home(request: Request) -> Response:
    return PlainTextResponse("Hello from Starlette on threadloom!")


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(
        body, media_type="application/octet-stream", headers={"x-length": str(len(body))}
    )


async def chunks(request: Request) -> Response:
    async def produce() -> AsyncIterator[bytes]:
        for i in range(2000):
            yield f"{i}\n".encode()
            if i % 500 == 0:
                await asyncio.sleep(0)

    return StreamingResponse(produce(), media_type="text/plain")


async def state(request: Request) -> Response:
    return JSONResponse(
        {
            "greeting": request.state.greeting,
            "path": request.url.path,
            "raw": request.scope["raw_path"].decode(),
            "client": request.scope["client"][0],
        }
    )


async def shout(websocket: WebSocket) -> None:
    """Echo in capitals; what lifespan put in state is there too."""
    await websocket.accept()
    await websocket.send_text(websocket.state.greeting)
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


async def boom(request: Request) -> Response:
    raise RuntimeError("starlette route blew up")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/echo", echo, methods=["POST"]),
        Route("/chunks", chunks),
        Route("/state/{name}", state),
        Route("/boom", boom),
        WebSocketRoute("/shout", shout),
    ],
    lifespan=lifespan,
)


@contextlib.asynccontextmanager
async def failing_lifespan(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError("database unreachable")
    yield


failing_app = Starlette(routes=[Route("/", home)], lifespan=failing_lifespan)
