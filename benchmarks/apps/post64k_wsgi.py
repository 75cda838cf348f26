"""post64k: a 64 KiB request body read whole and echoed back (WSGI form)."""

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from appkit import headers


def read_body(environ: WSGIEnvironment) -> bytes:
    """Read CONTENT_LENGTH bytes, in as many reads as the server's input needs: PEP 3333 lets
    read(n) return less, and an echo that stopped short would time the wrong thing."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    chunks = []
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Echo the request body with its length."""
    body = read_body(environ)
    start_response("200 OK", headers("application/octet-stream", len(body)))
    return [body]
