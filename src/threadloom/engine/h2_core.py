"""The rules of an HTTP/2 connection, written once: sans-I/O, with the time passed in.

Why
---
HTTP/2 runs under every model, as HTTP/1.1 does, with two drivers:
:mod:`threadloom.engine.h2` (thread models) and :mod:`threadloom.engine.h2_aio` (asyncio).
What both must agree on lives here: when a stream's request goes to the app (the same rule
as HTTP/1.1: a sync app once the body is complete, large (here: once waiting bodies
hold half the receive window, ``HELD_BODY_MAX``), or behind ``Expect: 100-continue``; an
async one at once), its body and the window given back only as
the app takes it, the response queued per stream and framed as the peer's windows allow,
the deadlines (an idle connection, a peer whose windows stay shut, the preface), the flood
budgets, the limits, GOAWAY on shutdown, and counting and logging each exchange.

Like :class:`~threadloom.engine.http1_core.HTTP1Core` it never reads a clock (``now`` is an
argument) and never touches a socket: what it wants sent is :meth:`H2Core.output`. It is
not thread-safe: a driver whose streams run on several threads holds one lock around it.

The contract, from a driver's side::

    core = H2Core(settings, now, addr)          # our SETTINGS wait in output()
    alive = core.feed(data, now)                # False: send output(), then close
    for stream in core.take_ready(): run the app for stream.request
    core.respond(stream, headers, body, end)    # or send_body(stream, data, end)
    core.consumed(stream, n)                    # the app took n body bytes
    core.finish(stream, status, sent, elapsed, now)  # counted, logged; freed once sent
    send(core.output())                         # after every call above
    on core.deadline() passing: core.expire(now), send output(), close

Exchanges run concurrently: a connection has up to ``max_streams`` of them in flight, each
with its own state here (:class:`H2Stream`), and one writer per connection sends what
:meth:`output` returns, in order.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from threadloom.engine.http1_core import HTTPSettings
from threadloom.protocols.http1 import Request
from threadloom.protocols.http2 import (
    Closed,
    DataIn,
    ErrorCodes,
    H2Limits,
    Opened,
    Reset,
    WindowOpened,
    new_connection,
    response_headers,
)
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")

#: Flood budgets, per connection and per FLOOD_WINDOW_S seconds: frames that carry no
#: request data (PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA, unknown types) ...
CONTROL_FRAMES_MAX = 1000
#: ... and streams reset before their exchange ended, by the peer (rapid reset,
#: CVE-2023-44487) or by us because of its frames (MadeYouReset, CVE-2025-8671).
RESETS_MAX = 200
FLOOD_WINDOW_S = 10.0
#: A sync app is handed its request once the body is complete, or once the bodies waiting
#: for their apps hold this much of the connection's receive window (65,535 octets, h2's
#: default, given back only as apps read): past it the peer could be left without the
#: window to finish any of them. HTTP/1.1's DISPATCH_BODY_BYTES (64 KiB) is more than the
#: whole window, and a body waiting for it waited forever. Half the window, because h2
#: holds back up to 1,024 given-back octets and padding costs window too.
HELD_BODY_MAX = 32 * 1024


class H2Stream:
    """One exchange on the connection: its request, and its response as it goes out."""

    __slots__ = (
        "began",
        "dispatched",
        "ended_out",
        "finished",
        "id",
        "out",
        "out_end",
        "queued",
        "request",
        "reset",
        "started",
        "unacked",
        "work",
    )

    def __init__(self, stream_id: int, request: Request) -> None:
        self.id = stream_id
        self.request = request
        self.dispatched = False  # handed to the app
        self.started = False  # response HEADERS framed
        self.out: deque[memoryview] = deque()  # response body waiting for window
        self.queued = 0  # bytes in out
        self.out_end = False  # the last body byte is in out (or was sent)
        self.ended_out = False  # END_STREAM framed
        self.finished = False  # the app is done with it (counted and logged)
        self.reset = False  # reset, by either side: nothing more goes out
        self.unacked = 0  # flow-controlled bytes received and not yet given back
        self.began = 0.0
        #: the driver's handle on the exchange (a thread's wake-up, a task)
        self.work: Any = None


class H2Core:
    """One HTTP/2 connection's rules (see the module docstring)."""

    def __init__(
        self, settings: HTTPSettings, now: float, addr: Any = None, websockets: bool = False
    ) -> None:
        self.settings = settings
        self.addr = addr
        limits = settings.limits
        self.conn = new_connection(
            H2Limits(
                max_streams=settings.h2_max_streams,
                max_header_list=limits.max_header_size,
                max_body=limits.max_body_size,
                connect_protocol=websockets,  # RFC 8441, where the driver runs them
                control_frames=(CONTROL_FRAMES_MAX, FLOOD_WINDOW_S),
            )
        )
        self.streams: dict[int, H2Stream] = {}
        self.ready: list[H2Stream] = []
        self.sending: dict[int, H2Stream] = {}  # streams whose body waits for window
        self.idle_since = now  # no stream open since then
        self.stalled_since: float | None = None  # output waiting for a window since then
        self.window_start = now
        self.window_resets = 0  # streams the peer reset, and refusals past the limit
        self.control_seen = 0  # the connection's control_frames at the window's start
        self.provoked_seen = 0  # and its provoked_resets
        self.ending = False  # GOAWAY sent or received: no new stream will be served
        self.why = ""  # why the connection ends, for the log
        self.served = 0
        self.now = now  # the latest time a call passed in (the idle clock starts there)

    # -- bytes in --------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> bool:
        """Frames from the peer (``b""``: its end of input). False when the connection is
        over: send :meth:`output` (a GOAWAY, maybe) and close once streams are done."""
        self.now = now
        if not data:
            self._lose_all()
            return False
        conn = self.conn
        if now - self.window_start >= FLOOD_WINDOW_S:  # a new flood window, before counting
            self.window_start = now
            self.window_resets = 0
            self.control_seen = conn.control_frames
            self.provoked_seen = conn.provoked_resets
        for event in conn.receive(data):
            kind = type(event)
            if kind is DataIn:
                self._data_in(event, now)  # type: ignore[arg-type]
            elif kind is Opened:
                self._opened(event, now)  # type: ignore[arg-type]
            elif kind is WindowOpened:
                self._pump_all(now)
            elif kind is Reset:
                self._reset(event.stream_id, event.by_peer)  # type: ignore[union-attr]
            elif kind is Closed:
                self.ending = True
                self.why = event.reason  # type: ignore[union-attr]
                if event.finishing:  # type: ignore[union-attr]
                    # the peer's graceful GOAWAY, and the core can still answer the streams
                    # opened before it (RFC 9113 6.8): those finish, newer ones are refused,
                    # and the connection closes once they are done (``done``)
                    continue
                # Otherwise nothing more can be sent (h2 closes on a GOAWAY it received
                # too): every stream is given up, so that its app's writes fail quietly.
                if not event.by_peer:  # type: ignore[union-attr]
                    log.info("HTTP/2 connection error from %s: %s", self.addr, self.why)
                self._lose_all()
                return False
        return self._within_budgets(now)

    def _opened(self, event: Opened, now: float) -> None:
        if self.ending or len(self.streams) >= self.settings.h2_max_streams:
            self._refuse(event.stream_id)
            return
        stream = H2Stream(event.stream_id, event.request)
        stream.began = now
        self.streams[stream.id] = stream
        if event.ended:
            stream.request.body.complete = True
        self._maybe_ready(stream)

    def _refuse(self, stream_id: int) -> None:
        """A stream opened past ``--h2-max-streams`` (a stream holds its place until its
        exchange ends, reset or not), or after a GOAWAY: RST_STREAM REFUSED_STREAM before any
        work, which a client may retry (RFC 9113 5.1.2, 8.7). Past the limit the refusal is
        a reset the peer's frames caused, counted against RESETS_MAX: a reset flood
        (CVE-2019-9514) opens streams past the limit over and over. Not when the peer has
        reset the stream itself in the same bytes (rapid reset): its reset is counted."""
        if not self.ending and self.conn.stream_open(stream_id):
            self.window_resets += 1
        self.conn.reset(stream_id, ErrorCodes.REFUSED_STREAM)

    def _data_in(self, event: DataIn, now: float) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.reset:
            self.conn.consumed(event.stream_id, event.flow)  # nobody reads it: give it back
            return
        body = stream.request.body
        if event.data:
            body.chunks.append(event.data)
            body.buffered += len(event.data)
            body.received += len(event.data)
            stream.unacked += event.flow
        elif event.flow:
            self.conn.consumed(stream.id, event.flow)  # padding only
        if event.ended:
            body.complete = True
        if (
            body.received > self.settings.limits.max_body_size
            and stream.request.method != "CONNECT"
        ):
            self._too_large(stream)
            return
        if not stream.dispatched:
            self._maybe_ready(stream)

    def _maybe_ready(self, stream: H2Stream) -> None:
        """HTTP/1.1's rule (``HTTP1Core._ready``), and one of HTTP/2's own: a body the peer
        cannot send more of until the app takes some (its window is spent) goes now."""
        body = stream.request.body
        if (
            self.settings.dispatch_at_once
            or stream.request.method == "CONNECT"  # a tunnel (RFC 8441): its body never ends
            or body.complete
            or stream.request.expect_continue
            or body.buffered >= HELD_BODY_MAX
        ):
            stream.dispatched = True
            self.ready.append(stream)
            return
        waiting = [s for s in self.streams.values() if not s.dispatched and s.unacked]
        if sum(s.unacked for s in waiting) >= HELD_BODY_MAX:
            for other in waiting:  # together they hold the window: each app takes its own
                other.dispatched = True
                self.ready.append(other)

    def _too_large(self, stream: H2Stream) -> None:
        """A body over --max-body-size: 413 if the app has not answered, and the stream
        is reset either way (the rest of the body is refused, the connection lives on)."""
        log.info("refused a request from %s with 413: body over --max-body-size", self.addr)
        body = stream.request.body
        body.chunks.clear()
        body.buffered = 0
        body.truncated = True
        if not stream.dispatched:
            STATS.request(413, 0.0)
            self.conn.send_headers(stream.id, [(b":status", b"413")], end=True)
            self._forget(stream)
        self.conn.reset(stream.id, ErrorCodes.CANCEL)
        stream.reset = True
        self.sending.pop(stream.id, None)

    def _reset(self, stream_id: int, by_peer: bool) -> None:
        """The stream was reset (by the peer, or by us because of its frames: those the
        connection counts already, in provoked_resets, so they are not counted twice)."""
        if by_peer:
            self.window_resets += 1
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.reset = True
        stream.request.body.truncated = True
        self.sending.pop(stream_id, None)
        if not stream.dispatched or stream.finished:
            self._forget(stream)

    def _lose_all(self) -> None:
        """The connection is gone: every stream's reader and writer must give up."""
        self.ending = True
        for stream in list(self.streams.values()):
            stream.reset = True
            stream.request.body.truncated = True
            if not stream.dispatched or stream.finished:
                self._forget(stream)
        self.sending.clear()

    def _within_budgets(self, now: float) -> bool:
        """Floods: more control frames or resets than a client needs, in a window of
        FLOOD_WINDOW_S seconds: GOAWAY ENHANCE_YOUR_CALM and close."""
        resets = self.window_resets + self.conn.provoked_resets - self.provoked_seen
        control = self.conn.control_frames - self.control_seen
        if resets <= RESETS_MAX and control <= CONTROL_FRAMES_MAX:
            return True
        what = "stream resets" if resets > RESETS_MAX else "control frames"
        self.why = f"too many {what} (a flood): GOAWAY ENHANCE_YOUR_CALM"
        log.warning("HTTP/2 peer %s sent %s", self.addr, self.why)
        STATS.flood()
        self.conn.going_away(ErrorCodes.ENHANCE_YOUR_CALM)
        self._lose_all()
        return False

    def take_ready(self) -> list[H2Stream]:
        """Streams whose request goes to the app now (each once). A stream reset before
        it was taken never reaches the app, and its state goes now: a peer that sends
        HEADERS and RST_STREAM together (rapid reset, CVE-2023-44487) costs no app call,
        nor does a stream of a connection that ended in the same bytes."""
        ready, self.ready = self.ready, []
        live = []
        for stream in ready:
            if stream.reset:
                self._forget(stream)
            else:
                live.append(stream)
        return live

    # -- the app's side --------------------------------------------------------------------

    def take_body(self, stream: H2Stream, size: int) -> bytes:
        """Up to ``size`` buffered body bytes (all for -1); the window they held is given
        back to the peer now, as the app consumes them, never before."""
        data = stream.request.body.take(size)
        if data and not stream.reset:
            give = (
                min(stream.unacked, len(data)) if stream.request.body.buffered else stream.unacked
            )
            stream.unacked -= give
            self.conn.consumed(stream.id, give)
        return data

    def continue_(self, stream: H2Stream) -> None:
        """``Expect: 100-continue``: the app waits for the body, so say it may come."""
        if stream.request.expect_continue and not stream.started and not stream.reset:
            stream.request.expect_continue = False
            self.conn.send_headers(stream.id, [(b":status", b"100")], end=False)

    def respond(
        self,
        stream: H2Stream,
        headers: list[tuple[bytes, bytes]],
        body: bytes | memoryview = b"",
        end: bool = True,
        now: float = 0.0,
    ) -> bool:
        """The response's HEADERS, and its first body bytes; False if the stream is gone."""
        if stream.reset:
            return False
        self.now = now
        stream.started = True
        conn = self.conn
        if end and (not body or len(body) <= conn.window(stream.id)):
            # a whole response the windows take (the usual small one): framed now, with
            # nothing queued on the stream
            conn.send_headers(stream.id, headers, end=not body)
            if body:
                conn.send_data(stream.id, body, True)
            stream.out_end = stream.ended_out = True
            return True
        conn.send_headers(stream.id, headers, end=False)
        return self.send_body(stream, body, end, now)

    def send_body(self, stream: H2Stream, data: bytes | memoryview, end: bool, now: float) -> bool:
        """More of the response (never copied here: DATA frames are cut from it as the
        windows allow); False if the stream is gone."""
        if stream.reset:
            return False
        if data:
            stream.out.append(memoryview(data))
            stream.queued += len(data)
        stream.out_end = end
        self._pump(stream, now)
        return True

    def queued(self, stream: H2Stream) -> int:
        """Response bytes of ``stream`` waiting for the peer's window."""
        return stream.queued

    def _pump(self, stream: H2Stream, now: float) -> None:
        conn, out = self.conn, stream.out
        while out:
            window = conn.window(stream.id)
            if window <= 0:
                self.sending[stream.id] = stream
                if self.stalled_since is None:
                    self.stalled_since = now
                return
            first = out[0]
            if len(first) <= window:
                out.popleft()
                piece = first
            else:
                piece, out[0] = first[:window], first[window:]
            stream.queued -= len(piece)
            last = not out and stream.out_end
            conn.send_data(stream.id, piece, last)
            stream.ended_out = last
        self.sending.pop(stream.id, None)
        if stream.out_end and not stream.ended_out:
            conn.end(stream.id)
            stream.ended_out = True
        if stream.ended_out and stream.finished:
            self._forget(stream)

    def _pump_all(self, now: float) -> None:
        self.stalled_since = None
        for stream in list(self.sending.values()):
            self._pump(stream, now)

    def fail(self, stream: H2Stream) -> None:
        """The app failed after its response began: the stream is reset (INTERNAL_ERROR),
        which tells the client the response is incomplete; the connection lives on."""
        if not stream.reset:
            stream.reset = True
            self.conn.reset(stream.id, ErrorCodes.INTERNAL_ERROR)
        self.sending.pop(stream.id, None)

    def overloaded(self, stream: H2Stream, now: float) -> None:
        """The model has no room for ``stream``'s exchange: 503 with ``Retry-After`` at
        once (the driver then finishes the stream); the connection's other streams go on."""
        self.respond(stream, response_headers(503, [("retry-after", "1")], 0), b"", True, now)

    def finish(
        self,
        stream: H2Stream,
        status: int,
        sent: int,
        elapsed: float,
        now: float,
        remote: Any = None,
        request_id: str | None = None,
    ) -> None:
        """The app is done with ``stream``: count and log it; its state goes once the
        last byte is framed."""
        self.now = now
        stream.finished = True
        self.served += 1
        STATS.request(status, elapsed)
        access_log = self.settings.access_log
        if access_log.enabled and access_log.active():
            access_log.write(stream.request, remote or self.addr, status, sent, elapsed, request_id)
        if stream.reset or stream.ended_out:
            self._forget(stream)

    def _forget(self, stream: H2Stream) -> None:
        if self.streams.pop(stream.id, None) is not None:
            if stream.unacked:  # body the app never read: the connection's window back
                self.conn.consumed(stream.id, stream.unacked)
                stream.unacked = 0
            self.sending.pop(stream.id, None)
        if not self.streams:
            self.idle_since = self.now

    # -- the connection ------------------------------------------------------------------

    def output(self) -> bytes:
        """Frames to send, in order (after every call that may have made some)."""
        return self.conn.data_to_send()

    def deadline(self) -> float | None:
        """When :meth:`expire` is due: a window shut for ``--timeout-io`` while output
        waits for it, or ``--timeout-keep-alive`` with no stream open."""
        if self.sending and self.stalled_since is not None:
            return self.stalled_since + self.settings.timeout_io
        if self.streams:
            return None
        return self.idle_since + self.settings.timeout_keep_alive

    def expire(self, now: float) -> None:
        """The deadline passed: GOAWAY (NO_ERROR when idle), every stream given up."""
        self.now = now
        if self.sending and self.stalled_since is not None:
            self.why = "its flow-control windows stayed shut for --timeout-io"
            log.info("HTTP/2 peer %s dropped: %s", self.addr, self.why)
            STATS.slow_reader()
            self.conn.going_away(ErrorCodes.FLOW_CONTROL_ERROR)
        else:
            self.conn.going_away(ErrorCodes.NO_ERROR)
        self._lose_all()

    def going_away(self) -> None:
        """The server is stopping: GOAWAY with the last stream taken; those finish."""
        self.ending = True
        self.conn.going_away(ErrorCodes.NO_ERROR)

    @property
    def idle(self) -> bool:
        """No stream in flight: closing loses nothing."""
        return not self.streams

    @property
    def done(self) -> bool:
        """GOAWAY went either way and every stream is over: close once output is sent."""
        return self.ending and not self.streams
