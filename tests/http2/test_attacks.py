"""The known HTTP/2 attacks (issue 15), each sent frame by frame against a real server.

Each test runs under every model against a server in a process of its own (so that its
memory can be watched: ``/proc``'s peak RSS, reset before each attack), attacks with
:class:`~tests.http2.support.RawPeer` (frames built by hand), and asserts three things:

* the answer: what RFC 9113 allows (or the server's flood budgets, ``engine/h2_core.py``,
  call for) and the CVE asks: the attack refused, with an ``RST_STREAM`` or ``GOAWAY`` of
  the right code. Where the RFC allows a stream error or the same code as a connection
  error (5.4.1), either is taken, and a stream error must leave the connection serving;
* that other connections are still served, promptly: an ordinary HTTP/2 request on a
  second connection (``h2`` as the client) during the attack where the model serves
  connections concurrently, and after it under every model (``single`` serves one
  connection at a time, so there a bystander waits until the attacker is cut off);
* that memory stays bounded where the attack is about memory (peak RSS growth under
  ``RSS_BOUND``).

Every test runs under each HTTP/2 core (h2, and ngh2 where it is installed): the server
processes take the core from the environment they start with, so here ``each_h2_core`` is
module-scoped (all the tests under one core, then under the next). Each prints a
line of figures (``-s`` shows them; RELIABILITY.md's table comes from them), and a failing
assertion prints what the attacker sent and what came back.

Where the cores answer differently, both are within what the RFC allows: a malformed
request is a stream error under ngh2 (RST_STREAM PROTOCOL_ERROR, as RFC 9113 8.1.1 asks)
and a connection error under h2 (GOAWAY PROTOCOL_ERROR, 5.4.1: "an endpoint MAY choose to
treat a stream error as a connection error"; it costs the client its other streams, not
the server anything); ngh2 ends the connection at the first frame MadeYouReset provokes,
where h2 resets the stream until the reset budget runs out.
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
from tests.h2cores import core_params
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
from threadloom.protocols.http2 import CORE_ENV
from threadloom.testing import CONCURRENT_MODELS, MODELS, timeout_factor

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


@pytest.fixture(scope="module", params=core_params(), autouse=True)
def each_h2_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """The core of the module's server processes, set before they start (this overrides
    tests/http2/conftest.py's per-test fixture: a process keeps the core it started with)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CORE_ENV, request.param)
        yield request.param


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest, each_h2_core: str) -> Iterator[ServerProcess]:
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


def goaway(peer: RawPeer, *codes: int, timeout: float = 5.0) -> tuple[int, int]:
    """The server's GOAWAY, which must carry one of ``codes``, and the connection closed
    after it."""
    got = peer.until_goaway(timeout)
    assert got is not None, f"no GOAWAY{peer.story()}"
    names = " or ".join(ErrorCodes(code).name for code in codes)
    assert got[0] in codes, f"GOAWAY {ErrorCodes(got[0])!r}, not {names}{peer.story()}"
    assert peer.until_closed(timeout), f"the connection stayed open after GOAWAY{peer.story()}"
    return got


def _answer(peer: RawPeer, stream_id: int, how: str) -> str:
    """The refusal ``refused`` saw, for the report."""
    if how == "stream":
        return f"RST_STREAM {ErrorCodes(peer.resets[stream_id]).name}"
    assert peer.goaway is not None
    return f"GOAWAY {ErrorCodes(peer.goaway[0]).name}"


