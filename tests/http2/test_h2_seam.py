"""The HTTP/2 seam (``protocols/http2``) under each core: the same events and the same
answers from h2 and ngh2, where the issue asks for them (issue 15), without the engine.

Where the cores may answer differently the test says which answers are allowed: h2 makes a
malformed request a connection error, ngh2 a stream error (RFC 9113 8.1.1 asks for the
latter); both refuse it. An ``h2`` client makes the bytes; ``hyperframe``/``hpack`` make
the ones no honest client would.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PriorityFrame

from tests.engine.test_h2_core import T0, settings
from threadloom.engine import h2_core
from threadloom.engine.h2_core import H2Core
from threadloom.protocols.http2 import (
    Closed,
    DataIn,
    H2Limits,
    H2Seam,
    Opened,
    Reset,
    WindowOpened,
    new_connection,
)

GET = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
POST = [(":method", "POST"), (":path", "/up"), (":scheme", "http"), (":authority", "t")]


class Pair:
    """A seam and an h2 client talking to it through memory."""

    def __init__(self, limits: H2Limits | None = None, *, read_settings: bool = True) -> None:
        self.conn: H2Seam = new_connection(limits or H2Limits())
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        self.client_events: list[Any] = []
        if read_settings:
            self.read()
            self.send()
            self.read()

    def send(self, data: bytes | None = None) -> list[Any]:
        data = self.client.data_to_send() if data is None else data
        return self.conn.receive(data) if data else []

    def read(self) -> list[Any]:
        out = self.conn.data_to_send()
        if not out:
            return []
        try:
            events = self.client.receive_data(out)
        except h2.exceptions.ProtocolError:
            events = []
        self.client_events.extend(events)
        return events

    def goaway(self) -> Any:
        goaways = [e for e in self.client_events if isinstance(e, h2.events.ConnectionTerminated)]
        return goaways[-1] if goaways else None

    def resets(self) -> dict[int, int]:
        return {
            e.stream_id: e.error_code
            for e in self.client_events
            if isinstance(e, h2.events.StreamReset)
        }


def raw_goaway_code(out: bytes) -> int | None:
    """The error code of the last GOAWAY frame in ``out`` (frames read by hand: a client
    library may refuse a connection this broken)."""
    code, at = None, 0
    while at + 9 <= len(out):
        size = int.from_bytes(out[at : at + 3], "big")
        if out[at + 3] == 7:
            code = int.from_bytes(out[at + 13 : at + 17], "big")
        at += 9 + size
    return code


def test_the_advertised_stream_limit_is_ours() -> None:
    pair = Pair(H2Limits(max_streams=7))
    assert pair.client.remote_settings.max_concurrent_streams == 7
    assert pair.client.remote_settings.enable_push == 0


def test_a_request_and_its_response(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, [*GET, ("cookie", "a=1"), ("cookie", "b=2")], end_stream=True)
    (opened,) = [e for e in pair.send() if isinstance(e, Opened)]
    assert opened.stream_id == 1 and opened.ended
    request = opened.request
    assert request.method == "GET" and request.http_version == "2"
    assert (b"host", b"t") in request.headers
    assert (b"cookie", b"a=1; b=2") in request.headers  # split cookies joined (RFC 9113 8.2.3)
    conn = pair.conn
    assert conn.stream_open(1)
    conn.send_headers(1, [(b":status", b"200"), (b"content-length", b"2")], end=False)
    assert conn.window(1) >= 2  # (h2 cuts it to a frame, ngh2 leaves that to nghttp2)
    conn.send_data(1, b"ok", end=True)
    events = pair.read()
    assert [type(e) for e in events] == [
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]


def test_streams_past_the_advertised_limit_reach_the_engine(each_h2_core: str) -> None:
    """The engine refuses the streams past the advertised limit (``tests/engine/
    test_h2_core.py``), so the seam lets them through: up to twice the limit under h2, which
    enforces a limit of its own (it is given twice ours) and ends the connection past it;
    all of them under ngh2, given no limit (nghttp2 would refuse streams itself, before the
    client acknowledges our SETTINGS with no event to count them by)."""
    pair = Pair(H2Limits(max_streams=2))
    pair.client.remote_settings.max_concurrent_streams = 100  # a client that ignores it
    pair.client.remote_settings.acknowledge()
    for _ in range(4):
        pair.client.send_headers(pair.client.get_next_available_stream_id(), GET)
    opened = [e.stream_id for e in pair.send() if isinstance(e, Opened)]
    assert opened == [1, 3, 5, 7]
    pair.read()
    assert pair.goaway() is None
    pair.client.send_headers(pair.client.get_next_available_stream_id(), GET)
    events = pair.send()
    if each_h2_core == "ngh2":
        assert [e.stream_id for e in events if isinstance(e, Opened)] == [9]
        return
    (closed,) = [e for e in events if isinstance(e, Closed)]
    assert not closed.by_peer
    pair.read()
    assert pair.goaway().error_code == ErrorCodes.PROTOCOL_ERROR


def test_host_that_disagrees_with_authority_is_refused(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, [*GET, ("host", "elsewhere")], end_stream=True)
    events = pair.send()
    assert not [e for e in events if isinstance(e, Opened)]
    pair.read()
    if each_h2_core == "ngh2":  # a stream error: the connection lives on
        assert pair.resets() == {1: ErrorCodes.PROTOCOL_ERROR}
        assert pair.conn.provoked_resets == 1
        pair.client.send_headers(3, GET, end_stream=True)
        assert [e.stream_id for e in pair.send() if isinstance(e, Opened)] == [3]
    else:  # h2: a connection error
        assert pair.goaway().error_code == ErrorCodes.PROTOCOL_ERROR


def test_content_length_that_disagrees_with_the_data_is_refused(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, [*POST, ("content-length", "10")])
    pair.client.send_data(1, b"12345", end_stream=True)
    events = pair.send()
    if each_h2_core == "ngh2":  # the engine hears that the stream it was given is gone
        (reset,) = [e for e in events if isinstance(e, Reset)]
        assert (reset.stream_id, reset.code, reset.by_peer) == (1, ErrorCodes.PROTOCOL_ERROR, False)
        assert not [e for e in events if isinstance(e, DataIn) and e.ended]
        assert pair.conn.provoked_resets == 1
        pair.read()
        assert pair.resets() == {1: ErrorCodes.PROTOCOL_ERROR}
    else:
        assert [e for e in events if isinstance(e, Closed)]
        pair.read()
        assert pair.goaway().error_code == ErrorCodes.PROTOCOL_ERROR


def _header_block(fields: list[tuple[str, str]], stream_id: int = 1) -> list[bytes]:
    """One header block cut into HEADERS and CONTINUATION frames of 16 KB."""
    block = hpack.Encoder().encode(fields)
    pieces = [block[at : at + 16000] for at in range(0, len(block), 16000)] or [b""]
    frames = []
    for index, piece in enumerate(pieces):
        frame: Any = HeadersFrame(stream_id) if index == 0 else ContinuationFrame(stream_id)
        frame.data = piece
        if index == 0:
            frame.flags.add("END_STREAM")
        if index == len(pieces) - 1:
            frame.flags.add("END_HEADERS")
        frames.append(frame.serialize())
    return frames


def _continuation_flood() -> bytes:
    first = HeadersFrame(1)
    first.data = hpack.Encoder().encode(GET)[:1]
    empty = ContinuationFrame(1)
    empty.data = b""
    return first.serialize() + empty.serialize() * 10000


def _hpack_bomb() -> bytes:
    """A 4 KB field put in the dynamic table once, then indexed over and over."""
    encoder = hpack.Encoder()
    block = encoder.encode([*GET, ("x-bomb", "a" * 4000)])
    again = encoder.encode([("x-bomb", "a" * 4000)])  # an index: one or two bytes
    return _header_block_raw(block + again * 100)


def _header_block_raw(block: bytes) -> bytes:
    frame = HeadersFrame(1)
    frame.data = block
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


ATTACKS = {
    "header-list-too-large": lambda: b"".join(_header_block([*GET, ("x-big", "a" * 70000)])),
    "continuation-flood": _continuation_flood,
    "hpack-bomb": _hpack_bomb,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_what_kills_the_session_still_gets_a_goaway(each_h2_core: str, attack: str) -> None:
    """ngh2 raises and writes nothing more on these; the seam writes the GOAWAY."""
    pair = Pair()
    events = pair.send(ATTACKS[attack]())
    (closed,) = [e for e in events if isinstance(e, Closed)]
    assert not closed.by_peer
    assert pair.conn.closed
    code = raw_goaway_code(pair.conn.data_to_send())
    assert code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)
    if each_h2_core == "ngh2" or attack != "continuation-flood":
        assert code == ErrorCodes.ENHANCE_YOUR_CALM
    assert closed.code == code
    if each_h2_core == "ngh2":  # a dead session: what is still called does nothing
        conn = pair.conn
        assert conn.receive(b"\x00" * 9) == []
        conn.reset(1, ErrorCodes.CANCEL)
        conn.consumed(1, 10)
        conn.send_headers(1, [(b":status", b"200")], end=True)
        conn.going_away(ErrorCodes.ENHANCE_YOUR_CALM)
        assert conn.window(1) == conn.peer_window(1) == 0
        assert conn.data_to_send() == b""


def test_a_bad_preface_is_a_connection_error(each_h2_core: str) -> None:
    conn = new_connection(H2Limits())
    conn.data_to_send()
    events = conn.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40)
    assert [type(e) for e in events] == [Closed]
    # RFC 9113 3.4: PROTOCOL_ERROR, and the GOAWAY MAY be left out (h2 leaves it out)
    expected = [ErrorCodes.PROTOCOL_ERROR] + ([None] if each_h2_core == "h2" else [])
    assert raw_goaway_code(conn.data_to_send()) in expected


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
    return head + payload


@pytest.mark.parametrize("cut", [None, 4, 11], ids=["one-read", "cut-in-a-header", "cut-after"])
@pytest.mark.parametrize("case", ["priority-on-stream-0", "headers-on-a-skipped-id"])
def test_what_the_library_may_let_through_is_a_connection_error(
    each_h2_core: str, case: str, cut: int | None
) -> None:
    """RFC 9113 6.3 (PRIORITY on stream 0) and 5.1.1 (HEADERS on a stream id below one the
    peer has opened, never opened itself): connection errors PROTOCOL_ERROR, and nothing
    after the frame is processed. ngh2's seam reads them off the frame headers, which reads
    may cut anywhere."""
    pair = Pair()
    pair.client.send_headers(5, GET)  # stream 5 open, 1 and 3 skipped
    before = pair.client.data_to_send()
    if case == "priority-on-stream-0":
        bad = _frame(2, 0, 0, b"\x00\x00\x00\x01\x10")
    else:
        bad = _frame(1, 0x5, 3, pair.client.encoder.encode(GET))
    data = before + bad + _frame(6, 0, 0, b"12345678")  # (a PING after it: never answered)
    reads = [data] if cut is None else [data[: len(before) + cut], data[len(before) + cut :]]
    events: list[Any] = []
    for read in reads:
        if not [e for e in events if isinstance(e, Closed)]:  # (the engine stops there)
            events += pair.send(read)
    opened = [e.stream_id for e in events if isinstance(e, Opened)]
    assert opened == [5] or (each_h2_core == "h2" and not opened)  # (h2 drops the events
    (closed,) = [e for e in events if isinstance(e, Closed)]  # of a read it fails in)
    assert closed.code == ErrorCodes.PROTOCOL_ERROR and not closed.by_peer
    out = pair.conn.data_to_send()
    assert raw_goaway_code(out) == ErrorCodes.PROTOCOL_ERROR
    assert b"\x06\x01\x00\x00\x00\x0012345678" not in out  # the PING's ACK


def test_headers_on_a_stream_used_before_are_not_a_new_stream(each_h2_core: str) -> None:
    """Trailers on an open stream, and HEADERS on one opened and closed before (RFC 9113
    5.1: discarded, or a connection error STREAM_CLOSED), are not taken for a skipped id."""
    pair = Pair()
    pair.client.send_headers(1, POST)
    pair.client.send_headers(1, [("x-checksum", "1")], end_stream=True)
    pair.client.send_headers(5, GET, end_stream=True)
    events = pair.send()
    assert [e.stream_id for e in events if isinstance(e, Opened)] == [1, 5]
    assert not [e for e in events if isinstance(e, Closed)]


def test_body_windows_are_given_back_only_when_consumed(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, POST)
    for _ in range(3):
        pair.client.send_data(1, b"x" * 13000, pad_length=255)  # padding costs window too
    events = pair.send()
    data = [e for e in events if isinstance(e, DataIn)]
    assert b"".join(e.data for e in data) == b"x" * 39000
    assert pair.conn.peer_window(1) == 65535 - 3 * (13000 + 256)
    assert not [e for e in pair.read() if isinstance(e, h2.events.WindowUpdated)]
    for event in data:
        pair.conn.consumed(1, event.flow)
    assert [e for e in pair.read() if isinstance(e, h2.events.WindowUpdated)]
    assert pair.client.outbound_flow_control_window == 65535  # all of it, padding too
    assert pair.client.local_flow_control_window(1) == 65535


def test_the_window_counts_body_bytes_not_yet_written(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    conn = pair.conn
    conn.send_headers(1, [(b":status", b"200")], end=False)
    assert conn.window(1) == 100
    conn.send_data(1, b"z" * 60, end=False)
    assert conn.window(1) == 40  # before data_to_send(): ngh2 queues it
    conn.send_data(1, b"z" * 40, end=False)
    assert conn.window(1) == 0
    got = b"".join(e.data for e in pair.read() if isinstance(e, h2.events.DataReceived))
    assert got == b"z" * 100
    pair.client.increment_flow_control_window(50, 1)
    events = pair.send()
    assert [e.stream_id for e in events if isinstance(e, WindowOpened)] == [1]
    assert conn.window(1) == 50


def test_a_peer_reset_is_a_reset_event(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, GET)
    pair.client.reset_stream(1, ErrorCodes.CANCEL)
    events = pair.send()
    (reset,) = [e for e in events if isinstance(e, Reset)]
    assert (reset.stream_id, reset.code, reset.by_peer) == (1, ErrorCodes.CANCEL, True)
    assert not pair.conn.stream_open(1)
    assert pair.conn.provoked_resets == 0


def test_our_reset_of_a_stream_goes_out(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    pair.conn.send_headers(1, [(b":status", b"200")], end=False)
    pair.conn.reset(1, ErrorCodes.INTERNAL_ERROR)
    assert not pair.conn.stream_open(1)
    pair.read()
    assert pair.resets() == {1: ErrorCodes.INTERNAL_ERROR}
    pair.send(b"")
    assert pair.conn.provoked_resets == 0  # ours, not the peer's doing


def test_a_graceful_goaway_lets_the_stream_in_flight_finish(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    pair.conn.going_away()
    pair.read()
    assert pair.goaway().error_code == ErrorCodes.NO_ERROR
    assert pair.goaway().last_stream_id == 1
    pair.client.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
    pair.client.send_headers(3, GET, end_stream=True)
    late = [e.stream_id for e in pair.send() if isinstance(e, Opened)]
    assert late == [3]  # it reaches the engine, which refuses it (ending)
    pair.conn.reset(3, ErrorCodes.REFUSED_STREAM)
    pair.conn.send_headers(1, [(b":status", b"200")], end=False)
    pair.conn.send_data(1, b"done", end=True)
    events = pair.read()
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events)
    assert pair.resets() == {3: ErrorCodes.REFUSED_STREAM}


def test_an_error_goaway_ends_the_connection(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, GET, end_stream=True)
    pair.send()
    pair.conn.going_away(ErrorCodes.FLOW_CONTROL_ERROR)
    pair.conn.going_away(ErrorCodes.NO_ERROR)  # once only
    pair.read()
    goaways = [e for e in pair.client_events if isinstance(e, h2.events.ConnectionTerminated)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [
        (ErrorCodes.FLOW_CONTROL_ERROR, 1)
    ]


def test_a_peers_goaway_is_closed_by_peer(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.close_connection()
    (closed,) = [e for e in pair.send() if isinstance(e, Closed)]
    assert closed.by_peer and closed.code == ErrorCodes.NO_ERROR
    assert closed.finishing == (each_h2_core == "ngh2")  # (ngh2 still sends after it)


def test_extended_connect_when_offered(each_h2_core: str) -> None:
    pair = Pair(H2Limits(connect_protocol=True))
    assert pair.client.remote_settings.enable_connect_protocol == 1
    fields = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/ws"),
        (":authority", "t"),
        ("sec-websocket-version", "13"),
    ]
    pair.client.send_headers(1, fields)
    (opened,) = [e for e in pair.send() if isinstance(e, Opened)]
    assert opened.request.upgrade == b"websocket" and not opened.ended


def test_trailers_end_the_body(each_h2_core: str) -> None:
    pair = Pair()
    pair.client.send_headers(1, POST)
    pair.client.send_data(1, b"abc")
    pair.client.send_headers(1, [("x-checksum", "1")], end_stream=True)
    events = [e for e in pair.send() if isinstance(e, DataIn)]
    assert b"".join(e.data for e in events) == b"abc"
    assert events[-1].ended


# -- floods, through the engine: the GOAWAY code is ENHANCE_YOUR_CALM under either core ----


def _engine() -> tuple[H2Core, Pair]:
    core = H2Core(settings(), T0)
    pair = Pair.__new__(Pair)
    pair.conn = core.conn
    pair.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    pair.client.initiate_connection()
    pair.client_events = []
    pair.read()
    core.feed(pair.client.data_to_send(), T0)
    pair.read()
    return core, pair


def _priority_flood(client: Any) -> bytes:
    frame = PriorityFrame(3)
    frame.depends_on = 0
    frame.stream_weight = 1
    return frame.serialize() * (h2_core.CONTROL_FRAMES_MAX + 1)


def _empty_data_flood(client: Any) -> bytes:
    client.send_headers(1, POST)
    empty = DataFrame(1)
    empty.data = b""
    return client.data_to_send() + empty.serialize() * (h2_core.CONTROL_FRAMES_MAX + 1)


def _rapid_reset_in_one_read(client: Any) -> bytes:
    client.remote_settings.max_concurrent_streams = 10000  # (it would stop at our limit)
    client.remote_settings.acknowledge()
    for _ in range(2000):  # more than nghttp2's own bucket (1,000): the engine must answer
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, GET)
        client.reset_stream(stream_id)
    return client.data_to_send()


FLOODS = {
    "priority": _priority_flood,
    "empty-data": _empty_data_flood,
    "rapid-reset-one-read": _rapid_reset_in_one_read,
}


@pytest.mark.parametrize("flood", sorted(FLOODS))
def test_floods_get_enhance_your_calm(each_h2_core: str, flood: str) -> None:
    core, pair = _engine()
    try:
        alive = core.feed(FLOODS[flood](pair.client), T0)
    except h2.exceptions.StreamClosedError:
        if each_h2_core == "h2" and flood == "rapid-reset-one-read":
            # h2's seam refuses (REFUSED_STREAM) a stream past the limit that the same read
            # has already reset, and h2 raises out of receive(): connection.py's to fix
            pytest.xfail("connection.py: REFUSED_STREAM on a stream reset in the same read")
        raise
    assert not alive
    assert raw_goaway_code(core.output()) == ErrorCodes.ENHANCE_YOUR_CALM


# -- choosing the core ----------------------------------------------------------------------


def test_the_core_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from threadloom.protocols import http2
    from threadloom.protocols.http2.connection import H2Connection

    monkeypatch.setenv(http2.CORE_ENV, "h2")
    assert type(new_connection(H2Limits())) is H2Connection
    monkeypatch.setenv(http2.CORE_ENV, "nghttp2")
    with pytest.raises(ValueError, match="THREADLOOM_H2_CORE"):
        new_connection(H2Limits())
    monkeypatch.delenv(http2.CORE_ENV)
    if http2.ngh2_installed():  # (the http2-fast extra, as here under `make`)
        assert type(new_connection(H2Limits())).__name__ == "Ngh2Connection"
    monkeypatch.setattr(http2, "ngh2_installed", lambda: False)
    assert http2.core_name() == "h2"  # the default without ngh2
    assert type(new_connection(H2Limits())) is H2Connection
    monkeypatch.setattr(http2, "ngh2_installed", lambda: True)
    assert http2.core_name() == "ngh2"  # the default where it is installed
    monkeypatch.setenv(http2.CORE_ENV, "h2")
    assert http2.core_name() == "h2"  # and h2 forced there
    monkeypatch.setenv(http2.CORE_ENV, "ngh2")
    monkeypatch.setitem(sys.modules, "threadloom.protocols.http2.ngh2_connection", None)
    with pytest.raises(ImportError, match="http2-fast"):  # asked for, not installed
        new_connection(H2Limits())
