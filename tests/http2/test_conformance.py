"""HTTP/2 frame-level conformance (RFC 9113's MUSTs), in the spirit of h2spec.

Each case writes raw frames over a socket (``conformance_client``) and checks the answer
against what RFC 9113 allows, not against what one library happens to do: a **connection
error** is a GOAWAY with the code, then the close; a **stream error** is an RST_STREAM with
the code *and the connection still serving* (a request on a new stream is answered), or
the same code as a connection error, which 5.4.1 permits ("an endpoint MAY choose to treat
a stream error as a connection error"; h2spec accepts it too); a frame on a closed stream
may also be discarded where 5.1 allows it; what must be **ignored** is followed by a PING
answered and a request served. h2spec accepts a bare close for most errors; these cases
do not, so that the code the server picked is checked too. The code is the one the RFC
names: 5.4 lets a generic code (PROTOCOL_ERROR, INTERNAL_ERROR) stand in for a specific
one, which this suite, like h2spec, does not take.

Every case runs under each HTTP/2 core (``tests/http2/conftest.py``: h2, and ngh2 where it
is installed). One server per model and interface serves every case of the module: WSGI
under each model, and ASGI under asyncio; the core is chosen per connection, so one server
serves both. A case that broke the server would fail the ones after it.

Where a core departs from the RFC, the case is ``xfail(strict=True)`` for that core only,
with the reason (``departs``; RELIABILITY.md, "HTTP/2 conformance", lists them), so a fixed
library shows up as a failure to remove the mark.

    .venv/bin/python -m pytest tests/http2/test_conformance.py
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.http2 import conformance_apps as apps
from tests.http2.conformance_client import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Closed,
    FrameClient,
    raw_frame,
    request_headers,
    setting,
)
from threadloom.server import Server
from threadloom.testing import running_server, timeout_factor

pytestmark = pytest.mark.shared_server

E = ErrorCodes
MAX_WINDOW = 2**31 - 1
# SETTINGS identifiers (RFC 9113 6.5.2)
HEADER_TABLE_SIZE, ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x1, 0x2, 0x4, 0x5

BASE = request_headers("GET", "/m")
SERVERS = [
    ("single", apps.wsgi_app),
    ("threads", apps.wsgi_app),
    ("pool", apps.wsgi_app),
    ("asyncio", apps.wsgi_app),
    ("asyncio", apps.asgi_app),
]


@pytest.fixture(
    scope="module",
    params=SERVERS,
    ids=[f"{model}-{'asgi' if app is apps.asgi_app else 'wsgi'}" for model, app in SERVERS],
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    model, app = request.param
    try:
        with running_server(app, model=model, access_log=False) as live:
            yield live
    finally:
        apps.Gate.release()
    deadline = time.monotonic() + 5 * timeout_factor()
    while [t for t in threading.enumerate() if t.name.startswith("threadloom")]:
        assert time.monotonic() < deadline, "the shared server left threads running"
        time.sleep(0.05)


@pytest.fixture
def address(server: Server) -> Iterator[Any]:
    yield server.addresses[0]
    apps.Gate.release()  # the apps a case held (``/hold``) end with it


@pytest.fixture
def client(address: Any) -> Iterator[FrameClient]:
    """A connection past the handshake (both SETTINGS sent, the server's acknowledged)."""
    with FrameClient(address) as live:
        live.handshake()
        yield live


def still_serving(client: FrameClient, stream_id: int) -> None:
    """The connection lives on: a PING is answered and a request on ``stream_id`` too."""
    client.ping()
    response = client.request(stream_id, path="/after")
    assert response.status == 200 and response.body.startswith(b"GET /after 0")


def departs(core: str, reason: str) -> Callable[[Any], Any]:
    """Marks a test where ``core`` departs from the RFC (a strict xfail under it only)."""

    def mark(test: Any) -> Any:
        test.departs = {**getattr(test, "departs", {}), core: reason}
        return test

    return mark


@pytest.fixture(autouse=True)
def _departures(request: pytest.FixtureRequest, each_h2_core: str) -> None:
    """The strict xfail of a case (``Case.departs``) or test (``departs``) under the core
    that departs from the RFC there; the other core must pass it."""
    reasons = dict(getattr(request.function, "departs", {}))
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("case")
    if isinstance(case, Case):
        reasons.update(case.departs)
    if each_h2_core in reasons:
        reason = f"{each_h2_core}: {reasons[each_h2_core]}"
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))


# -- 3.4 the connection preface --------------------------------------------------------------


