"""The known HTTP/2 attacks (issue 15), each sent frame by frame against a real server.

Each test runs under every model against a server in a process of its own (so that its
memory can be watched: ``/proc``'s peak RSS, reset before each attack), attacks with
:class:`~tests.http2.support.RawPeer` (frames built by hand), and asserts three things:

* the answer: the ``RST_STREAM`` or ``GOAWAY`` error code RFC 9113 (or the server's flood
  budgets, ``engine/h2_core.py``) calls for;
* that other connections are still served, promptly: an ordinary HTTP/2 request on a
  second connection (``h2`` as the client) during the attack where the model serves
  connections concurrently, and after it under every model (``single`` serves one
  connection at a time, so there a bystander waits until the attacker is cut off);
* that memory stays bounded where the attack is about memory (peak RSS growth under
  ``RSS_BOUND``).

Each test prints a line of figures (``-s`` shows them; RELIABILITY.md's table comes from
them), and a failing assertion prints what the attacker sent and what came back.

Malformed requests: RFC 9113 8.1.1 says they are stream errors (RST_STREAM
PROTOCOL_ERROR). The ``h2`` library treats every one it detects (header names and
pseudo-headers, ``:authority`` against ``Host``, ``content-length`` against the DATA) as
a *connection* error, GOAWAY PROTOCOL_ERROR, which RFC 9113 5.4.1 allows ("an endpoint
MAY choose to treat a stream error as a connection error"). The tests assert what the
server does, GOAWAY, and say so; it costs the client its other streams, not the server
anything.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import hpack
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.adversarial.support import ServerProcess, wait_until
from tests.h2cores import only_h2
from tests.http2.support import (
    BIG,
    PREFACE,
    RawPeer,
    calls,
    h2_get,
    raw_frame,
    request_fields,
    reset_peak,
)
from threadloom.config import Config
from threadloom.engine.h2_core import CONTROL_FRAMES_MAX, FLOOD_WINDOW_S, RESETS_MAX, H2Core
from threadloom.engine.http1_core import HTTPSettings
from threadloom.testing import CONCURRENT_MODELS, MODELS, timeout_factor


#: These cases hold h2's answers, the default core's (ngh2 answers several of them
#: otherwise: test_h2_seam.py); tests/http2/conftest.py would run them under both.
@pytest.fixture(autouse=True)
def each_h2_core(monkeypatch: pytest.MonkeyPatch) -> str:
    return only_h2(monkeypatch)


Connect = Callable[..., RawPeer]
APP = "tests.http2.support:app"
#: --timeout-io for the servers here (short, so the stall tests end quickly)
TIMEOUT_IO = 2.0
#: What an attack about memory may add to the server's peak RSS.
RSS_BOUND = 64 * 1024  # KiB
#: A bystander's request must be answered within this (seconds, times the factor).
PROMPT = 2.0
#: The most frames an attacker sends before it gives up waiting for the server's answer.
FLOOD = 20 * max(CONTROL_FRAMES_MAX, RESETS_MAX)
MAX_WINDOW = 2**31 - 1


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with ServerProcess(APP, str(request.param), "--timeout-io", str(TIMEOUT_IO)) as process:
        assert h2_get(process.address)[0] == 200, process.stderr
        yield process


@pytest.fixture
def connect(server: ServerProcess) -> Iterator[Connect]:
    """``connect(**options)``: a RawPeer to the server, closed when the test ends."""
    peers: list[RawPeer] = []

    def make(**options: Any) -> RawPeer:
        peers.append(RawPeer(server.address, **options))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


class Watch:
    """An attack's figures: time, the server's peak RSS growth, the bystander's answers."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.server = server
        self.name = name
        reset_peak(server.pid)
        self.rss = server.rss_kib()
        self.started = time.monotonic()
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def growth_kib(self) -> int:
        return self.server.peak_kib() - self.rss

    def bystander(self, when: str, within: float = PROMPT) -> float:
        """An ordinary request on another connection is answered within ``within``."""
        status, body, took = h2_get(self.server.address, timeout=within + 3)
        assert status == 200 and body == b"Hello, world!", (
            f"{self.server.model}: {self.name}: a bystander {when} the attack got {status} "
            f"after {took:.2f}s\n{self.server.stderr[-3000:]}"
        )
        assert took < within * timeout_factor(), (
            f"{self.server.model}: {self.name}: a bystander {when} the attack waited {took:.2f}s"
        )
        self.notes.append(f"bystander {when} {took * 1000:.0f} ms")
        return took

    def report(self, outcome: str, memory: bool = False) -> None:
        growth = self.growth_kib()
        if memory:
            assert growth < RSS_BOUND, (
                f"{self.server.model}: {self.name}: peak RSS grew {growth / 1024:.1f} MiB"
            )
        print(
            f"\n{self.server.model:8} {self.name}: {outcome}; peak RSS +{growth / 1024:.1f} MiB; "
            + "; ".join(self.notes)
        )


