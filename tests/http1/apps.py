"""WSGI apps the HTTP tests serve: small, real, and each with one job."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Env = dict[str, Any]
StartResponse = Callable[..., Any]


def hello(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def echo(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """Echo method, path, query and body, so tests see exactly what the app saw."""
    body = environ["wsgi.input"].read()
    head = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']}\n"
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [head.encode("latin-1"), body]


def validated_echo(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """Echo, reading the body the strict way wsgiref.validate insists on (a size argument)."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [environ["REQUEST_METHOD"].encode() + b" " + body]


def environ_dump(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    lines = [f"{k}={v}" for k, v in sorted(environ.items()) if isinstance(v, str)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode("latin-1")]


def digest(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    """Hash a (possibly huge) upload in small reads: proves streaming, returns size and sha256."""
    stream = environ["wsgi.input"]
    sha = hashlib.sha256()
    size = 0
    while chunk := stream.read(65536):
        sha.update(chunk)
        size += len(chunk)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{size} {sha.hexdigest()}".encode()]


def stream(environ: Env, start_response: StartResponse) -> Iterator[bytes]:
    """A generator response with no length: chunked on HTTP/1.1."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(100):
        yield f"line {i}\n".encode()


def legacy_write(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"and returned"]


def fails_early(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("broken before the response")


def fails_late(environ: Env, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise RuntimeError("broken after the response started")


def header_injection(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("X-Bad", "ok\r\nSet-Cookie: evil=1")])
    return [b"never sent"]


def exc_info_app(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    try:
        raise ValueError("handled")
    except ValueError:
        import sys

        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response(
            "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
        )
    return [b"recovered"]


class ClosingBody:
    """An iterable whose close() must be called exactly once."""

    closed = 0
    lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        yield b"closing body"

    def close(self) -> None:
        with ClosingBody.lock:
            ClosingBody.closed += 1


def closing(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingBody()


_FILE = tempfile.NamedTemporaryFile(prefix="threadloom-test-", delete=False)  # noqa: SIM115
_FILE.write(os.urandom(300_000))
_FILE.close()
FILE_PATH = _FILE.name


def file_wrapper(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    size = os.path.getsize(FILE_PATH)
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    return environ["wsgi.file_wrapper"](open(FILE_PATH, "rb"))


def bytesio_wrapper(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"from memory"))


def slow(environ: Env, start_response: StartResponse) -> Iterable[bytes]:
    time.sleep(float(environ["QUERY_STRING"] or "0.5"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept"]
