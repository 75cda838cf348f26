"""fastapi: a FastAPI app whose ``/json`` path operation returns a dict."""

from typing import Any

from fastapi import FastAPI
from payloads import JSON_DOC

app = FastAPI()


@app.get("/json")
async def json_view() -> dict[str, Any]:
    """FastAPI validates the return value against the annotation and serialises it, per
    request: the cost its users pay for the declared response model."""
    return JSON_DOC