def concurrent(server: ServerProcess) -> bool:
    return server.model in CONCURRENT_MODELS


def flood(peer: RawPeer, frames: Iterator[bytes], batch: int = 100) -> int:
    """Send ``frames`` in batches until the server says GOAWAY or closes; how many went."""
    sent = 0
    while peer.goaway is None and not (peer.closed or peer.send_failed):
        chunk = [frame for _, frame in zip(range(batch), frames, strict=False)]
        if not chunk:
            break
        if not peer.send(b"".join(chunk)):
            break
        sent += len(chunk)
        peer.read_until(lambda: peer.goaway is not None, 0.001)
    return sent


def goaway(peer: RawPeer, code: int, timeout: float = 5.0) -> tuple[int, int]:
    """The server's GOAWAY, which must carry ``code``, and the connection closed after it."""
    got = peer.until_goaway(timeout)
    assert got is not None, f"no GOAWAY{peer.story()}"
    assert got[0] == code, f"GOAWAY {ErrorCodes(got[0])!r}, not {ErrorCodes(code)!r}{peer.story()}"
    assert peer.until_closed(timeout), f"the connection stayed open after GOAWAY{peer.story()}"
    return got


# -- rapid reset and the resets a peer provokes ---------------------------------------------


def test_rapid_reset(server: ServerProcess, connect: Connect) -> None:
    """CVE-2023-44487: HEADERS then RST_STREAM, thousands of times -> GOAWAY
    ENHANCE_YOUR_CALM once RESETS_MAX is passed, and the cancelled requests never reach
    the app (they are reset before a worker takes them)."""
    before = calls(server.address)
    watch = Watch(server, "rapid reset")
    peer = connect()

    def pairs() -> Iterator[bytes]:
        for n in range(FLOOD):
            sid = 2 * n + 1
            reset = RstStreamFrame(sid)
            reset.error_code = ErrorCodes.CANCEL
            yield peer.request(sid).serialize() + reset.serialize()

    sent = flood(peer, pairs())
    goaway(peer, ErrorCodes.ENHANCE_YOUR_CALM)
    took = watch.elapsed()
    watch.bystander("after")
    ran = calls(server.address) - before - 1  # (the first /calls counts itself)
    assert ran <= 10, f"the app ran {ran} of the {sent} cancelled requests{peer.story()}"
    watch.report(f"GOAWAY ENHANCE_YOUR_CALM after {sent} HEADERS+RST in {took:.3f}s, app ran {ran}")


def _window_overflow(peer: RawPeer, sid: int) -> bytes:
    update = WindowUpdateFrame(sid)
    update.window_increment = MAX_WINDOW
    return peer.request(sid, "/").serialize() + update.serialize()


def _data_after_end(peer: RawPeer, sid: int) -> bytes:
    data = DataFrame(sid)
    data.data = b"x"
    return peer.request(sid, "/").serialize() + data.serialize()


