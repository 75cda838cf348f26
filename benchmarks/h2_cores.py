"""Sans-I/O comparison of the HTTP/2 cores the issue names: h2, ngh2 and zttp (issue 15).

    taskset -c 1 nice -n 10 /tmp/h2cores/bin/python benchmarks/h2_cores.py        # ~10 s
    python benchmarks/h2_cores.py --quick                                         # ~2 s

No sockets and no threadloom: each core's server-side connection is fed the bytes a real
client would send, and the bytes it produces are collected, so the figures are what the core
costs the engine per request on top of its I/O (upper bounds for a whole server).

The client bytes are made once per core, outside the timed loop, by an ``h2`` client driven
against that core's own server (so they follow that core's SETTINGS and window updates), and
recorded as "flights": what the client writes after each read. The timed loop replays the
flights into a fresh server connection and answers each request as an app would. Workloads:

* ``GET``: preface and SETTINGS, then ``--requests`` GETs (``:method GET``, ``:path /``,
  ``:scheme http``, ``:authority`` and four regular headers) on consecutive stream ids in
  batches of ``--batch`` (``h2load -m 10``). The client's windows are 2**30-1, as h2load's.
  Answer: ``200``, ``content-type: text/plain``, ``content-length: 13``, ``Hello, world!``.
* ``POST 64K``: ``--posts`` POSTs one after another, each with a 65,536-byte body sent as
  the server's windows allow; the server acknowledges the DATA as the app consumes it (at
  once here), so window updates are part of the cost. zttp has no such call on HTTP/2: it
  credits windows on receipt by itself.
* ``setup``: a new connection: the server's SETTINGS, the client's preface and SETTINGS,
  the SETTINGS ack, each way.

Rounds alternate between the cores (A B C A B C ...) so that load from other jobs on a
shared machine spreads over all of them; the table quotes medians and ratios to ``h2``.
A core that is not installed is skipped with one line.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from types import ModuleType
from typing import Any

MISSING: dict[str, str] = {}  # core -> why it cannot be imported

h2: ModuleType | None
try:  # the reference core, and the client that makes the request bytes
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
except ImportError as exc:
    h2 = None
    MISSING["h2"] = f"{type(exc).__name__}: {exc}"

ngh2: ModuleType | None
try:
    import ngh2
except ImportError as exc:
    ngh2 = None
    MISSING["ngh2"] = f"{type(exc).__name__}: {exc}"

zttp: ModuleType | None
try:
    import zttp
except ImportError as exc:
    zttp = None
    MISSING["zttp"] = f"{type(exc).__name__}: {exc}"

BODY = b"Hello, world!"
RESP_HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"text/plain"),
    (b"content-length", b"13"),
]
GET_HEADERS = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.64.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"x-request-id", b"0123456789abcdef"),
]
POST_BODY = bytes(range(256)) * 256  # 65,536 bytes
POST_HEADERS = [
    (b":method", b"POST"),
    (b":path", b"/upload"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.64.0"),
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(POST_BODY)).encode()),
]
BIG_WINDOW = 2**30 - 1  # h2load's default -w 30 / -W 30


# --- the servers: one adapter per core, the same app behind each -------------------------
#
# feed(data) -> bytes: hand the core what was read, run the app on every request that is
# complete (GET: at its HEADERS; POST: at its END_STREAM, having consumed and acknowledged
# each DATA chunk), return what the core wants written. ``answered`` counts responses.


class H2Server:
    name = "h2"

    def __init__(self) -> None:
        assert h2 is not None
        self._ev = h2.events
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = conn = h2.connection.H2Connection(config=config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        conn.initiate_connection()
        self.answered = 0

    def start(self) -> bytes:
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> bytes:
        conn = self.conn
        ev = self._ev
        for event in conn.receive_data(data):
            kind = type(event)
            if kind is ev.RequestReceived:
                if event.stream_ended is not None:
                    self._answer(event.stream_id)
            elif kind is ev.DataReceived:
                if event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_ended is not None:
                    self._answer(event.stream_id)
        return conn.data_to_send()

    def _answer(self, stream_id: int) -> None:
        self.conn.send_headers(stream_id, RESP_HEADERS)
        self.conn.send_data(stream_id, BODY, end_stream=True)
        self.answered += 1


class Ngh2Server:
    name = "ngh2"

    def __init__(self) -> None:
        assert ngh2 is not None
        self._req = ngh2.RequestReceived
        self._data = ngh2.DataReceived
        config = ngh2.Configuration(auto_window_update=False)
        self.conn = conn = ngh2.Connection(ngh2.Role.SERVER, config)
        conn.initiate_connection(
            {
                ngh2.Setting.MAX_CONCURRENT_STREAMS: 100,
                ngh2.Setting.MAX_HEADER_LIST_SIZE: 65536,
                ngh2.Setting.ENABLE_CONNECT_PROTOCOL: 1,
            }
        )
        self.answered = 0

    def start(self) -> bytes:
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> bytes:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events():
            kind = type(event)
            if kind is self._req:
                if event.end_stream:
                    self._answer(event.stream_id)
            elif kind is self._data:
                if event.data:
                    conn.acknowledge_received_data(len(event.data), event.stream_id)
                if event.end_stream:
                    self._answer(event.stream_id)
        return conn.data_to_send()

    def _answer(self, stream_id: int) -> None:
        self.conn.send_response(stream_id, RESP_HEADERS)
        self.conn.send_data(stream_id, BODY, end_stream=True)
        self.answered += 1


ZTTP_HEADERS = RESP_HEADERS[1:]  # zttp takes the status as an int


class ZttpServer:
    name = "zttp"

    def __init__(self) -> None:
        assert zttp is not None
        self._need = zttp.NEED_DATA
        self._closed = zttp.CONNECTION_CLOSED
        self._req = zttp.Request
        self._eom = zttp.EndOfMessage
        self.conn = conn = zttp.Connection(zttp.SERVER, zttp.HTTP2)
        conn.initiate_connection()  # its SETTINGS are fixed: streams 128, header list 64K
        self.answered = 0

    def start(self) -> bytes:
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> bytes:
        conn = self.conn
        conn.receive_data(data)
        need, closed, req, eom = self._need, self._closed, self._req, self._eom
        while True:
            event = conn.next_event()
            if event is need or event is closed:
                break
            kind = type(event)
            if kind is req:
                if event.end_stream:
                    self._answer(event.stream_id)
            elif kind is eom:
                self._answer(event.stream_id)
            # Data: nothing to acknowledge, zttp credits the window on receipt
        return conn.data_to_send()

    def _answer(self, stream_id: int) -> None:
        stream = self.conn.stream(stream_id)
        stream.send_response(200, ZTTP_HEADERS)
        stream.send_data(BODY)
        stream.end_message()
        self.answered += 1


CORES: list[tuple[str, type[Any]]] = [("h2", H2Server), ("ngh2", Ngh2Server), ("zttp", ZttpServer)]


# --- the client: h2 in client mode, run once per core to record its flights -------------


class Recorder:
    """An ``h2`` client driven against one core's server; records what it writes."""

    def __init__(self, server: Any) -> None:
        assert h2 is not None
        self.ev = h2.events
        self.server = server
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = c = h2.connection.H2Connection(config=config)
        c.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: BIG_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        c.initiate_connection()
        c.increment_flow_control_window(BIG_WINDOW - 65535)
        self.flights: list[bytes] = []
        self.responses: dict[int, list[Any]] = {}  # stream id -> [status, body]
        self.pending: dict[int, memoryview] = {}  # POST bodies not yet sent
        self._deliver(server.start())

    def _deliver(self, server_bytes: bytes) -> None:
        ev = self.ev
        for event in self.client.receive_data(server_bytes):
            if isinstance(event, ev.ResponseReceived):
                status = dict(event.headers)[b":status"]
                self.responses[event.stream_id] = [status, b""]
            elif isinstance(event, ev.DataReceived):
                self.responses[event.stream_id][1] += event.data
            elif isinstance(event, ev.ConnectionTerminated | ev.StreamReset):
                raise RuntimeError(f"{self.server.name}: {event}")

    def _push_bodies(self) -> None:
        c = self.client
        for stream_id, rest in list(self.pending.items()):
            left = rest
            while left:
                room = min(c.local_flow_control_window(stream_id), c.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, left = left[:room], left[room:]
                c.send_data(stream_id, bytes(chunk), end_stream=not left)
            if left:
                self.pending[stream_id] = left
            else:
                del self.pending[stream_id]

    def flight(self) -> None:
        """Send what the client has to the server, once, and take back its answer."""
        self._push_bodies()
        data = self.client.data_to_send()
        if not data:
            raise RuntimeError(f"{self.server.name}: client stalled ({len(self.pending)} bodies)")
        self.flights.append(data)
        self._deliver(self.server.feed(data))

    def get_batch(self, n: int) -> None:
        for _ in range(n):
            sid = self.client.get_next_available_stream_id()
            self.client.send_headers(sid, GET_HEADERS, end_stream=True)
        self.flight()

    def post(self) -> None:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, POST_HEADERS)
        self.pending[sid] = memoryview(POST_BODY)
        self.flight()
        while sid not in self.responses or self.responses[sid][1] != BODY:
            self.flight()

    def check(self, expected: int) -> None:
        ok = sum(1 for s, b in self.responses.values() if s == b"200" and b == BODY)
        if ok != expected or self.server.answered != expected:
            raise RuntimeError(
                f"{self.server.name}: {ok} good responses of {expected} "
                f"(server answered {self.server.answered})"
            )


