"""Property tests of HTTP/1.1: the sans-I/O core, the response framer and live servers.

Whatever bytes a peer sends, however they are cut into reads: the core never crashes (only
RemoteProtocolError, with a status a server may send), never hangs, and parses the same
requests whichever way the bytes were cut. Whatever an app puts in its status and headers,
the framer gives bytes that parse back as one response carrying those headers, or refuses.
And a live server answers any byte stream with well-formed responses and then a close,
never a hang. (The WebSocket core has its own: tests/protocols/test_ws_properties.py.)
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.http1_target import agree, one_input, run, run_reads
from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1 import HTTPLimits, Request, full_response
from threadloom.server import Server
from threadloom.testing import running_server, timeout_factor

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "get", "G T", "", "CONNECT"]
FIELDS = [
    b"Host: x",
    b"Host: y",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: +3",
    b"Content-Length: 3, 3",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: \x85chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"Upgrade: websocket",
    b"X-A: b",
    b"X-A : b",
    b" X-Fold: c",
    b"X-Ctl: \x01",
    b"X-Obs: \xff",
]
BODIES = [b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n", b"1;e=1\r\nz\r\n0\r\nT: v\r\n\r\n"]


@st.composite
def request_stream(draw: st.DrawFn) -> bytes:
    """Mostly well-formed pipelined requests, with smuggling ingredients and junk mixed in."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        method = draw(st.sampled_from(METHODS))
        target = draw(st.sampled_from(["/", "/a?b=c", "*", "http://h/p", "/\x00", "/ x"]))
        version = draw(st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1"]))
        line = f"{method} {target} {version}".encode("latin-1")
        fields = draw(st.lists(st.sampled_from(FIELDS), max_size=5))
        eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r"]))
        out.append(eol.join([line, *fields]) + eol + eol + draw(st.sampled_from(BODIES)))
        if draw(st.integers(0, 9)) == 0:
            out.append(draw(st.binary(max_size=20)))
    return b"".join(out)


@SETTINGS
@given(data=st.binary(max_size=600), control=st.integers(0, 255))
def test_any_bytes_never_crash_nor_depend_on_reads(data: bytes, control: int) -> None:
    one_input(bytes([control]) + data)


@SETTINGS
@given(stream=request_stream(), control=st.integers(0, 255))
def test_request_streams_same_requests_however_cut(stream: bytes, control: int) -> None:
    one_input(bytes([control]) + stream)


@SETTINGS
@given(stream=request_stream(), points=st.lists(st.integers(0, 2000), max_size=10))
def test_reads_of_any_sizes_parse_the_same(stream: bytes, points: list[int]) -> None:
    marks = [0, *sorted({p for p in points if 0 < p < len(stream)}), len(stream)]
    reads = [stream[a:b] for a, b in itertools.pairwise(marks) if b > a]
    limits = HTTPLimits()
    assert agree(run_reads(reads, limits), run(stream, 0, limits))


# -- the response framer --------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="latin-1"), max_size=12)
#: Fields the framer owns: it sets, replaces or drops them whatever the app says.
FRAMING = frozenset({"content-length", "connection", "date", "server", "transfer-encoding"})


@SETTINGS
@given(
    status=st.integers(0, 1200),
    reason=st.none() | _TEXT,
    headers=st.lists(st.tuples(_TEXT, _TEXT), max_size=6),
    body=st.binary(max_size=64),
    head=st.booleans(),
)
def test_framer_gives_one_parsable_response_or_refuses(
    status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes, head: bool
) -> None:
    request = Request()
    request.method = "HEAD" if head else "GET"
    request.keep_alive = True
    try:
        data, _ = full_response(request, status, headers, body, reason=reason)
    except LocalProtocolError:
        return
    if head:  # no body, whatever Content-Length says; nothing may follow the head
        assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1, data
    got, complete, code = _parse(data, head)
    assert complete and code == status, data
    expected = [
        (n.lower(), v.strip(" \t").encode("latin-1"))
        for n, v in headers
        if n.lower() not in FRAMING
    ]
    assert [(n, v) for n, v in got if n not in FRAMING] == expected


def _parse(data: bytes, head: bool) -> tuple[list[tuple[str, bytes]], bool, int]:
    """(headers, complete, status) of one response, as a strict parser reads it."""
    got: list[tuple[str, bytes]] = []
    complete: list[bool] = []

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            got.append((name.decode("latin-1").lower(), value))

        def on_headers_complete(self) -> None:
            if head:
                complete.append(True)

        def on_message_complete(self) -> None:
            complete.append(True)

    parser = httptools.HttpResponseParser(Sink())
    try:
        parser.feed_data(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if head else data)
    except httptools.HttpParserUpgrade:
        complete.append(True)  # a 101 with Connection: upgrade ends HTTP: that is complete
    except httptools.HttpParserError as exc:
        # llhttp pauses after any 101 head (with or without Upgrade fields): HTTP ends there
        if "Upgrade" not in str(exc) or parser.get_status_code() != 101:
            raise
        complete.append(True)
    return got, bool(complete), parser.get_status_code()


# -- live servers ---------------------------------------------------------------------------


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


@pytest.fixture(scope="module", params=["pool", "asyncio"])
def live(request: pytest.FixtureRequest) -> Iterator[Server]:
    with running_server(echo, model=str(request.param), access_log=False) as server:
        yield server


@pytest.mark.slow
@pytest.mark.shared_server
@settings(SETTINGS, max_examples=60)
@given(stream=request_stream() | st.binary(max_size=300))
def test_live_server_answers_any_bytes_then_closes(live: Server, stream: bytes) -> None:
    """Well-formed responses (a parser reads them back), then a close: never a hang."""
    assume(b"HEAD" not in stream)  # a response parser cannot tell a HEAD response's length
    with socket.create_connection(live.addresses[0]) as sock:
        sock.settimeout(5 * timeout_factor())
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused and closed before everything was sent
        raw = bytearray()
        try:
            while chunk := sock.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    _check_wire(bytes(raw))


def _check_wire(raw: bytes) -> None:
    """Whole, well-formed responses one after another, and nothing half-sent at the end."""
    counts = {"begun": 0, "done": 0}

    class Sink:
        def on_message_begin(self) -> None:
            counts["begun"] += 1

        def on_message_complete(self) -> None:
            counts["done"] += 1

    parser = httptools.HttpResponseParser(Sink())
    try:
        parser.feed_data(raw)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"malformed responses: {raw[:300]!r}") from exc
    assert counts["begun"] == counts["done"], f"a response cut short: {raw[-300:]!r}"