@pytest.mark.parametrize(
    ("how", "make", "code"),
    [
        ("WINDOW_UPDATE overflow", _window_overflow, ErrorCodes.FLOW_CONTROL_ERROR),
        ("DATA on a half-closed stream", _data_after_end, ErrorCodes.STREAM_CLOSED),
    ],
    ids=["window-overflow", "data-half-closed"],
)
def test_made_you_reset(
    server: ServerProcess, connect: Connect, how: str, make: object, code: int
) -> None:
    """CVE-2025-8671 ("MadeYouReset"): frames that make the server reset the stream, each
    answered with RST_STREAM (a stream error), counted against RESETS_MAX -> GOAWAY
    ENHANCE_YOUR_CALM."""
    watch = Watch(server, f"MadeYouReset ({how})")
    peer = connect()
    assert callable(make)
    # the first one alone: a stream error, the connection lives on
    peer.send(make(peer, 1))
    assert peer.read_until(lambda: 1 in peer.resets, 5), f"no RST_STREAM{peer.story()}"
    assert peer.resets[1] == code, peer.story()
    assert peer.goaway is None, peer.story()
    flood(peer, (make(peer, 2 * n + 3) for n in range(FLOOD)))
    last = goaway(peer, ErrorCodes.ENHANCE_YOUR_CALM)[1]
    took = watch.elapsed()
    # one reset a stream: the budget is passed after RESETS_MAX of them (the server weighs
    # it after each read, so the streams of the read that passes it are taken too)
    assert (last + 1) // 2 > RESETS_MAX, peer.story()
    watch.bystander("after")
    watch.report(
        f"RST_STREAM {ErrorCodes(code).name} each; GOAWAY ENHANCE_YOUR_CALM naming stream "
        f"{last} ({(last + 1) // 2} streams) in {took:.3f}s"
    )


# -- CONTINUATION and HPACK ------------------------------------------------------------------


@pytest.mark.parametrize("size", [16384, 0], ids=["16KiB-frames", "empty-frames"])
def test_continuation_flood(server: ServerProcess, connect: Connect, size: int) -> None:
    """CVE-2024-27316, CVE-2024-28182: a header block that never ends (CONTINUATION
    frames without END_HEADERS, for ever) -> GOAWAY (h2 allows 64 of them), memory
    bounded."""
    watch = Watch(server, f"CONTINUATION flood ({size} B frames)")
    peer = connect()
    block = peer.block(request_fields())
    first = HeadersFrame(1)
    first.data = block
    first.flags.add("END_STREAM")
    peer.send(first)

    def more() -> Iterator[bytes]:
        for _ in range(FLOOD):
            frame = ContinuationFrame(1)
            frame.data = b"a" * size  # never decoded: the block never ends
            yield frame.serialize()

    if concurrent(server):
        watch.bystander("during")
    sent = flood(peer, more(), batch=16)
    got = goaway(peer, ErrorCodes.PROTOCOL_ERROR)
    took = watch.elapsed()
    watch.bystander("after")
    watch.report(
        f"GOAWAY {ErrorCodes(got[0]).name} after {sent} CONTINUATION frames in {took:.3f}s",
        memory=True,
    )


@pytest.mark.parametrize(
    ("refs", "what"),
    [(16000, "HPACK bomb"), (20, "indexed-field amplification")],
    ids=["bomb", "amplification"],
)
def test_hpack_bomb(server: ServerProcess, connect: Connect, refs: int, what: str) -> None:
    """CVE-2016-6581: a 4 KiB field put in the HPACK table once, then named by its
    one-byte index ``refs`` times: 16,000 times (64 MB from 16 KB), or just enough to
    pass --max-header-size (64 KiB) -> GOAWAY ENHANCE_YOUR_CALM as soon as the decoded
    list passes the limit, memory bounded."""
    watch = Watch(server, what)
    peer = connect()
    # the newest entry of the dynamic table is index 62; 0x80 | 62 names it
    block = peer.block([*request_fields(), (b"x-bomb", b"a" * 4000)]) + b"\xbe" * refs
    frames = []
    for start in range(0, len(block), 16384):
        piece = block[start : start + 16384]
        first = start == 0
        last = start + 16384 >= len(block)
        if first:
            frame: HeadersFrame | ContinuationFrame = HeadersFrame(1)
            frame.flags.add("END_STREAM")
        else:
            frame = ContinuationFrame(1)
        frame.data = piece
        if last:
            frame.flags.add("END_HEADERS")
        frames.append(frame)
    peer.send(frames)
    got = goaway(peer, ErrorCodes.ENHANCE_YOUR_CALM)
    took = watch.elapsed()
    assert 1 not in peer.statuses, f"the request was served{peer.story()}"
    watch.bystander("after")
    decoded = 4000 * refs
    watch.report(
        f"GOAWAY {ErrorCodes(got[0]).name} in {took:.3f}s for {len(block)} B decoding to "
        f"{decoded / 1e6:.1f} MB",
        memory=True,
    )


