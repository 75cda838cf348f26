"""The HTTP/2 connection core's rules, on a fake clock: no socket, no sleep, no thread.

An ``h2`` client makes the bytes a real client would send; :class:`H2Core` is fed them with
``now`` moved by hand, and what it answers is read back with the same client. Every test
runs once per HTTP/2 core, h2 and ngh2 (``tests/h2cores.py``).
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from tests.h2cores import each_h2_core  # noqa: F401 (a fixture: each test once per core)
from threadloom.config import Config
from threadloom.engine import h2_core
from threadloom.engine.h2_core import H2Core
from threadloom.engine.http1_core import DISPATCH_BODY_BYTES, HTTPSettings
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http2 import PREFACE, core_name, response_headers

KEEP_ALIVE, IO = 5.0, 30.0
T0 = 1000.0


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def settings(**changes: Any) -> HTTPSettings:
    config = Config(timeout_keep_alive=KEEP_ALIVE, timeout_io=IO, access_log=False, **changes)
    runner = WSGIRunner(
        wsgi_app, server_name="test", server_port="80", url_scheme="http", multithread=True
    )
    return HTTPSettings(config, runner=runner)


class Peer:
    """The client side: an h2 connection whose bytes go to the core, and back."""

    def __init__(self, core: H2Core, read_settings: bool = True) -> None:
        self.core = core
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[Any] = []
        if read_settings:  # (a client that has not read them may exceed the stream limit)
            self.read()

    def send(self, now: float = T0) -> bool:
        data = self.h2.data_to_send()
        return self.core.feed(data, now) if data else True  # (b"" would be the end of input)

    def raw(self, data: bytes, now: float = T0) -> bool:
        return self.core.feed(data, now)

    def read(self) -> list[Any]:
        events = self.h2.receive_data(self.core.output())
        self.events.extend(events)
        return events

    def body(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """DATA frames of at most 16 KiB (the default frame size)."""
        for at in range(0, len(data), 16384):
            last = end and at + 16384 >= len(data)
            self.h2.send_data(stream_id, data[at : at + 16384], end_stream=last)

    def get(self, path: str = "/", end: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        fields = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")]
        self.h2.send_headers(stream_id, fields, end_stream=end)
        return stream_id


@pytest.fixture
def core() -> H2Core:
    return H2Core(settings(), T0)


def test_a_request_without_a_body_goes_to_the_app_at_once(core: H2Core) -> None:
    peer = Peer(core)
    stream_id = peer.get("/x?y=1")
    assert peer.send()
    (stream,) = core.take_ready()
    assert stream.id == stream_id
    assert stream.request.method == "GET" and stream.request.path == b"/x"
    assert stream.request.http_version == "2"
    assert (b"host", b"t") in stream.request.headers  # made from :authority


def test_a_sync_apps_body_is_awaited_until_complete_or_the_window_is_spent(
    core: H2Core,
) -> None:
    peer = Peer(core)
    stream_id = peer.get("/upload", end=False)
    peer.body(stream_id, b"a" * 1000)
    peer.send()
    assert core.take_ready() == []  # a slow sender holds no thread
    window = peer.h2.local_flow_control_window(stream_id)
    peer.body(stream_id, b"b" * window)  # the whole window: it cannot send more
    peer.send()
    (stream,) = core.take_ready()
    assert stream.request.body.buffered == 1000 + window < DISPATCH_BODY_BYTES + 1000


def test_the_window_is_given_back_only_as_the_app_takes_the_body(core: H2Core) -> None:
    peer = Peer(core)
    stream_id = peer.get("/upload", end=False)
    peer.body(stream_id, b"a" * 40000, end=True)
    peer.send()
    (stream,) = core.take_ready()
    assert not [e for e in peer.read() if isinstance(e, h2.events.WindowUpdated)]
    assert core.take_body(stream, 40000) == b"a" * 40000
    updates = [e for e in peer.read() if isinstance(e, h2.events.WindowUpdated)]
    assert updates, "taking the body gives the window back"


def test_a_response_is_cut_to_the_peers_window_and_the_rest_waits_for_it(core: H2Core) -> None:
    peer = Peer(core)
    peer.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    stream_id = peer.get()
    peer.send()
    peer.read()
    peer.send()  # the settings ack
    (stream,) = core.take_ready()
    core.respond(stream, response_headers(200, [], 1000), b"z" * 1000, True, T0)
    core.finish(stream, 200, 1000, 0.0, T0)
    got = b"".join(e.data for e in peer.read() if isinstance(e, h2.events.DataReceived))
    assert got == b"z" * 100
    assert core.deadline() == T0 + IO  # a window shut with output waiting: --timeout-io
    peer.h2.increment_flow_control_window(2000, stream_id)
    peer.h2.increment_flow_control_window(2000)
    peer.send(T0 + 1)
    events = peer.read()
    got += b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert got == b"z" * 1000
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert core.idle and core.deadline() == T0 + 1 + KEEP_ALIVE


def test_a_window_that_stays_shut_drops_the_connection_after_timeout_io(core: H2Core) -> None:
    peer = Peer(core)
    peer.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    peer.get()
    peer.send()
    peer.read()
    peer.send()
    (stream,) = core.take_ready()
    core.respond(stream, response_headers(200, [], 10), b"0123456789", True, T0)
    assert core.deadline() == T0 + IO
    core.expire(T0 + IO)
    (goaway,) = [e for e in peer.read() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR
    assert stream.reset and core.ending  # its app, if still running, finds it gone


def test_an_idle_connection_gets_a_goaway_after_the_keep_alive_timeout(core: H2Core) -> None:
    peer = Peer(core)
    peer.send()
    assert core.deadline() == T0 + KEEP_ALIVE
    stream_id = peer.get()
    peer.send(T0 + 1)
    (stream,) = core.take_ready()
    assert core.deadline() is None  # a stream in flight: no idle clock
    core.respond(stream, response_headers(204, []), b"", True, T0 + 2)
    core.finish(stream, 204, 0, 0.0, T0 + 2)
    assert core.deadline() == T0 + 2 + KEEP_ALIVE
    core.expire(T0 + 2 + KEEP_ALIVE)
    (goaway,) = [e for e in peer.read() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == stream_id


def test_rapid_resets_past_the_budget_get_enhance_your_calm(core: H2Core) -> None:
    peer = Peer(core)
    alive = True
    for _ in range(h2_core.RESETS_MAX + 1):
        stream_id = peer.get(end=False)
        peer.h2.reset_stream(stream_id)
        alive = peer.send()
        if not alive:
            break
    assert not alive
    (goaway,) = [e for e in peer.read() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_spread_over_time_stay_within_the_budget(core: H2Core) -> None:
    peer = Peer(core)
    now = T0
    for _ in range(3 * h2_core.RESETS_MAX):
        now += 3 * h2_core.FLOOD_WINDOW_S / h2_core.RESETS_MAX  # a third of the rate
        stream_id = peer.get(end=False)
        peer.h2.reset_stream(stream_id)
        assert peer.send(now)
        core.take_ready()


def test_a_ping_flood_gets_enhance_your_calm(core: H2Core) -> None:
    peer = Peer(core)
    peer.send()
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    flood = ping.serialize() * (h2_core.CONTROL_FRAMES_MAX + 1)
    assert not peer.raw(flood)
    goaways = [e for e in peer.read() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaways[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_streams_past_the_limit_are_refused_until_one_is_done() -> None:
    core = H2Core(settings(h2_max_streams=2), T0)
    peer = Peer(core, read_settings=False)
    ids = [peer.get() for _ in range(3)]
    peer.send()
    ready = core.take_ready()
    assert [s.id for s in ready] == ids[:2]
    resets = [e for e in peer.read() if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(ids[2], ErrorCodes.REFUSED_STREAM)]
    core.respond(ready[0], response_headers(204, []), b"", True, T0)
    core.finish(ready[0], 204, 0, 0.0, T0)
    peer.read()  # (the client's own count of open streams)
    peer.get()
    peer.send()
    assert len(core.take_ready()) == 1  # a place was freed


def test_refusals_past_the_limit_count_against_the_reset_budget() -> None:
    """CVE-2019-9514 (reset flood): a client that holds the streams it may open and opens
    more, over and over, is refused each time (REFUSED_STREAM), and each refusal counts
    against RESETS_MAX: within it the connection lives, past it GOAWAY ENHANCE_YOUR_CALM."""
    core = H2Core(settings(h2_max_streams=1), T0)
    encoder = hpack.Encoder()
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]

    def opens(stream_id: int, end: bool = True) -> bytes:
        frame = HeadersFrame(stream_id, encoder.encode(fields), flags=["END_HEADERS"])
        if end:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    assert core.feed(PREFACE + SettingsFrame(0).serialize() + opens(1, end=False), T0)
    refused = [opens(3 + 2 * n) for n in range(h2_core.RESETS_MAX + 1)]
    for frame in refused[:-1]:  # one a read: the library's own limit is twice ours
        assert core.feed(frame, T0)
    assert _errors(core.output()) == [(0x3, ErrorCodes.REFUSED_STREAM)] * h2_core.RESETS_MAX
    assert not core.feed(refused[-1], T0)
    assert (0x7, ErrorCodes.ENHANCE_YOUR_CALM) in _errors(core.output())


def _errors(out: bytes) -> list[tuple[int, int]]:
    """The (frame type, error code) of each RST_STREAM (0x3) and GOAWAY (0x7) in ``out``."""
    found = []
    while len(out) >= 9:
        size, kind = int.from_bytes(out[:3], "big"), out[3]
        if kind in (0x3, 0x7):  # the code follows the last stream id in a GOAWAY
            at = 13 if kind == 0x7 else 9
            found.append((kind, int.from_bytes(out[at : at + 4], "big")))
        out = out[9 + size :]
    return found


def test_a_reset_stream_still_running_keeps_its_place(core: H2Core) -> None:
    """A reset does not free the place of an exchange still running: resets cannot make
    work pile up beyond the stream limit (the answer to rapid reset, besides the budget)."""
    core = H2Core(settings(h2_max_streams=1), T0)
    peer = Peer(core, read_settings=False)
    first = peer.get()
    peer.send()
    (stream,) = core.take_ready()
    peer.raw(RstStreamFrame(first).serialize())
    assert stream.reset
    peer.get()
    peer.send()
    assert core.take_ready() == []  # refused: the first one's app still runs
    core.finish(stream, 200, 0, 0.0, T0)
    peer.get()
    peer.send()
    assert len(core.take_ready()) == 1


def test_going_away_refuses_new_streams_and_lets_the_others_finish(core: H2Core) -> None:
    peer = Peer(core)
    first = peer.get()
    peer.send()
    (stream,) = core.take_ready()
    core.going_away()
    (goaway,) = [e for e in peer.read() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.last_stream_id == first
    peer.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN  # (see client.py)
    late = peer.get()
    peer.send()
    assert core.take_ready() == []
    assert core.respond(stream, response_headers(200, [], 2), b"ok", True, T0)
    core.finish(stream, 200, 2, 0.0, T0)
    events = peer.read()
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == first for e in events)
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == late for e in events)
    assert core.done


def test_a_peers_goaway_lets_its_streams_finish_where_the_core_can(core: H2Core) -> None:
    """RFC 9113 6.8: after a client's graceful GOAWAY, the stream it opened before it may
    still be answered, and the connection closes once that is done. ngh2 can; h2 sends
    nothing after a GOAWAY it received, so there the stream is given up at once."""
    peer = Peer(core)
    peer.get()
    peer.h2.close_connection()
    alive = peer.send()
    ready = core.take_ready()
    if core_name() == "h2":
        assert not alive and not ready and core.done
        return
    assert alive and not core.done
    (stream,) = ready
    assert core.respond(stream, response_headers(200, [], 2), b"ok", True, T0)
    core.finish(stream, 200, 2, 0.0, T0)
    assert b"ok" in core.output()
    assert core.done  # (the driver closes the connection)


def test_window_updates_of_a_big_download_are_not_a_flood(core: H2Core) -> None:
    """A client reading fast gives back its window every 32 KiB or so: 1,500 such updates
    in a few seconds is a 48 MiB download, not a flood; 1,500 updates of a byte are."""
    peer = Peer(core)
    peer.send()
    for _ in range(h2_core.CONTROL_FRAMES_MAX + 500):
        peer.h2.increment_flow_control_window(32768)
        assert peer.send()
    stingy = Peer(H2Core(settings(), T0))
    stingy.send()
    alive = True
    for _ in range(h2_core.CONTROL_FRAMES_MAX + 1):
        stingy.h2.increment_flow_control_window(1)
        alive = stingy.send()
    assert not alive
