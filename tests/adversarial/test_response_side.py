"""The response side and the logs, under every model.

* CR or LF (or any control) in a header name or value, or in the status line, from the app
  never reaches the wire: the client gets a 500 (uvicorn CVE-2020-7695, gunicorn
  CVE-2018-1000164).
* What a client controls reaches the logs escaped, whatever the access-log format: control
  characters and terminal escapes in paths and headers (uvicorn CVE-2020-7694), and the
  bytes quoted in the server's own "refused" lines.
* Nothing that parses peer bytes can backtrack catastrophically (waitress CVE-2020-5236):
  each parser and each regex is fed the worst input a 64 KiB head allows, and must take
  linear time (a bound that catches a quadratic blow-up, not a timing target).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from tests.corpus.http1.loader import load_cases
from tests.http1.client import connect, read_response
from threadloom.engine.accesslog import escape
from threadloom.errors import RemoteProtocolError
from threadloom.protocols.forwarded import sane_request_id
from threadloom.protocols.http1 import ServerConnection
from threadloom.protocols.websocket.deflate import parse_extensions
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

#: (status, headers) an app may try; every one must become a 500 with nothing injected.
BAD_RESPONSES: list[tuple[str, list[tuple[str, str]]]] = [
    ("200 OK", [("X-Bad", "ok\r\nSet-Cookie: evil=1")]),
    ("200 OK", [("X-Bad", "ok\nSet-Cookie: evil=1")]),
    ("200 OK", [("X-Bad", "ok\rSet-Cookie: evil=1")]),
    ("200 OK", [("X-Bad\r\nSet-Cookie", "evil=1")]),
    ("200 OK", [("X-Bad:\r\nSet-Cookie", "evil=1")]),
    ("200 OK", [("X Bad", "evil=1")]),
    ("200 OK", [("X-Bad", "evil\x00=1")]),
    ("200 OK", [("X-Bad", "\x1b[31mevil=1")]),
    ("200 OK", [("", "evil=1")]),
    ("200 OK\r\nSet-Cookie: evil=1", []),
    ("200 OK", [("Location", "/\r\n\r\n<script>evil=1</script>")]),
]


def injecting(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The bad response picked by the query string; ``/`` alone is fine."""
    if not environ["QUERY_STRING"]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]
    status, headers = BAD_RESPONSES[int(environ["QUERY_STRING"])]
    start_response(status, headers)
    return [b"evil=1 in the body is fine"]


async def injecting_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status, headers = BAD_RESPONSES[int(scope["query_string"])]
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    code = int(status[:3]) if status == "200 OK" else status  # a status line: refused too
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": b"evil=1 in the body is fine"})


@pytest.fixture(scope="module", params=[*MODELS, "asyncio-asgi"])
def injector(request: pytest.FixtureRequest) -> Iterator[Server]:
    model = str(request.param)
    app = injecting_asgi if model == "asyncio-asgi" else injecting
    with running_server(app, model=model.split("-", maxsplit=1)[0], access_log=False) as server:
        yield server


def _raw_exchange(server: Server, target: str) -> bytes:
    with connect(server.addresses[0]) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = read_response(sock, bytearray())
        return response.raw_head + b"\r\n\r\n" + response.body


@pytest.mark.shared_server
@pytest.mark.parametrize("case", range(len(BAD_RESPONSES)))
def test_app_cannot_split_the_response(injector: Server, case: int) -> None:
    wire = _raw_exchange(injector, f"/?{case}")
    assert wire.startswith(b"HTTP/1.1 500 "), wire[:200]
    assert b"evil" not in wire and b"Set-Cookie" not in wire, wire


# -- the logs -----------------------------------------------------------------------------

NASTY_HEAD = b"GET /a%1b[2J%07?q=\x1b HTTP/1.1\r\n"  # the raw ESC in the query is refused (400)
NASTY = (
    b"GET /%1b[31mred/%0d%0a?x=%1b HTTP/1.1\r\nHost: x\r\n"
    b"User-Agent: \x9b31m\xff\xfe evil\r\nReferer: http://\x9b2J/\r\n"
    b"X-Request-ID: \x9b\r\n\r\n"
)


def _printable(line: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in line)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fmt", ["common", "combined", "json"])
def test_client_bytes_reach_the_logs_escaped(
    model: str, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threadloom")

    def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    wrapped_te = {n: r for n, r, _ in load_cases("invalid")}["te_wrapped_85_before"]
    with running_server(hello, model=model, access_log_format=fmt) as server:
        for raw in (NASTY, NASTY_HEAD + b"Host: x\r\n\r\n", wrapped_te):
            with connect(server.addresses[0]) as sock:
                sock.sendall(raw)
                read_response(sock, bytearray())
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("threadloom")]
    access = [r.getMessage() for r in caplog.records if r.name == "threadloom.access"]
    assert access and any("red" in line for line in access), lines
    bad = [line for line in lines if not _printable(line)]
    assert not bad, bad
    if fmt == "json":
        for line in access:
            json.loads(line)  # still one valid object per line


# -- no catastrophic backtracking ---------------------------------------------------------

#: Each must be linear: even a 64 KiB worst case takes milliseconds. A quadratic parser
#: would take minutes; the bound catches that, with room for a slow, shared machine.
BOUND_S = 2.0


def _took(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    try:
        fn(*args)
    except RemoteProtocolError:
        pass  # refused: what matters is how long it took to decide
    return time.perf_counter() - started


def _parse_head(head: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(head)
    conn.receive_data(b"")


WORST_HEADS = {
    "waitress-5236-tabs": b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"\t " * 30000 + b"\x00\r\n\r\n",
    "ows-then-valid": b"GET / HTTP/1.1\r\nHost: x\r\nX: a" + b" " * 60000 + b"b\r\n\r\n",
    "fold-storm": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n" + b" \r\n" * 20000 + b"\r\n",
    "te-commas": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
    + b"gzip, " * 10000
    + b"chunked\r\n\r\n",
    "colons": b"GET / HTTP/1.1\r\nHost: x\r\nX" + b":" * 60000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", WORST_HEADS)
def test_http_core_is_linear_on_worst_heads(name: str) -> None:
    assert _took(_parse_head, WORST_HEADS[name]) < BOUND_S * timeout_factor()


WORST_TEXT = {
    "escape-all-unsafe": (escape, bytes(range(256)) * 4000),
    "escape-quotes": (escape, b'"\\' * 100_000),
    "extensions-spaces": (parse_extensions, "permessage-deflate" + " " * 60000 + ";"),
    "extensions-open-quote": (parse_extensions, 'a; b="' + "\\a" * 30000),
    "extensions-many": (parse_extensions, "a;" * 30000),
    "request-id": (sane_request_id, "a" * 60000 + "!"),
}


@pytest.mark.parametrize("name", WORST_TEXT)
def test_every_regex_on_peer_bytes_is_linear(name: str) -> None:
    fn, data = WORST_TEXT[name]
    assert _took(fn, data) < BOUND_S * timeout_factor()


@pytest.mark.parametrize("model", MODELS)
def test_worst_heads_answered_quickly_live(model: str) -> None:
    def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"hi"]

    with running_server(hello, model=model, access_log=False) as server:
        for head in WORST_HEADS.values():
            started = time.monotonic()
            with connect(server.addresses[0]) as sock:
                sock.sendall(head)
                status = read_response(sock, bytearray()).status
            assert status in (200, 400, 431, 501)
            assert time.monotonic() - started < BOUND_S * timeout_factor()