def record(factory: type[Any], workload: str, args: argparse.Namespace) -> list[bytes]:
    rec = Recorder(factory())
    if workload == "get":
        rec.flight()  # preface + SETTINGS (+ ack of the server's)
        for _ in range(args.requests // args.batch):
            rec.get_batch(args.batch)
        rec.check(args.requests)
    elif workload == "post":
        rec.flight()
        for _ in range(args.posts):
            rec.post()
        rec.check(args.posts)
    else:  # setup: the preface, SETTINGS and the ack of the server's, in one flight
        rec.flight()
    return rec.flights


# --- timing ----------------------------------------------------------------------------


def time_replay(factory: type[Any], flights: list[bytes], skip: int, expected: int) -> float:
    """Seconds to replay ``flights[skip:]`` into a server that has had ``flights[:skip]``."""
    server = factory()
    server.start()
    for data in flights[:skip]:
        server.feed(data)
    feed = server.feed
    todo = flights[skip:]
    gc.disable()
    try:
        t0 = time.perf_counter()
        for data in todo:
            feed(data)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    if server.answered != expected:
        raise RuntimeError(f"{factory.name}: answered {server.answered} of {expected} in replay")
    return elapsed


def time_setup(factory: type[Any], flights: list[bytes], n: int) -> float:
    """Seconds per new connection: construct, SETTINGS out, preface and ack in."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            server = factory()
            server.start()
            for data in flights:
                server.feed(data)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed / n


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"{cpu}, {os.cpu_count()} CPUs, pinned to {affinity}, nice {os.nice(0)}, "
        f"load {os.getloadavg()[0]:.1f}; {platform.python_implementation()} "
        f"{platform.python_version()}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--requests", type=int, default=2000, help="GETs per round")
    p.add_argument("--batch", type=int, default=10, help="GETs per flight (h2load -m)")
    p.add_argument("--posts", type=int, default=100, help="64 KiB POSTs per round")
    p.add_argument("--setups", type=int, default=300, help="connections per setup round")
    p.add_argument("--cores", default="h2,ngh2,zttp")
    p.add_argument("--quick", action="store_true", help="3 rounds, a quarter of the work")
    args = p.parse_args()
    if args.quick:
        args.rounds = 3
        args.requests //= 4
        args.posts //= 4
        args.setups //= 4
    args.requests -= args.requests % args.batch

    print(machine())
    if h2 is None:
        print(f"h2 is needed to make the client's bytes and is not installed ({MISSING['h2']})")
        return 1
    cores = []
    for name, factory in CORES:
        if name not in args.cores.split(","):
            continue
        if name in MISSING:
            print(f"skip {name}: not installed ({MISSING[name]})")
            continue
        cores.append((name, factory))
    print("cores: " + ", ".join(f"{n} {version(n)}" for n, _ in cores))

    # record once per core, outside any timing (and check every answer on the way)
    work: dict[str, dict[str, list[bytes]]] = {}
    for name, factory in cores:
        work[name] = {w: record(factory, w, args) for w in ("get", "post", "setup")}

    results: dict[str, dict[str, list[float]]] = {
        n: {"get": [], "post": [], "setup": []} for n, _ in cores
    }
    for _ in range(args.rounds):  # A B C A B C: load from other jobs falls on every core
        for name, factory in cores:
            w = work[name]
            r = results[name]
            r["get"].append(time_replay(factory, w["get"], 1, args.requests) / args.requests)
            r["post"].append(time_replay(factory, w["post"], 1, args.posts) / args.posts)
            r["setup"].append(time_setup(factory, w["setup"], args.setups))

    base = results.get("h2")
    print(
        f"\n{args.rounds} rounds; GET: {args.requests} requests in flights of {args.batch}; "
        f"POST: {args.posts} x 64 KiB; setup: {args.setups} connections"
    )
    head = "| core | GET µs/req | x h2 | POST 64K µs/req | x h2 | setup µs/conn | x h2 |"
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _ in cores:
        cells = [name]
        for w in ("get", "post", "setup"):
            med = statistics.median(results[name][w])
            cells.append(f"{med * 1e6:.1f}")
            cells.append(f"{statistics.median(base[w]) / med:.1f}x" if base else "-")
        print("| " + " | ".join(cells) + " |")
    spread = {
        n: max((max(v) - min(v)) / statistics.median(v) for v in results[n].values())
        for n, _ in cores
    }
    print("widest spread (max-min)/median: " + ", ".join(f"{n} {s:.0%}" for n, s in spread.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