@pytest.mark.parametrize(
    ("count", "code"),
    [(100, ErrorCodes.PROTOCOL_ERROR), (5000, ErrorCodes.ENHANCE_YOUR_CALM)],
    ids=["100", "5000"],
)
def test_zero_length_headers(
    server: ServerProcess, connect: Connect, count: int, code: int
) -> None:
    """CVE-2019-9516: a header block of 0-length names and values (3 bytes each, 32 bytes
    in HPACK's accounting) -> GOAWAY PROTOCOL_ERROR (h2 refuses an empty name), or
    ENHANCE_YOUR_CALM where their accounting passes --max-header-size first; memory
    bounded."""
    watch = Watch(server, f"{count} 0-length headers")
    peer = connect()
    block = peer.block(request_fields()) + b"\x00\x00\x00" * count  # literal, not indexed
    frame = HeadersFrame(1)
    frame.data = block
    frame.flags.add("END_STREAM")
    frame.flags.add("END_HEADERS")
    peer.send(frame)
    got = goaway(peer, code)
    took = watch.elapsed()
    watch.bystander("after")
    watch.report(f"GOAWAY {ErrorCodes(got[0]).name} in {took:.3f}s", memory=True)


# -- floods ----------------------------------------------------------------------------------


def _pings(peer: RawPeer) -> Iterator[bytes]:
    for n in range(FLOOD):
        yield PingFrame(0, opaque_data=n.to_bytes(8, "big")).serialize()


def _settings(peer: RawPeer) -> Iterator[bytes]:
    for _ in range(FLOOD):
        frame = SettingsFrame(0)
        frame.settings = {SettingCodes.INITIAL_WINDOW_SIZE: 65535}
        yield frame.serialize()


def _priorities(peer: RawPeer) -> Iterator[bytes]:
    for n in range(FLOOD):
        frame = PriorityFrame(2 * n + 1)
        frame.depends_on = 0 if n == 0 else 2 * n - 1
        frame.stream_weight = n % 256
        yield frame.serialize()


def _empty_data(peer: RawPeer) -> Iterator[bytes]:
    yield peer.request(1, "/echo", end_stream=False).serialize()
    for _ in range(FLOOD):
        yield raw_frame(0, 0, 1)  # DATA, no payload, no END_STREAM


