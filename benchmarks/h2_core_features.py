"""What each HTTP/2 core does with the frames issue 15's tests will send (h2, ngh2, zttp).

    /tmp/h2cores/bin/python benchmarks/h2_core_features.py      # a few seconds

The companion of ``h2_cores.py``: the same three cores as servers, each fed hand-made
frames (``hyperframe`` and ``hpack``, as the attack tests will write them) on a fresh
connection per probe, with a minimal app on top that answers a request when it is complete
and, where the core allows, acknowledges DATA only when told to. Each line prints what the
app saw (events) and what the core wrote back (RST_STREAM and GOAWAY codes, WINDOW_UPDATEs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings
except ImportError:
    h2 = None  # type: ignore[assignment]
try:
    import ngh2
except ImportError:
    ngh2 = None  # type: ignore[assignment]
try:
    import zttp
except ImportError:
    zttp = None  # type: ignore[assignment]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIMIT_STREAMS = 100


class Probe:
    """Common part: the app log and the frames the core wrote."""

    def __init__(self) -> None:
        self.seen: list[str] = []  # what the app saw
        self.error: str | None = None
        self.auto_answer = True

    def frames(self, data: bytes) -> list[Frame]:
        out, mv = [], memoryview(data)
        while len(mv) >= 9:
            f, n = Frame.parse_frame_header(mv[:9])
            f.parse_body(mv[9 : 9 + n])
            out.append(f)
            mv = mv[9 + n :]
        return out


class H2Probe(Probe):
    name = "h2"

    def __init__(self) -> None:
        super().__init__()
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: LIMIT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        self.c.initiate_connection()

    def start(self) -> bytes:
        return self.c.data_to_send()

    def feed(self, data: bytes) -> bytes:
        try:
            events = self.c.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.error = f"{type(exc).__name__}({str(exc)[:60]!r})"
            return self.c.data_to_send()
        ev = h2.events
        for e in events:
            t = type(e)
            if t is ev.RequestReceived:
                hd = dict(e.headers)
                self.seen.append(f"request:{hd.get(b':protocol', b'').decode()}")
                if e.stream_ended is not None and self.auto_answer:
                    self.answer(e.stream_id, True)
            elif t is ev.DataReceived:
                self.seen.append(f"data{len(e.data)}")
                if e.stream_ended is not None and self.auto_answer:
                    self.answer(e.stream_id, True)
            else:
                self.seen.append(t.__name__)
        return self.c.data_to_send()

    def answer(self, sid: int, end: bool) -> None:
        self.c.send_headers(sid, [(b":status", b"200")], end_stream=end)

    def ack(self, sid: int, n: int) -> bytes:
        self.c.acknowledge_received_data(n, sid)
        return self.c.data_to_send()


class Ngh2Probe(Probe):
    name = "ngh2"

    def __init__(self) -> None:
        super().__init__()
        self.c = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
        self.c.initiate_connection(
            {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: LIMIT_STREAMS,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: 65536,
                ngh2.Setting.ENABLE_CONNECT_PROTOCOL: 1,
            }
        )

    def start(self) -> bytes:
        return self.c.data_to_send()

    def feed(self, data: bytes) -> bytes:
        try:
            self.c.receive_data(data)
        except ngh2.NGH2Error as exc:
            self.error = f"{type(exc).__name__}"
        for e in self.c.events():
            t = type(e)
            if t is ngh2.RequestReceived:
                hd = dict(e.headers)
                self.seen.append(f"request:{hd.get(b':protocol', b'').decode()}")
                if e.end_stream and self.auto_answer:
                    self.answer(e.stream_id, True)
            elif t is ngh2.DataReceived:
                self.seen.append(f"data{len(e.data)}")
                if e.end_stream and self.auto_answer:
                    self.answer(e.stream_id, True)
            else:
                self.seen.append(t.__name__)
        try:
            return self.c.data_to_send()
        except ngh2.NGH2Error as exc:  # after a flood: the session is unusable, no GOAWAY
            self.error = f"{self.error}, then data_to_send raised {type(exc).__name__}"
            return b""

    def answer(self, sid: int, end: bool) -> None:
        try:
            self.c.send_response(sid, [(b":status", b"200")], end_stream=end)
        except ngh2.NGH2Error as exc:  # the session died in the same read
            self.seen.append(f"answer raised {type(exc).__name__}")

    def ack(self, sid: int, n: int) -> bytes:
        self.c.acknowledge_received_data(n, sid)
        return self.c.data_to_send()


class ZttpProbe(Probe):
    name = "zttp"

    def __init__(self) -> None:
        super().__init__()
        self.c = zttp.Connection(zttp.SERVER, zttp.HTTP2)
        self.c.initiate_connection()

    def start(self) -> bytes:
        return self.c.data_to_send()

    def feed(self, data: bytes) -> bytes:
        self.c.receive_data(data)
        while True:
            try:
                e = self.c.next_event()
            except zttp.ProtocolError as exc:
                self.error = f"{type(exc).__name__}"
                break
            if e is zttp.NEED_DATA or e is zttp.CONNECTION_CLOSED:
                break
            t = type(e)
            if t is zttp.Request:
                self.seen.append(f"request:{(e.protocol or b'').decode()}")
                if e.end_stream and self.auto_answer:
                    self.answer(e.stream_id, True)
            elif t is zttp.Data:
                self.seen.append(f"data{len(e.data)}")
            elif t is zttp.EndOfMessage:
                if self.auto_answer:
                    self.answer(e.stream_id, True)
            else:
                self.seen.append(t.__name__)
        return self.c.data_to_send()

    def answer(self, sid: int, end: bool) -> None:
        s = self.c.stream(sid)
        s.send_response(200, [])
        if end:
            s.end_message()

    def ack(self, sid: int, n: int) -> bytes:
        return b""  # no such call on HTTP/2


# --- the client side: raw frames -----------------------------------------------------


class Client:
    def __init__(self) -> None:
        self.enc = hpack.Encoder()

    def block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self.enc.encode(headers)

    def headers(self, sid: int, headers: list[tuple[bytes, bytes]], end: bool = True) -> bytes:
        f = HeadersFrame(sid, self.block(headers))
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        return f.serialize()


def req(path: bytes = b"/", method: bytes = b"GET", extra: Any = ()) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"example.test"),
        *extra,
    ]


def setup() -> bytes:
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    return PREFACE + SettingsFrame(0).serialize() + ack.serialize()


def data(sid: int, payload: bytes, end: bool = False) -> bytes:
    f = DataFrame(sid, payload)
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def run(
    factory: Callable[[], Any], wire: Callable[[Client], bytes], auto_answer: bool = True
) -> tuple[Any, list[Frame]]:
    p = factory()
    p.auto_answer = auto_answer
    p.start()
    p.feed(setup())
    p.seen.clear()
    out = p.feed(wire(Client()))
    return p, p.frames(out)


def verdict(p: Any, frames: list[Frame], max_items: int = 4) -> str:
    parts = []
    seen: dict[str, int] = {}
    for s in p.seen:
        seen[s] = seen.get(s, 0) + 1
    if seen:
        parts.append(
            "saw " + ",".join(f"{k}" + (f"x{v}" if v > 1 else "") for k, v in seen.items())
        )
    rst = [f.error_code for f in frames if isinstance(f, RstStreamFrame)]
    if rst:
        codes = sorted(set(rst))
        parts.append(f"RST x{len(rst)} code {codes[:max_items]}")
    ga = [f for f in frames if isinstance(f, GoAwayFrame)]
    if ga:
        parts.append(f"GOAWAY code {ga[0].error_code} ({ga[0].additional_data[:40]!r})")
    if p.error:
        parts.append(f"raised {p.error}")
    heads = sum(1 for f in frames if isinstance(f, HeadersFrame))
    if heads:
        parts.append(f"{heads} response(s)")
    return "; ".join(parts) or "nothing"


# --- the probes -----------------------------------------------------------------------


def settings_advertised(factory: Callable[[], Any]) -> str:
    p = factory()
    fs = p.frames(p.start())
    s = next(f for f in fs if isinstance(f, SettingsFrame)).settings
    return ", ".join(f"{k}={v}" for k, v in sorted(s.items()))


def extended_connect(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        h = req(b"/chat", b"CONNECT", [(b":protocol", b"websocket")])
        return c.headers(1, h, end=False)

    p, fs = run(factory, wire, auto_answer=False)
    if not any(s.startswith("request:websocket") for s in p.seen):
        return verdict(p, fs)
    p.answer(1, False)
    p.feed(b"")
    p.seen.clear()
    out = p.frames(p.feed(data(1, b"\x81\x02hi")))
    return verdict(p, out) + " (after 200, DATA flows)"


def manual_window(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        h = req(b"/up", b"POST")
        return c.headers(1, h, end=False) + data(1, b"x" * 16384) + data(1, b"x" * 16384)

    p, fs = run(factory, wire)
    before = sum(f.window_increment for f in fs if isinstance(f, WindowUpdateFrame))
    after_frames = p.frames(p.ack(1, 32768))
    after = sum(f.window_increment for f in after_frames if isinstance(f, WindowUpdateFrame))
    return f"32 KiB in, not consumed: credited {before}; after the app's ack: {after}"


def max_streams(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        return b"".join(c.headers(2 * i + 1, req(), end=False) for i in range(130))

    p, fs = run(factory, wire)
    return f"130 open streams: {verdict(p, fs)}"


def header_list(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        block = c.block([*req(), (b"x-big", b"v" * 70000)])
        parts = [block[i : i + 16384] for i in range(0, len(block), 16384)]
        f = HeadersFrame(1, parts[0])
        f.flags.add("END_STREAM")
        out = f.serialize()
        for i, part in enumerate(parts[1:], 1):
            cf = ContinuationFrame(1, part)
            if i == len(parts) - 1:
                cf.flags.add("END_HEADERS")
            out += cf.serialize()
        return out

    p, fs = run(factory, wire)
    return f"70 KB header over CONTINUATION: {verdict(p, fs)}"


def continuation_flood(factory: Callable[[], Any], empty: bool) -> str:
    def wire(c: Client) -> bytes:
        if empty:
            block = c.block(req())
            parts = [block] + [b""] * 10000
        else:  # 1,000 small fields (34 KB decoded, under the list limit) a byte a frame
            block = c.block([*req(), *[(b"a", b"b")] * 1000])
            parts = [block[i : i + 1] for i in range(len(block))]
        f = HeadersFrame(1, parts[0])
        f.flags.add("END_STREAM")
        out = [f.serialize()]
        for part in parts[1:]:
            out.append(ContinuationFrame(1, part).serialize())  # never END_HEADERS
        return b"".join(out)

    p, fs = run(factory, wire)
    kind = "10,000 empty" if empty else "~5,000 one-byte"
    return f"{kind} CONTINUATION, no END_HEADERS: {verdict(p, fs)}"


def hpack_bomb(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        first = c.headers(1, [*req(), (b"x-bomb", b"v" * 4000)])  # indexed in the table
        # the newest dynamic-table entry is index 62: an indexed field is one byte, 0x80|62
        block = c.block(req()) + bytes([0x80 | 62]) * 100
        f = HeadersFrame(3, block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        return first + f.serialize()

    p, fs = run(factory, wire)
    return f"4 KB entry referenced 100x (400 KB decoded from ~200 B): {verdict(p, fs)}"


def frame_events(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        ping = PingFrame(0, b"12345678").serialize()
        sett = SettingsFrame(0).serialize()
        prio = PriorityFrame(3, depends_on=0, stream_weight=15).serialize()
        opened = c.headers(1, req(b"/up", b"POST"), end=False)
        empty = data(1, b"")
        rst = RstStreamFrame(1, 8).serialize()
        return ping + sett + prio + opened + empty + rst

    p, fs = run(factory, wire)
    return "PING, SETTINGS, PRIORITY, HEADERS, empty DATA, RST_STREAM in: " + verdict(p, fs)


def flood(factory: Callable[[], Any], what: str) -> str:
    n = 10000

    def wire(c: Client) -> bytes:
        if what == "ping":
            return PingFrame(0, b"12345678").serialize() * n
        if what == "settings":
            return SettingsFrame(0).serialize() * n
        if what == "priority":
            return b"".join(PriorityFrame(2 * i + 1, depends_on=0).serialize() for i in range(n))
        if what == "empty-data":
            return c.headers(1, req(b"/up", b"POST"), end=False) + data(1, b"") * n
        if what == "rapid-reset":
            h = [
                c.headers(2 * i + 1, req(), end=False) + RstStreamFrame(2 * i + 1, 8).serialize()
                for i in range(2000)
            ]
            return b"".join(h)
        raise ValueError(what)

    p, fs = run(factory, wire, auto_answer=False)
    count = n if what != "rapid-reset" else 2000
    return f"{count} {what} in one read: {verdict(p, fs)}"


BAD = {
    "uppercase name": [*req(), (b"X-Foo", b"1")],
    "connection: keep-alive": [*req(), (b"connection", b"keep-alive")],
    "te: gzip": [*req(), (b"te", b"gzip")],
    "pseudo after regular": [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b"x-a", b"1"),
        (b":path", b"/"),
        (b":authority", b"example.test"),
    ],
    "duplicate :path": [*req(), (b":path", b"/again")],
    "no :scheme": [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"e")],
    "unknown :foo": [*req(), (b":foo", b"x")],
    "host differs from :authority": [*req(), (b"host", b"other.test")],
    "two host fields": [*req()[:3], (b"host", b"a.test"), (b"host", b"b.test")],
}


def validation(factory: Callable[[], Any], name: str) -> str:
    def wire(c: Client) -> bytes:
        return c.headers(1, BAD[name])

    p, fs = run(factory, wire)
    return verdict(p, fs)


def content_length(factory: Callable[[], Any]) -> str:
    def wire(c: Client) -> bytes:
        h = req(b"/up", b"POST", [(b"content-length", b"10")])
        return c.headers(1, h, end=False) + data(1, b"12345", end=True)

    p, fs = run(factory, wire)
    return "content-length 10, 5 bytes of DATA: " + verdict(p, fs)


def main() -> int:
    if h2 is None:
        print("h2 (and hpack, hyperframe) are needed")
        return 1
    cores: list[tuple[str, Callable[[], Any]]] = [("h2", H2Probe)]
    for name, mod, factory in (("ngh2", ngh2, Ngh2Probe), ("zttp", zttp, ZttpProbe)):
        if mod is None:
            print(f"skip {name}: not installed")
        else:
            cores.append((name, factory))
    probes: list[tuple[str, Callable[[Callable[[], Any]], str]]] = [
        ("SETTINGS sent", settings_advertised),
        ("extended CONNECT", extended_connect),
        ("receive window", manual_window),
        ("max concurrent streams", max_streams),
        ("header list size", header_list),
        ("CONTINUATION flood", lambda f: continuation_flood(f, False)),
        ("empty CONTINUATION", lambda f: continuation_flood(f, True)),
        ("HPACK bomb", hpack_bomb),
        ("per-frame events", frame_events),
        *[
            (f"{w} flood", lambda f, w=w: flood(f, w))
            for w in ("ping", "settings", "priority", "empty-data", "rapid-reset")
        ],
        *[(f"bad: {b}", lambda f, b=b: validation(f, b)) for b in BAD],
        ("bad: content-length", content_length),
    ]
    for title, probe in probes:
        print(f"## {title}")
        for name, factory in cores:
            try:
                line = probe(factory)
            except Exception as exc:  # a core that blows up is a finding too
                line = f"probe raised {type(exc).__name__}: {exc}"
            print(f"  {name:5} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
