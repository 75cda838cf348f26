"""starlette: a Starlette app whose ``/json`` route returns a JSONResponse."""

from payloads import JSON_DOC
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def json_view(request: Request) -> JSONResponse:
    """Routing, a Request object and a JSONResponse per request."""
    return JSONResponse(JSON_DOC)


app = Starlette(routes=[Route("/json", json_view)])