@pytest.mark.parametrize(
    ("cve", "frames"),
    [
        ("CVE-2019-9512 ping flood", _pings),
        ("CVE-2019-9515 settings flood", _settings),
        ("CVE-2019-9513 priority flood", _priorities),
        ("CVE-2019-9518 empty-frame flood", _empty_data),
    ],
    ids=["ping", "settings", "priority", "empty-data"],
)
def test_flood(server: ServerProcess, connect: Connect, cve: str, frames: object) -> None:
    """Control frames a client never needs thousands of, from a client that does not read
    the answers (PING ACKs, SETTINGS ACKs, RST_STREAMs) -> GOAWAY ENHANCE_YOUR_CALM."""
    watch = Watch(server, cve)
    before = server.stderr.count("too many control frames (a flood)")
    peer = connect(rcvbuf=4096)
    peer.auto_ack = False
    assert callable(frames)
    sent = 0
    for frame in frames(peer):  # no reading until the end: the answers pile up
        if not peer.send(frame):
            break
        sent += 1
        if sent % 200 == 0:
            peer.read_until(lambda: peer.goaway is not None, 0.001)
            if peer.goaway is not None:
                break
    # The attacker never reads and its receive buffer is 4 KiB: the server's answers fill
    # it, so the GOAWAY may never get through before the server closes (it does not wait
    # on a peer that does not read). Then the server's log must say why it closed.
    peer.until_goaway(5)
    took = watch.elapsed()
    if peer.goaway is not None:
        assert peer.goaway[0] == ErrorCodes.ENHANCE_YOUR_CALM, peer.story()
        outcome = f"GOAWAY ENHANCE_YOUR_CALM after {sent} frames in {took:.3f}s"
    else:
        assert peer.until_closed(5), f"neither GOAWAY nor closed{peer.story()}"
        outcome = f"closed (the GOAWAY not read) after {sent} frames in {took:.3f}s"
        flooded = lambda: server.stderr.count("too many control frames (a flood)") > before  # noqa: E731
        wait_until(flooded, 5, "the server's log to name the flood")
    watch.bystander("after")
    watch.report(outcome, memory=True)


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "burst"])
def test_reset_flood(server: ServerProcess, connect: Connect, paced: bool) -> None:
    """CVE-2019-9514: requests that make the server send RST_STREAM, over and over. The
    client holds the advertised 100 streams open (bodies that never come) and opens more:
    each is refused (RST_STREAM REFUSED_STREAM), and each refusal counts against
    RESETS_MAX -> GOAWAY ENHANCE_YOUR_CALM. Sent in one burst, more new streams come in
    one read than h2 allows open (twice the advertised limit, counted before the server
    refuses any of them) -> GOAWAY PROTOCOL_ERROR at once (RFC 9113 5.1.2 allows either)."""
    watch = Watch(
        server, "reset flood (streams past the limit), " + ("paced" if paced else "burst")
    )
    peer = connect(rcvbuf=4096)
    held = [peer.request(2 * n + 1, "/echo", end_stream=False) for n in range(100)]
    peer.send(held)
    sid = 201
    if paced:  # ten at a time, each ten refused before the next are sent
        while peer.goaway is None and not (peer.closed or peer.send_failed) and sid < 2 * FLOOD:
            batch = list(range(sid, sid + 20, 2))
            peer.send([peer.request(n, "/echo", end_stream=False) for n in batch])
            peer.read_until(lambda b=batch: b[-1] in peer.resets or peer.goaway is not None, 5)
            sid += 20
        code = ErrorCodes.ENHANCE_YOUR_CALM
    else:
        peer.send([peer.request(n, "/echo", end_stream=False) for n in range(sid, sid + 400, 2)])
        sid += 400
        code = ErrorCodes.PROTOCOL_ERROR
    got = goaway(peer, code)
    took = watch.elapsed()
    refused = [n for n, c in peer.resets.items() if c == ErrorCodes.REFUSED_STREAM]
    if paced:
        assert RESETS_MAX - 20 <= len(refused) <= RESETS_MAX + 20, peer.story()
    watch.bystander("after")
    watch.report(
        f"{len(refused)} x RST_STREAM REFUSED_STREAM, then GOAWAY {ErrorCodes(got[0]).name} "
        f"naming stream {got[1]} in {took:.3f}s",
        memory=True,
    )


# -- stalls: windows that never open, or open a byte at a time ------------------------------


def _stalled(server: ServerProcess, watch: Watch, peer: RawPeer, dribble: bool) -> None:
    """Request /big on ``peer``; the server must give up within --timeout-io (plus slack)
    and send almost nothing meanwhile."""
    peer.send(peer.request(1, "/big"))
    assert peer.read_until(lambda: 1 in peer.statuses, 5), f"no response head{peer.story()}"
    if concurrent(server):
        watch.bystander("during")
    limit = (TIMEOUT_IO + 5) * timeout_factor()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not (peer.closed or 1 in peer.resets):
        if dribble:  # a byte of window, five times a second
            for sid in (0, 1):
                update = WindowUpdateFrame(sid)
                update.window_increment = 1
                peer.send(update)
        peer.read_for(0.2)
    took = watch.elapsed()
    assert peer.closed or 1 in peer.resets, (
        f"the stalled stream was neither reset nor its connection closed in {took:.1f}s"
        f"{peer.story()}"
    )
    assert peer.body.get(1, 0) < BIG // 100, peer.story()
    watch.bystander("after", within=PROMPT + (0 if concurrent(server) else TIMEOUT_IO + 5))