def test_server_preface_is_settings_and_ours_is_acked(client: FrameClient) -> None:
    client.ping()  # every frame before the PING ACK has been read
    assert client.acks >= 1, "the server did not acknowledge our SETTINGS (RFC 9113 6.5.3)"
    assert client.server_settings.get(ENABLE_PUSH, 0) == 0


def test_preface_in_pieces(address: Any) -> None:
    """The preface may arrive a few bytes at a time (sniffing must wait for all of it)."""
    with FrameClient(address) as client:
        for i in range(0, len(PREFACE), 5):
            client.send(PREFACE[i : i + 5])
            time.sleep(0.01)  # separate segments: the server reads each on its own
        client.send(SettingsFrame(0))
        assert isinstance(client.next_frame(), SettingsFrame)
        assert client.request(1).status == 200


@pytest.mark.parametrize(
    "bad",
    [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\n\r\n\r\n", b"\x00" * 24],
    ids=["wrong-magic", "no-SM", "zeros"],
)
def test_invalid_preface_closes(address: Any, bad: bytes) -> None:
    """3.4: an invalid preface is a connection error: never served as HTTP/2. What
    comes back is HTTP/1.1's refusal (it is not HTTP/2 to the sniffer) or a GOAWAY."""
    with FrameClient(address) as client:
        client.send(bad + SettingsFrame(0).serialize())
        answer = client.read_raw()
    assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5"))


def test_preface_then_not_settings(address: Any) -> None:
    """3.4: the client's preface goes on with a SETTINGS frame; anything else (a PING
    here) is a connection error PROTOCOL_ERROR."""
    with FrameClient(address) as client:
        client.send(PREFACE + PingFrame(0, b"12345678").serialize())
        client.expect_goaway(E.PROTOCOL_ERROR)


def test_http11_still_served(address: Any) -> None:
    """Sniffing for the preface costs HTTP/1.1 nothing."""
    with socket.create_connection(address, timeout=5 * timeout_factor()) as sock:
        sock.sendall(b"GET /h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"GET /h1 0" in data


# -- connection errors: a table of frames and the GOAWAY code each must cost ------------------


@dataclass(frozen=True)
class Case:
    id: str
    frames: Callable[[FrameClient], list[Any]]
    codes: tuple[int, ...]
    #: a frame on a closed stream: discarding it is an answer too (RFC 9113 5.1)
    discard: bool = False
    #: where a core departs from the RFC: {core: why} (a strict xfail under that core)
    departs: Mapping[str, str] = field(default_factory=dict)

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def _open(c: FrameClient, stream_id: int = 1) -> HeadersFrame:
    """HEADERS that open a stream and leave it open (the body is still to come)."""
    return c.headers(stream_id, end_stream=False, path="/hold")


def _hpack(c: FrameClient, extra: list[tuple[str, str]], stream_id: int = 1) -> bytes:
    return raw_frame(HEADERS, END_HEADERS | END_STREAM, stream_id, c.block(extra))


CONNECTION_ERRORS = [
    # 4.1, 4.2 frame sizes
    Case(
        "4.2-DATA-over-max-frame-size",
        lambda c: [_open(c), raw_frame(DATA, 0, 1, b"x" * 16385)],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "4.2-HEADERS-over-max-frame-size",
        lambda c: [raw_frame(HEADERS, END_HEADERS, 1, b"\x82" * 16385)],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case("6.7-PING-length-7", lambda c: [raw_frame(PING, 0, 0, b"1234567")], (E.FRAME_SIZE_ERROR,)),
    Case(
        "6.7-PING-length-9", lambda c: [raw_frame(PING, 0, 0, b"123456789")], (E.FRAME_SIZE_ERROR,)
    ),
    Case(
        "6.9-WINDOW_UPDATE-length-3",
        lambda c: [raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "6.9-WINDOW_UPDATE-length-5",
        lambda c: [raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x01\x00")],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "6.4-RST_STREAM-length-3",
        lambda c: [_open(c), raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x08")],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "6.4-RST_STREAM-length-5",
        lambda c: [_open(c), raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00")],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "6.5-SETTINGS-ACK-with-payload",
        lambda c: [raw_frame(SETTINGS, ACK, 0, setting(ENABLE_PUSH, 0))],
        (E.FRAME_SIZE_ERROR,),
        departs={
            "h2": "4.4.1 answers a SETTINGS ACK with a payload with the generic "
            "PROTOCOL_ERROR, not the FRAME_SIZE_ERROR 6.5 names (hyperframe's "
            "InvalidDataError, which h2's frame buffer maps to PROTOCOL_ERROR)"
        },
    ),
    Case(
        "6.5-SETTINGS-length-not-multiple-of-6",
        lambda c: [raw_frame(SETTINGS, 0, 0, setting(ENABLE_PUSH, 0)[:5])],
        (E.FRAME_SIZE_ERROR,),
    ),
    # 6.5.2 SETTINGS values
    Case(
        "6.5.2-ENABLE_PUSH-2",
        lambda c: [raw_frame(SETTINGS, 0, 0, setting(ENABLE_PUSH, 2))],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.5.2-INITIAL_WINDOW_SIZE-2^31",
        lambda c: [raw_frame(SETTINGS, 0, 0, setting(INITIAL_WINDOW_SIZE, 2**31))],
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case(
        "6.5.2-MAX_FRAME_SIZE-16383",
        lambda c: [raw_frame(SETTINGS, 0, 0, setting(MAX_FRAME_SIZE, 16383))],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.5.2-MAX_FRAME_SIZE-2^24",
        lambda c: [raw_frame(SETTINGS, 0, 0, setting(MAX_FRAME_SIZE, 2**24))],
        (E.PROTOCOL_ERROR,),
    ),
    # frames on the wrong stream: 0 where a stream is needed, a stream where 0 is
    Case("6.1-DATA-on-stream-0", lambda c: [raw_frame(DATA, 0, 0, b"x")], (E.PROTOCOL_ERROR,)),
    Case(
        "6.2-HEADERS-on-stream-0",
        lambda c: [raw_frame(HEADERS, END_HEADERS, 0, c.block(request_headers()))],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.3-PRIORITY-on-stream-0",
        lambda c: [raw_frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.4-RST_STREAM-on-stream-0",
        lambda c: [raw_frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.5-SETTINGS-on-stream-1",
        lambda c: [raw_frame(SETTINGS, 0, 1, setting(ENABLE_PUSH, 0))],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.7-PING-on-stream-1", lambda c: [raw_frame(PING, 0, 1, b"12345678")], (E.PROTOCOL_ERROR,)
    ),
    Case(
        "6.8-GOAWAY-on-stream-1",
        lambda c: [raw_frame(GOAWAY, 0, 1, b"\x00" * 8)],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.10-CONTINUATION-on-stream-0",
        lambda c: [
            raw_frame(HEADERS, END_STREAM, 1, c.block(request_headers())),
            raw_frame(CONTINUATION, END_HEADERS, 0, b""),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    # 5.1 frames an idle stream cannot take
    Case("5.1-idle-DATA", lambda c: [raw_frame(DATA, 0, 1, b"x")], (E.PROTOCOL_ERROR,)),
    Case(
        "5.1-idle-RST_STREAM",
        lambda c: [raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "5.1-idle-WINDOW_UPDATE",
        lambda c: [raw_frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x01")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "5.1-idle-CONTINUATION",
        lambda c: [raw_frame(CONTINUATION, END_HEADERS, 1, c.block(request_headers()))],
        (E.PROTOCOL_ERROR,),
    ),
    # 5.1.1 stream identifiers
    Case(
        "5.1.1-even-stream-id",
        lambda c: [c.headers(2)],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "5.1.1-decreasing-stream-id",
        lambda c: [_open(c, 5), c.headers(3)],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "8.4-PUSH_PROMISE-from-a-client",
        lambda c: [
            _open(c),
            raw_frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02" + c.block(BASE)),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    # 4.3, 6.10 header blocks
    Case(
        "4.3-HPACK-invalid-index",
        lambda c: [raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80")],
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "4.3-HPACK-index-past-the-table",
        lambda c: [raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x7f")],
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "4.3-HPACK-table-size-update-over-our-setting",
        lambda c: [raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x3f\xe2\x1f\x82")],
        (E.COMPRESSION_ERROR,),
    ),
    Case(
        "4.3-PRIORITY-inside-a-header-block",
        lambda c: [
            raw_frame(HEADERS, END_STREAM, 1, c.block(request_headers())),
            raw_frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10"),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "4.3-HEADERS-of-another-stream-inside-a-header-block",
        lambda c: [
            raw_frame(HEADERS, END_STREAM, 1, c.block(request_headers())),
            raw_frame(HEADERS, END_HEADERS | END_STREAM, 3, c.block(request_headers())),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "5.5-unknown-frame-inside-a-header-block",
        lambda c: [
            raw_frame(HEADERS, END_STREAM, 1, c.block(request_headers())),
            raw_frame(0xFA, 0, 1, b"ext"),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.10-DATA-inside-a-header-block",
        lambda c: [
            raw_frame(HEADERS, 0, 1, c.block(request_headers())),
            raw_frame(DATA, END_STREAM, 1, b"x"),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.10-CONTINUATION-after-END_HEADERS",
        lambda c: [
            _open(c),
            raw_frame(CONTINUATION, END_HEADERS, 1, c.block([("x-late", "1")])),
        ],
        (E.PROTOCOL_ERROR,),
    ),
    # 6.1, 6.2 padding longer than the frame
    Case(
        "6.1-DATA-padding-past-the-frame",
        lambda c: [_open(c), raw_frame(DATA, PADDED, 1, b"\x06hello")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.2-HEADERS-padding-past-the-frame",
        lambda c: [raw_frame(HEADERS, END_HEADERS | PADDED | END_STREAM, 1, b"\xff\x82\x86")],
        (E.PROTOCOL_ERROR,),
    ),
    # 6.8, 6.9 flow control
    Case(
        "6.9-WINDOW_UPDATE-0-on-the-connection",
        lambda c: [raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.9.1-connection-window-over-2^31-1",
        lambda c: [WindowUpdateFrame(0, MAX_WINDOW)],
        (E.FLOW_CONTROL_ERROR,),
    ),
    Case(
        "6.9.2-INITIAL_WINDOW_SIZE-pushes-a-stream-window-over-2^31-1",
        lambda c: [
            _open(c),
            WindowUpdateFrame(1, MAX_WINDOW - 65535),
            raw_frame(SETTINGS, 0, 0, setting(INITIAL_WINDOW_SIZE, 65536)),
        ],
        (E.FLOW_CONTROL_ERROR,),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CONNECTION_ERRORS])
def test_connection_error(client: FrameClient, case: Case) -> None:
    client.send(*case.frames(client))
    client.expect_goaway(*case.codes)


# -- stream errors: the stream is reset and the connection serves on, or (5.4.1) it ends ----

STREAM_ERRORS = [
    # 5.1 half-closed (remote): "MUST respond with a stream error ... STREAM_CLOSED"
    Case(
        "5.1-half-closed-remote-DATA",
        lambda c: [c.headers(1), raw_frame(DATA, END_STREAM, 1, b"x")],
        (E.STREAM_CLOSED,),
    ),
    Case(
        "5.1-half-closed-remote-HEADERS",
        lambda c: [c.headers(1), _hpack(c, [("x-trailer", "1")])],
        (E.STREAM_CLOSED,),
    ),
    # 5.1 closed, after the peer's RST_STREAM: a connection error STREAM_CLOSED (MAY), the
    # frame discarded ("minimal processing ... for all streams that are in the closed
    # state"), or, for DATA, the stream error 6.1 asks for
    Case(
        "5.1-closed-by-RST_STREAM-then-DATA",
        lambda c: [_open(c), RstStreamFrame(1, E.CANCEL), raw_frame(DATA, 0, 1, b"x")],
        (E.STREAM_CLOSED,),
        discard=True,
    ),
    Case(
        "5.1-closed-by-RST_STREAM-then-HEADERS",
        lambda c: [_open(c), RstStreamFrame(1, E.CANCEL), _hpack(c, [("x-trailer", "1")])],
        (E.STREAM_CLOSED,),
        discard=True,
    ),
    # RFC 7540 5.3.1 made a stream that depends on itself a stream error PROTOCOL_ERROR;
    # RFC 9113 5.3.2 deprecates these priority signals and leaves that rule out: ignored,
    # or the error of a core that still reads them
    Case(
        "5.3.2-HEADERS-depends-on-itself",
        lambda c: [
            raw_frame(
                HEADERS,
                END_HEADERS | END_STREAM | PRIORITY_FLAG,
                1,
                b"\x00\x00\x00\x01\x10" + c.block(request_headers()),
            )
        ],
        (E.PROTOCOL_ERROR,),
        discard=True,  # (here: the priority ignored, the request served)
    ),
    Case(
        "5.3.2-PRIORITY-depends-on-itself",
        lambda c: [_open(c), raw_frame(PRIORITY, 0, 1, b"\x00\x00\x00\x01\x10")],
        (E.PROTOCOL_ERROR,),
        discard=True,
    ),
    Case(
        "6.3-PRIORITY-length-4",
        lambda c: [_open(c), raw_frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00")],
        (E.FRAME_SIZE_ERROR,),
    ),
    Case(
        "6.9-WINDOW_UPDATE-0-on-a-stream",
        lambda c: [_open(c), raw_frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x00")],
        (E.PROTOCOL_ERROR,),
    ),
    Case(
        "6.9.1-stream-window-over-2^31-1",
        lambda c: [_open(c), WindowUpdateFrame(1, MAX_WINDOW)],
        (E.FLOW_CONTROL_ERROR,),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in STREAM_ERRORS])
def test_stream_error(client: FrameClient, case: Case) -> None:
    client.send(*case.frames(client))
    if client.expect_error(1, *case.codes, discard=case.discard) != "connection":
        still_serving(client, 7)


def test_closed_stream_then_DATA(client: FrameClient) -> None:
    """5.1 closed: DATA after the stream ended both ways (answered and read). RFC 9113
    lets the server make it a connection error STREAM_CLOSED (7540 said it must) or
    discard it (5.1), and 6.1 asks for a stream error STREAM_CLOSED: any of the three."""
    assert client.request(1).status == 200
    client.send(raw_frame(DATA, END_STREAM, 1, b"x"))
    if client.expect_error(1, E.STREAM_CLOSED, discard=True) != "connection":
        still_serving(client, 3)


def test_closed_stream_then_HEADERS(client: FrameClient) -> None:
    """5.1 closed / 5.1.1: HEADERS on a stream already used: a connection error,
    STREAM_CLOSED (closed) or PROTOCOL_ERROR (a stream id not above the last), or, since
    5.1 lets an endpoint discard what comes on a closed stream, nothing (no second answer)."""
    assert client.request(1).status == 200
    client.send(client.headers(1))
    if client.expect_error(None, E.STREAM_CLOSED, E.PROTOCOL_ERROR, discard=True) != "connection":
        assert len(client.blocks[1]) == 1, "stream 1 was answered twice"
        still_serving(client, 3)


def test_stream_limit(client: FrameClient) -> None:
    """5.1.2: past SETTINGS_MAX_CONCURRENT_STREAMS, a stream error REFUSED_STREAM or
    PROTOCOL_ERROR (or, 5.4.1, a connection error)."""
    limit = client.server_settings[0x3]
    assert 1 <= limit <= 1000
    ids = [1 + 2 * i for i in range(limit + 1)]
    client.send(*[_open(client, stream_id) for stream_id in ids])
    if client.expect_error(ids[-1], E.REFUSED_STREAM, E.PROTOCOL_ERROR) == "stream":
        client.ping()


# -- what must be ignored --------------------------------------------------------------------

IGNORED = [
    Case("4.1-unknown-frame-type", lambda c: [raw_frame(0xFA, 0, 0, b"anything")], ()),
    Case("5.5-unknown-frame-type-on-a-stream", lambda c: [raw_frame(0xFA, 0xFF, 1, b"x")], ()),
    Case(
        "4.1-reserved-bit-in-stream-id",
        lambda c: [
            raw_frame(HEADERS, END_HEADERS | END_STREAM, 1 | 1 << 31, c.block(request_headers()))
        ],
        (),
    ),
    Case("6.5.2-unknown-setting", lambda c: [raw_frame(SETTINGS, 0, 0, setting(0xFF, 1))], ()),
    Case(
        "5.3-PRIORITY-on-an-idle-stream",
        lambda c: [raw_frame(PRIORITY, 0, 5, b"\x00\x00\x00\x00\x10")],
        (),
    ),
    Case("7-RST_STREAM-unknown-code", lambda c: [_open(c), RstStreamFrame(1, 0xFF)], ()),
]


@pytest.mark.parametrize("case", [c.param() for c in IGNORED])
def test_ignored(client: FrameClient, case: Case) -> None:
    client.send(*case.frames(client))
    still_serving(client, 7)


def test_settings_ack_unasked(client: FrameClient) -> None:
    """6.5, 6.5.3: a SETTINGS ACK acknowledges the peer's SETTINGS; for one with nothing
    to acknowledge the RFC names no answer. Ignored, or a connection error PROTOCOL_ERROR
    (5.4: the generic code; 5.4.1: "an endpoint can end a connection at any time")."""
    client.ping()  # the handshake's ACK has been read: nothing of ours is unacknowledged
    client.send(SettingsFrame(0, flags=["ACK"]))
    if client.expect_error(None, E.PROTOCOL_ERROR, discard=True) != "connection":
        still_serving(client, 1)


def test_undefined_flags_ignored(client: FrameClient) -> None:
    """4.1: flags a frame type does not define are ignored: a PING with all of them but
    ACK set is answered as any PING."""
    client.send(raw_frame(PING, 0xFE, 0, b"12345678"))
    assert b"12345678" in client.ping()
    still_serving(client, 1)


def test_ping_ack_not_answered(client: FrameClient) -> None:
    """6.7: a PING with ACK is never answered."""
    client.send(PingFrame(0, b"unasked!", flags=["ACK"]))
    assert client.ping() == []
    still_serving(client, 1)


def test_settings_acked(client: FrameClient) -> None:
    """6.5.3: each SETTINGS without ACK is answered by a SETTINGS ACK."""
    client.ping()  # the ACK of the handshake's SETTINGS is in
    before = client.acks
    client.send(SettingsFrame(0, {INITIAL_WINDOW_SIZE: 100, INITIAL_WINDOW_SIZE + 1: 0x5000}))
    client.send(SettingsFrame(0, {}))
    client.ping()
    assert client.acks == before + 2


def test_ping_answered(client: FrameClient) -> None:
    """6.7: a PING is answered with a PING ACK carrying the same 8 octets (ping() checks)."""
    for _ in range(3):
        client.ping()


# -- frame sizes, padding, header blocks that must be accepted -------------------------------


def test_data_of_max_frame_size_accepted(client: FrameClient) -> None:
    """4.2: a frame of 2^14 octets is always acceptable."""
    body = b"d" * 16384
    response = client.request(1, path="/echo", body=body, method="POST")
    assert response.body.endswith(b" 16384 te=\n" + body)


def test_padding_accepted(client: FrameClient) -> None:
    """6.1, 6.2: padded HEADERS and DATA; the padding is not body."""
    block = client.block(request_headers("POST", "/padded"))
    client.send(
        raw_frame(HEADERS, END_HEADERS | PADDED, 1, b"\x04" + block + b"\x00" * 4),
        raw_frame(DATA, PADDED | END_STREAM, 1, b"\x0ahello" + b"\x00" * 10),
    )
    response = client.response(1)
    assert response.body == b"POST /padded 5 te=\nhello"


def test_continuation_accepted(client: FrameClient) -> None:
    """6.10: a header block split over HEADERS and two CONTINUATIONs."""
    block = client.block([*request_headers("GET", "/continued"), ("x-a", "a" * 100)])
    third = len(block) // 3
    client.send(
        raw_frame(HEADERS, END_STREAM, 1, block[:third]),
        raw_frame(CONTINUATION, 0, 1, block[third : 2 * third]),
        raw_frame(CONTINUATION, END_HEADERS, 1, block[2 * third :]),
    )
    assert client.response(1).body.startswith(b"GET /continued 0")


def test_response_frames_within_max_frame_size(client: FrameClient) -> None:
    """4.2: the server's DATA frames never exceed our SETTINGS_MAX_FRAME_SIZE (16,384)."""
    response = client.request(1, path="/big")
    sizes = [len(f.data) for f in response.frames if isinstance(f, DataFrame)]
    assert sum(sizes) == apps.BIG and max(sizes) <= 16384


def test_header_table_size_0_honoured(address: Any) -> None:
    """6.5.2: SETTINGS_HEADER_TABLE_SIZE 0: the server's encoder uses no dynamic table
    (our decoder refuses one)."""
    with FrameClient(address) as client:
        client.decoder.max_allowed_table_size = 0
        client.handshake({HEADER_TABLE_SIZE: 0})
        for stream_id in (1, 3, 5):
            assert client.request(stream_id).status == 200


# -- flow control ----------------------------------------------------------------------------


def test_initial_window_size_1(address: Any) -> None:
    """6.9.1: with SETTINGS_INITIAL_WINDOW_SIZE 1 the response's DATA is one octet until
    we open the stream's window; then the rest comes."""
    with FrameClient(address) as client:
        client.auto_window = False
        client.handshake({INITIAL_WINDOW_SIZE: 1})
        client.send(client.headers(1, path="/window"))
        got = _data_until(client, 1, 1)
        client.ping()  # and nothing more in the meantime
        assert got == 1
        client.send(WindowUpdateFrame(1, 1000))
        got += _data_until(client, 1, 0, ended=True)
        assert got == len(b"GET /window 0 te=\n")


def test_initial_window_size_change_applies_to_open_streams(address: Any) -> None:
    """6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE changes the windows of open streams."""
    with FrameClient(address) as client:
        client.auto_window = False
        client.handshake({INITIAL_WINDOW_SIZE: 0})
        client.send(client.headers(1, path="/window"))
        client.ping()
        client.send(SettingsFrame(0, {INITIAL_WINDOW_SIZE: 3}))
        assert _data_until(client, 1, 3) == 3
        client.send(SettingsFrame(0, {INITIAL_WINDOW_SIZE: 1000}))
        assert _data_until(client, 1, 0, ended=True) == len(b"GET /window 0 te=\n") - 3


def _data_until(client: FrameClient, stream_id: int, size: int, ended: bool = False) -> int:
    """Read the stream's DATA until ``size`` octets (or its end); their total."""
    got = 0
    while got < size or ended:
        frame = client.next_frame()
        if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
            raise AssertionError(f"stream {stream_id} reset")
        if isinstance(frame, DataFrame) and frame.stream_id == stream_id:
            got += len(frame.data)
            if ended and "END_STREAM" in frame.flags:
                break
    return got


def test_data_past_our_window(server: Server, client: FrameClient) -> None:
    """6.9.1: the connection window (65,535 octets, not given back: the app holds the
    body) may be filled, not overrun: one octet more is FLOW_CONTROL_ERROR."""
    if server.config.model == "single":
        pytest.skip("single runs the app inline: an app that holds stops the reading too")
    client.send(_open(client))
    full = [DataFrame(1, b"w" * 16384)] * 3 + [DataFrame(1, b"w" * 16383)]
    client.send(*full)
    client.ping()  # the full window was taken
    client.send(DataFrame(1, b"!"))
    client.expect_goaway(E.FLOW_CONTROL_ERROR)


# -- GOAWAY and error codes ------------------------------------------------------------------


def test_goaway_from_client_ends_connection(client: FrameClient) -> None:
    """6.8: after a client's GOAWAY the server closes the connection."""
    assert client.request(1).status == 200
    client.send(GoAwayFrame(0, 1, E.NO_ERROR))
    client.expect_closed()


@departs(
    "h2",
    "4.4.1's connection state machine closes on a GOAWAY received: nothing can be sent "
    "after it, so a stream the client opened before its GOAWAY is given up (6.8 lets it "
    "finish; ngh2 does)",
)
def test_goaway_from_client_lets_streams_finish(client: FrameClient) -> None:
    """6.8: a client's GOAWAY stops new streams; the one it sent first is still answered."""
    client.send(client.headers(1, path="/last"), GoAwayFrame(0, 0, E.NO_ERROR))
    try:
        response = client.response(1)
    except Closed as exc:
        raise AssertionError("closed without an answer") from exc
    assert response.status == 200 and response.body.startswith(b"GET /last 0")
    client.expect_closed()


def test_goaway_unknown_code(client: FrameClient) -> None:
    """7: an unknown error code triggers nothing special: the server closes as for any
    GOAWAY, and goes on serving others (the next case's connection)."""
    client.send(GoAwayFrame(0, 0, 0xFF))
    client.expect_closed()


# -- HTTP semantics (8.1-8.3): malformed requests are stream errors PROTOCOL_ERROR ------------

# 8.1.1: "Malformed requests or responses that are detected MUST be treated as a stream
# error (Section 5.4.2) of type PROTOCOL_ERROR" (ngh2's answer), which 5.4.1 lets an
# endpoint make a connection error (h2's: it costs the client its other streams)
MALFORMED_REQUESTS = [
    ("8.3-unknown-pseudo-header", [*BASE, (":foo", "bar")]),
    ("8.3-response-pseudo-header", [*BASE, (":status", "200")]),
    ("8.3-pseudo-after-regular", [*BASE[:3], ("x-a", "1"), BASE[3]]),
    ("8.3-no-method", BASE[1:]),
    ("8.3-no-scheme", [BASE[0], *BASE[2:]]),
    ("8.3-no-path", BASE[:3]),
    ("8.3-empty-path", [*BASE[:3], (":path", "")]),
    ("8.3-two-methods", [*BASE, (":method", "GET")]),
    ("8.3-two-schemes", [*BASE, (":scheme", "http")]),
    ("8.3-two-paths", [*BASE, (":path", "/")]),
    ("8.2-uppercase-name", [*BASE, ("X-Upper", "1")]),
    ("8.2.2-connection-header", [*BASE, ("connection", "keep-alive")]),
    ("8.2.2-te-gzip", [*BASE, ("te", "gzip")]),
]


@pytest.mark.parametrize("headers", [pytest.param(h, id=i) for i, h in MALFORMED_REQUESTS])
def test_malformed_request(client: FrameClient, headers: list[tuple[str, str]]) -> None:
    """A stream error PROTOCOL_ERROR, or a connection error; never an answer from the app
    (8.1.1 would let the server answer 4xx first: neither core does)."""
    client.send(_hpack(client, headers))
    if client.expect_error(1, E.PROTOCOL_ERROR) == "stream":
        still_serving(client, 3)
    assert 1 not in client.blocks, "the malformed request was answered"


@pytest.mark.parametrize("where", ["trailers-pseudo-header", "trailers-without-END_STREAM"])
def test_malformed_trailers(client: FrameClient, where: str) -> None:
    """8.1: trailers carry no pseudo-header and end the stream."""
    client.send(client.headers(1, end_stream=False, method="POST"), DataFrame(1, b"x"))
    if where == "trailers-pseudo-header":
        client.send(_hpack(client, [(":path", "/x")]))
    else:
        client.send(raw_frame(HEADERS, END_HEADERS, 1, client.block([("x-t", "1")])))
    if client.expect_error(1, E.PROTOCOL_ERROR) == "stream":
        still_serving(client, 3)


@pytest.mark.parametrize("frames", [[3], [1, 1]], ids=["one-DATA", "two-DATA"])
def test_content_length_disagrees(client: FrameClient, frames: list[int]) -> None:
    """8.1.1: a content-length other than the DATA's total makes a request malformed."""
    head = [*request_headers("POST", "/cl"), ("content-length", "4")]
    client.send(raw_frame(HEADERS, END_HEADERS, 1, client.block(head)))
    for i, size in enumerate(frames):
        flags = ["END_STREAM"] if i == len(frames) - 1 else []
        client.send(DataFrame(1, b"c" * size, flags=flags))
    if client.expect_error(1, E.PROTOCOL_ERROR) == "stream":
        still_serving(client, 3)


def test_trailers_accepted(client: FrameClient) -> None:
    """8.1: a request with trailers (HEADERS, DATA, HEADERS with END_STREAM)."""
    client.send(
        client.headers(1, end_stream=False, method="POST", path="/trailers"),
        DataFrame(1, b"body"),
        _hpack(client, [("x-checksum", "abc")]),
    )
    assert client.response(1).body == b"POST /trailers 4 te=\nbody"


def test_te_trailers_allowed(client: FrameClient) -> None:
    """8.2.2: ``te`` may be sent with the value ``trailers``, and nothing else."""
    client.send(_hpack(client, [*request_headers("GET", "/te"), ("te", "trailers")]))
    assert client.response(1).body == b"GET /te 0 te=trailers\n"


def test_head_has_no_body(client: FrameClient) -> None:
    """8.1 / RFC 9110 9.3.2: the response to HEAD carries no content (the app's body is
    dropped), and it ends the stream."""
    response = client.request(1, path="/head", method="HEAD")
    assert response.status == 200 and response.body == b""
    assert not [f for f in response.frames if isinstance(f, DataFrame) and f.data]


def test_request_body_delivered(client: FrameClient) -> None:
    """A body over several DATA frames reaches the app whole (and the window comes back:
    three times the initial window is sent)."""
    body = bytes(range(256)) * 768  # 196,608 octets
    client.send(client.headers(1, end_stream=False, method="POST", path="/body"))
    client.send_body(1, body)
    response = client.response(1)
    assert response.body == b"POST /body %d te=\n" % len(body) + body


def test_unread_bodies_give_their_window_back(client: FrameClient) -> None:
    """An app that answers without reading its body: the octets the body took of the
    connection's window come back all the same (three such bodies are more than the
    whole window, and a fourth request's body still gets through)."""
    for stream_id in (1, 3, 5):
        client.send(client.headers(stream_id, end_stream=False, method="POST", path="/noread"))
        client.send_body(stream_id, b"n" * 30000)
        assert client.response(stream_id).body.startswith(b"POST /noread 0")
    client.send(client.headers(7, end_stream=False, method="POST", path="/echo"))
    client.send_body(7, b"e" * 30000)
    assert client.response(7).body.startswith(b"POST /echo 30000")


def test_concurrent_bodies_share_the_window(client: FrameClient) -> None:
    """Two bodies of 40,000 octets sent side by side: the connection's window (65,535)
    cannot hold both whole, so each app must get its request before its body is."""
    ids = (1, 3)
    client.send(*[client.headers(i, end_stream=False, method="POST", path="/echo") for i in ids])
    for i in ids:  # the first 30,000 octets of each: 60,000 of the window, no END_STREAM
        client.send(DataFrame(i, b"a" * 15000), DataFrame(i, b"a" * 15000))
        client.window -= 30000
        client.stream_windows[i] = client._stream_window(i) - 30000
    for i in ids:
        client.send_body(i, b"z" * 10000)
    for i in ids:
        assert client.response(i).body == b"POST /echo 40000 te=\n" + b"a" * 30000 + b"z" * 10000