def refused(peer: RawPeer, stream_id: int, *codes: int, timeout: float = 5.0) -> str:
    """An error RFC 9113 lets the server signal either way: a stream error (RST_STREAM on
    ``stream_id`` with one of ``codes``), after which the connection must still serve (a
    request on a new stream is answered), or a connection error (5.4.1: GOAWAY with one of
    ``codes``, then the close). Returns ``"stream"`` or ``"connection"``."""
    peer.read_until(lambda: stream_id in peer.resets or peer.goaway is not None, timeout)
    if stream_id not in peer.resets:
        goaway(peer, *codes, timeout=timeout)
        return "connection"
    names = " or ".join(ErrorCodes(code).name for code in codes)
    assert peer.resets[stream_id] in codes, f"RST_STREAM, not {names}{peer.story()}"
    after = stream_id + 2
    peer.send(peer.request(after))
    peer.read_until(lambda: after in peer.ended or peer.goaway is not None, timeout)
    assert peer.statuses.get(after) == 200, f"the connection stopped serving{peer.story()}"
    return "stream"


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
    """CVE-2025-8671 ("MadeYouReset"): frames that make the server reset the stream. The
    CVE asks that they cannot make it do unbounded work: each answered with RST_STREAM (a
    stream error, RFC 9113 6.9.1 and 5.1) and counted against RESETS_MAX -> GOAWAY
    ENHANCE_YOUR_CALM, or the first one already a connection error with the same code
    (5.4.1; ngh2's answer)."""
    watch = Watch(server, f"MadeYouReset ({how})")
    peer = connect()
    assert callable(make)
    # the first one alone
    peer.send(make(peer, 1))
    peer.read_until(lambda: 1 in peer.resets or peer.goaway is not None, 5)
    if 1 not in peer.resets:  # a connection error at once
        got = goaway(peer, code)
        watch.bystander("after")
        watch.report(f"GOAWAY {ErrorCodes(got[0]).name} at the first, in {watch.elapsed():.3f}s")
        return
    assert peer.resets[1] == code, peer.story()
    assert peer.goaway is None, peer.story()  # a stream error: the connection lives on
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
    frames without END_HEADERS, for ever) -> a connection error, memory bounded: GOAWAY
    PROTOCOL_ERROR (h2 allows 64 of them) or ENHANCE_YOUR_CALM (ngh2 allows 8: RFC 9113
    10.5 lets suspicious activity be that connection error)."""
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
    got = goaway(peer, ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)
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


@pytest.mark.parametrize("count", [100, 5000])
def test_zero_length_headers(server: ServerProcess, connect: Connect, count: int) -> None:
    """CVE-2019-9516: a header block of 0-length names and values (3 bytes each, 32 bytes
    in HPACK's accounting) -> the request refused, memory bounded. An empty name makes it
    malformed (RFC 9113 8.2.1): RST_STREAM PROTOCOL_ERROR (ngh2, at the first one) or GOAWAY
    PROTOCOL_ERROR (h2, 5.4.1); or GOAWAY ENHANCE_YOUR_CALM where the list's accounting
    passes --max-header-size first (h2, 5,000 of them)."""
    watch = Watch(server, f"{count} 0-length headers")
    peer = connect()
    block = peer.block(request_fields()) + b"\x00\x00\x00" * count  # literal, not indexed
    frame = HeadersFrame(1)
    frame.data = block
    frame.flags.add("END_STREAM")
    frame.flags.add("END_HEADERS")
    peer.send(frame)
    how = refused(peer, 1, ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)
    took = watch.elapsed()
    assert 1 not in peer.statuses, f"the request was served{peer.story()}"
    peer.close()  # (a connection that lives on would hold ``single`` until it idles out)
    watch.bystander("after")
    watch.report(f"{_answer(peer, 1, how)} in {took:.3f}s", memory=True)


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
    each is refused (RST_STREAM REFUSED_STREAM, RFC 9113 5.1.2), and each refusal counts
    against RESETS_MAX -> GOAWAY ENHANCE_YOUR_CALM. Sent in one burst (twice RESETS_MAX
    new streams in one write), more new streams come in one read than h2 allows open
    (twice the advertised limit, counted before the engine refuses any of them) -> GOAWAY
    PROTOCOL_ERROR at once (5.1.2 and 5.4.1); ngh2 sets no limit of its own, so there the
    refusals pass the budget -> GOAWAY ENHANCE_YOUR_CALM."""
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
        codes: tuple[int, ...] = (ErrorCodes.ENHANCE_YOUR_CALM,)
    else:
        burst = range(sid, sid + 4 * RESETS_MAX, 2)  # twice the reset budget
        peer.send([peer.request(n, "/echo", end_stream=False) for n in burst])
        sid += 4 * RESETS_MAX
        codes = (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)
    got = goaway(peer, *codes)
    took = watch.elapsed()
    refusals = [n for n, c in peer.resets.items() if c == ErrorCodes.REFUSED_STREAM]
    if paced:
        assert RESETS_MAX - 20 <= len(refusals) <= RESETS_MAX + 20, peer.story()
    watch.bystander("after")
    watch.report(
        f"{len(refusals)} x RST_STREAM REFUSED_STREAM, then GOAWAY {ErrorCodes(got[0]).name} "
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
    a stream error (RST_STREAM PROTOCOL_ERROR: ngh2), which 5.4.1 lets an endpoint make a
    connection error (GOAWAY PROTOCOL_ERROR: h2; see the module docstring). ``:authority``
    against ``Host``: 8.3.1 says a server SHOULD treat it as malformed; both do."""
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
    how = refused(peer, 1, ErrorCodes.PROTOCOL_ERROR)
    took = watch.elapsed()
    assert 1 not in peer.statuses, f"the malformed request was answered{peer.story()}"
    peer.close()  # (a connection that lives on would hold ``single`` until it idles out)
    watch.bystander("after")
    watch.report(f"{_answer(peer, 1, how)} in {took:.3f}s")


@pytest.fixture(scope="module", params=MODELS)
def limited(request: pytest.FixtureRequest, each_h2_core: str) -> Iterator[ServerProcess]:
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
    """A reset the peer's frames make us send counts once, and the count starts again
    with each FLOOD_WINDOW_S: a long-lived connection is not cut off for the resets of an
    hour. The resets here are refusals past the stream limit, a stream error under both
    cores (a window overflow, as MadeYouReset sends, is a connection error under ngh2)."""
    encoder = hpack.Encoder()
    core = H2Core(HTTPSettings(Config(h2_max_streams=1), runner=lambda *a: None), 0.0)
    held = HeadersFrame(1)
    held.data = encoder.encode(request_fields())
    held.flags.add("END_HEADERS")  # (no END_STREAM: its body never comes, it holds its place)
    assert core.feed(PREFACE + SettingsFrame(0).serialize() + held.serialize(), 0.0)
    sid = 3

    def provoke(count: int, now: float) -> bool:
        nonlocal sid
        for _ in range(count):  # one a read: h2 allows twice the limit open at once
            frame = HeadersFrame(sid)
            frame.data = encoder.encode(request_fields())
            frame.flags.add("END_STREAM")
            frame.flags.add("END_HEADERS")
            sid += 2
            if not core.feed(frame.serialize(), now):
                return False
            core.output()  # (the refusal goes out: the stream is closed)
        return True

    assert provoke(RESETS_MAX, 0.0)  # the whole budget, once each
    assert provoke(RESETS_MAX, FLOOD_WINDOW_S + 1)  # a new window: a new budget
    assert not provoke(RESETS_MAX + 1, 2 * FLOOD_WINDOW_S + 2)  # past it: GOAWAY
    out, codes = core.output(), []
    while len(out) >= 9:
        size = int.from_bytes(out[:3], "big")
        if out[3] == 0x7:  # GOAWAY: last stream id, error code
            codes.append(int.from_bytes(out[13:17], "big"))
        out = out[9 + size :]
    assert codes == [ErrorCodes.ENHANCE_YOUR_CALM]
