"""json: a small dict serialised by the standard library on every request (WSGI form)."""

import json
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from appkit import headers
from payloads import JSON_DOC


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Serialise per request, as an API view does, rather than serve cached bytes."""
    body = json.dumps(JSON_DOC).encode()
    start_response("200 OK", headers("application/json", len(body)))
    return [body]