@pytest.mark.parametrize("window", [0, 1], ids=["zero-window", "dribble"])
def test_window_stall(server: ServerProcess, connect: Connect, window: int) -> None:
    """CVE-2019-9511 (data dribble), CVE-2019-9517 (zero window): SETTINGS_INITIAL_WINDOW
    _SIZE 0 (or 1, then a byte of window at a time) and a 32 MiB response -> the stream
    is reset or the connection dropped after --timeout-io; memory bounded."""
    watch = Watch(server, f"window {window}" + (" and dribble" if window else ""))
    peer = connect(settings={SettingCodes.INITIAL_WINDOW_SIZE: window})
    _stalled(server, watch, peer, dribble=bool(window))
    what = (
        f"GOAWAY {ErrorCodes(peer.goaway[0]).name}"
        if peer.goaway
        else f"RST_STREAM {ErrorCodes(peer.resets[1]).name}"
        if 1 in peer.resets
        else "closed"
    )
    watch.report(f"{what} after {watch.elapsed():.2f}s, {peer.body.get(1, 0)} B sent", memory=True)


def test_unread_socket(server: ServerProcess, connect: Connect) -> None:
    """CVE-2019-9517 (internal data buffering): windows opened wide, the socket never
    read -> bounded buffering, the connection dropped (the slow-read bound: --timeout-io,
    then --min-send-rate); memory bounded."""
    watch = Watch(server, "windows open, socket unread")
    peer = connect(settings={SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    update = WindowUpdateFrame(0)
    update.window_increment = MAX_WINDOW - 65535
    peer.send(update)
    peer.send(peer.request(1, "/big"))
    if concurrent(server):
        watch.bystander("during")
    # never read: wait for the server to give up (the kernel says when it reset or closed)
    limit = (TIMEOUT_IO + 10) * timeout_factor()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = peer.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        if state != 1:  # TCP_ESTABLISHED
            break
        time.sleep(0.1)
    took = watch.elapsed()
    assert time.monotonic() < deadline, f"still connected after {took:.1f}s{peer.story()}"
    watch.bystander("after", within=PROMPT + (0 if concurrent(server) else TIMEOUT_IO + 10))
    watch.report(f"dropped after {took:.2f}s", memory=True)


# -- malformed requests and the stream limit --------------------------------------------------


def _fields(*extra: tuple[bytes, bytes], path: str = "/") -> list[tuple[bytes, bytes]]:
    return [*request_fields(path), *extra]


MALFORMED = {
    # name: (header list, body frames after HEADERS or None for END_STREAM on HEADERS)
    "authority-vs-host": (_fields((b"host", b"elsewhere")), None),
    "pseudo-after-regular": (
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b"accept", b"*/*"),
            (b":path", b"/"),
            (b":authority", b"localhost"),
        ],
        None,
    ),
    "pseudo-repeated": (_fields((b":path", b"/again")), None),
    "uppercase-name": (_fields((b"Accept", b"*/*")), None),
    "connection-header": (_fields((b"connection", b"keep-alive")), None),
    "te-not-trailers": (_fields((b"te", b"gzip")), None),
    "content-length-short": (
        _fields((b"content-length", b"10"), path="/echo"),
        [(b"12345", True)],
    ),
    "content-length-long": (
        _fields((b"content-length", b"3"), path="/echo"),
        [(b"12345", True)],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request(server: ServerProcess, connect: Connect, case: str) -> None:
    """RFC 9113 8.1.1 / 8.2 / 8.3: a malformed request is never served. RFC 9113 makes it
    a stream error (RST_STREAM PROTOCOL_ERROR); h2 makes every one of these a connection
    error, GOAWAY PROTOCOL_ERROR (allowed by RFC 9113 5.4.1; see the module docstring)."""
    fields, body = MALFORMED[case]
    watch = Watch(server, f"malformed: {case}")
    peer = connect()
    frame = HeadersFrame(1)
    frame.data = peer.block(fields)
    frame.flags.add("END_HEADERS")
    if body is None:
        frame.flags.add("END_STREAM")
    frames: list[Any] = [frame]
    for data, end in body or ():
        frames.append(raw_frame(0, 1 if end else 0, 1, data))
    peer.send(frames)
    got = goaway(peer, ErrorCodes.PROTOCOL_ERROR)  # h2: a connection error (see above)
    took = watch.elapsed()
    assert 1 not in peer.statuses, f"the malformed request was answered{peer.story()}"
    watch.bystander("after")
    watch.report(f"GOAWAY {ErrorCodes(got[0]).name} in {took:.3f}s")


@pytest.fixture(scope="module", params=MODELS)
def limited(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server that allows 4 streams per connection."""
    with ServerProcess(APP, str(request.param), "--h2-max-streams", "4") as process:
        yield process


def test_streams_past_the_limit_refused(limited: ServerProcess) -> None:
    """--h2-max-streams 4 and 8 requests at once -> the first 4 answered, the other 4
    RST_STREAM REFUSED_STREAM (a stream error; the connection goes on and serves more)."""
    watch = Watch(limited, "8 streams, limit 4")
    peer = RawPeer(limited.address)
    try:
        ids = [2 * n + 1 for n in range(8)]
        peer.send([peer.request(sid, "/slow") for sid in ids])
        everyone = lambda: all(sid in peer.ended or sid in peer.resets for sid in ids)  # noqa: E731
        assert peer.read_until(everyone, 10), peer.story()
        assert {sid: peer.statuses.get(sid) for sid in ids[:4]} == dict.fromkeys(ids[:4], 200)
        assert {sid: peer.resets.get(sid) for sid in ids[4:]} == dict.fromkeys(
            ids[4:], ErrorCodes.REFUSED_STREAM
        ), peer.story()
        assert peer.goaway is None, peer.story()
        # the connection is still good: a new stream is answered (a stream whose response
        # the client has seen may still count for a moment, until the server's bookkeeping
        # for it is done, so a refusal is retried on the next stream id)
        for sid in range(17, 27, 2):
            peer.send(peer.request(sid, "/"))
            assert peer.read_until(lambda s=sid: s in peer.ended or s in peer.resets, 5)
            if sid in peer.statuses:
                break
        assert peer.statuses.get(sid) == 200, peer.story()
    finally:
        peer.close()
    watch.bystander("after")
    watch.report(f"4 x 200, 4 x RST_STREAM REFUSED_STREAM in {watch.elapsed():.2f}s")


# -- the flood budgets' window, on the sans-I/O core --------------------------------------------


def test_provoked_resets_are_counted_once_per_window() -> None:
    """A reset the peer's frames make us send counts once (not as both a provoked reset
    and a reset stream), and the count starts again with each FLOOD_WINDOW_S: a long-lived
    connection is not cut off for the resets of an hour."""
    encoder = hpack.Encoder()
    core = H2Core(HTTPSettings(Config(), runner=lambda *a: None), 0.0)
    assert core.feed(PREFACE + SettingsFrame(0).serialize(), 0.0)
    sid = 1

    def provoke(count: int, now: float) -> bool:
        nonlocal sid
        data = b""
        for _ in range(count):
            frame = HeadersFrame(sid)
            frame.data = encoder.encode(request_fields())
            frame.flags.add("END_STREAM")
            frame.flags.add("END_HEADERS")
            update = WindowUpdateFrame(sid)
            update.window_increment = MAX_WINDOW
            data += frame.serialize() + update.serialize()
            sid += 2
        alive = core.feed(data, now)
        for stream in core.take_ready():
            core.respond(stream, [(b":status", b"200")], b"", True, now)
            core.finish(stream, 200, 0, 0.0, now)
        return alive

    assert provoke(RESETS_MAX, 0.0)  # the whole budget, once each
    assert provoke(RESETS_MAX, FLOOD_WINDOW_S + 1)  # a new window: a new budget
    assert not provoke(RESETS_MAX + 1, 2 * FLOOD_WINDOW_S + 2)  # past it: GOAWAY
    assert b"\x00\x00\x00\x00\x0b" in core.output()  # ENHANCE_YOUR_CALM
