"""One HTTP/2 server connection, sans I/O, on ``ngh2`` (libnghttp2): the same seam as
:mod:`~threadloom.protocols.http2.connection`, which is on ``h2``.

Why a second core
-----------------
``ngh2`` is a thin binding over libnghttp2 (the HTTP/2 engine of curl and Apache httpd):
framing, HPACK, stream states, flow control and most request checks run in C, 20-40 times
faster than ``h2`` (BENCHMARKS.md, "Choosing the HTTP/2 core"). :class:`Ngh2Connection`
has :class:`~threadloom.protocols.http2.connection.H2Connection`'s methods, counters and
events exactly, so :mod:`threadloom.engine.h2_core` drives either one;
:func:`threadloom.protocols.http2.new_connection` picks (``THREADLOOM_H2_CORE``).

What nghttp2 does differently, and how this seam makes it answer as the h2 one does
-------------------------------------------------------------------------------------
* **The stream limit.** nghttp2 enforces the ``MAX_CONCURRENT_STREAMS`` it sends itself:
  as a connection error (GOAWAY PROTOCOL_ERROR) once the peer has acknowledged it, and
  before that by refusing streams (RST_STREAM REFUSED_STREAM) with no event to say so, so
  that nobody would count those resets (a reset flood from a client that never
  acknowledges, CVE-2019-9514). So it is given no limit, and the SETTINGS frame it would
  send is replaced by ours with the real one: every stream reaches the engine, which
  refuses those past the limit (``REFUSED_STREAM``, a stream error a client may retry)
  and counts each against its reset budget.
* **Its own resets.** A malformed request (RFC 9113 8.1.1), or ``content-length`` that
  disagrees with the DATA, is a stream error here (RST_STREAM PROTOCOL_ERROR: h2 makes it
  a connection error). nghttp2 reports such a stream only as closed with an error code,
  once the RST_STREAM is written; :meth:`receive` therefore writes what nghttp2 queued at
  once (kept in order ahead of what comes next) and turns those closes into
  :class:`Reset` (``by_peer`` False) and :attr:`provoked_resets`.
* **``Host`` against ``:authority``.** nghttp2 accepts a ``host`` that disagrees; this
  seam refuses the stream (RST_STREAM PROTOCOL_ERROR, counted as provoked).
* **Floods and errors that kill the session.** On some input (an oversized header list, an
  HPACK bomb, a CONTINUATION flood, more acks queued than ``max_outbound_ack``, a bad
  preface) ngh2 raises and the session is unusable: it writes nothing more, not even a
  GOAWAY. This seam then writes the GOAWAY itself (ENHANCE_YOUR_CALM for
  ``DenialOfServiceError``, PROTOCOL_ERROR otherwise) with the last stream seen.
  nghttp2's rapid-reset bucket would answer with GOAWAY INTERNAL_ERROR: it is set out of
  reach, so the engine's reset budget (ENHANCE_YOUR_CALM) decides. PRIORITY frames reach
  no event: nghttp2's glitch limit, set to the engine's control-frame budget (1,000 per
  10 s), answers a PRIORITY or empty-frame flood with GOAWAY ENHANCE_YOUR_CALM.
* **Windows.** Automatic WINDOW_UPDATEs are off: a body's window is given back only by
  :meth:`consumed`. Padding nghttp2 gives back itself, so ``DataIn.flow`` is the data's
  length. Body bytes passed to ``send_data`` wait in ngh2's queue until written, and the
  window is charged only then: :meth:`window` takes what is queued off.
* **A graceful GOAWAY** (NO_ERROR) is written by this seam, not submitted to nghttp2,
  which would then drop newer streams silently: as with h2, they reach the engine, which
  refuses them, while the streams in flight finish. The peer's graceful GOAWAY lets the
  streams it opened before it finish too (``Closed.finishing``): nghttp2 still sends on
  them (h2 does not).
* **Cookies** split over several fields (RFC 9113 8.2.3) are joined with ``"; "``, last,
  as h2 does.
* **Two MUSTs nghttp2 lets through**, kept by reading the frame headers on their way in
  (:meth:`_scan`, a few operations a frame; payloads are skipped): a PRIORITY frame on
  stream 0 is a connection error PROTOCOL_ERROR (RFC 9113 6.3; nghttp2 ignores PRIORITY
  frames), and so is a HEADERS frame on a stream id the peer skipped (5.1.1: a new
  stream's id must be above every one before it; nghttp2 ignores HEADERS on any stream id
  it no longer knows, which 5.1 allows for a stream that was open once, not for one that
  never was). The frames before the offending one are processed, nothing after it.
"""

from __future__ import annotations

import struct
from typing import Any

import ngh2

from threadloom.protocols.http2.connection import (
    PREFACE,
    WINDOW_UPDATE_USEFUL,
    Closed,
    DataIn,
    ErrorCodes,
    H2Limits,
    Opened,
    Reset,
    WindowOpened,
)
from threadloom.protocols.http2.request import request_from_fields

__all__ = ["Ngh2Connection"]

Event = Opened | DataIn | Reset | WindowOpened | Closed

#: a stream's flags in :attr:`Ngh2Connection._streams`: handed to the engine (Opened),
#: reset by us, reset by the peer
_GIVEN, _OURS, _PEER = 1, 2, 4

_REQUEST = ngh2.RequestReceived
_DATA = ngh2.DataReceived
_CLOSED = ngh2.StreamClosed
_RESET = ngh2.StreamReset
_WINDOW = ngh2.WindowUpdated
_TRAILERS = ngh2.TrailersReceived
_SETTINGS = ngh2.SettingsReceived
_GOAWAY = ngh2.GoAwayReceived
_OVER = ngh2.ConnectionClosed
_INITIAL_WINDOW = int(ngh2.Setting.INITIAL_WINDOW_SIZE)

#: a frame header: length and type, flags, stream id (RFC 9113 4.1)
_HEADER = struct.Struct(">IBI")
#: the ranges of stream ids the peer skipped that are remembered (the oldest go first)
_SKIPPED_KEPT = 32

#: nghttp2's rapid-reset bucket, out of reach of one read: the engine's budget answers.
_RESETS = (1 << 32, 1 << 32)

_GONE = (ngh2.StreamUnavailableError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError)


def _frame(kind: int, payload: bytes, stream_id: int = 0) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, 0)) + stream_id.to_bytes(4, "big") + payload
    )


def _goaway(last_stream_id: int, code: int) -> bytes:
    return _frame(7, last_stream_id.to_bytes(4, "big") + int(code).to_bytes(4, "big"))


class Ngh2Connection:
    """One server connection on ngh2; the interface and events of
    :class:`~threadloom.protocols.http2.connection.H2Connection`. Not thread-safe: the
    engine holds the connection's lock around every call."""

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        config = ngh2.Configuration(
            auto_window_update=False,
            max_inbound_header_list_size=limits.max_header_list,
            stream_reset_rate_limit=_RESETS,
            glitch_rate_limit=_glitches(limits),
        )
        core = self.core = ngh2.Connection(ngh2.Role.SERVER, config)
        advertised = {
            ngh2.Setting.MAX_CONCURRENT_STREAMS: limits.max_streams,
            ngh2.Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list,
            ngh2.Setting.ENABLE_PUSH: 0,
        }
        if limits.connect_protocol:
            advertised[ngh2.Setting.ENABLE_CONNECT_PROTOCOL] = 1
        enforced = dict(advertised)
        del enforced[ngh2.Setting.MAX_CONCURRENT_STREAMS]  # (the engine's: see above)
        core.initiate_connection(enforced)
        core.data_to_send()  # nghttp2's SETTINGS, without the limit: ours goes instead
        #: bytes to write ahead of what nghttp2 has queued since
        self._out = _frame(4, ngh2.pack_settings_payload(advertised))
        #: frames carrying no request data the peer sent, and resets its frames caused
        self.control_frames = 0
        self.window_credit = 0  # WINDOW_UPDATEs due for our DATA frames: not counted
        self.provoked_resets = 0
        self.closed = False  # a GOAWAY went either way
        self._dead = False  # ngh2 raised: the session writes nothing more
        self._last = 0  # the highest stream id the peer opened
        #: streams nghttp2 holds open: their _GIVEN/_OURS/_PEER flags
        self._streams: dict[int, int] = {}
        #: the frame scan (_scan): octets of the current frame (first, the preface) still
        #: to come, the start of a frame header the last read cut, the stream id the peer's
        #: next new stream would have in order, and the ranges of ids it skipped
        self._skip = len(PREFACE)
        self._head = b""
        self._next = 1
        self._skipped: list[tuple[int, int]] = []

    # -- bytes in ------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; the events they make (as H2Connection's)."""
        if self._dead:
            return []
        stop = self._scan(data)
        if stop is None:
            return self._receive(data)
        at, reason = stop
        events = self._receive(data[:at]) if at else []
        if not self.closed:
            events.append(self._connection_error(reason))
        return events

    def _scan(self, data: bytes) -> tuple[int, str] | None:
        """Read the frame headers in ``data`` (see the module docstring): where the first
        frame nghttp2 would let through wrongly starts (0 if it began in an earlier read)
        and why it is a connection error, or None."""
        size = len(data)
        at = self._skip
        if self._head:  # a frame header the last read cut
            cut = self._head
            need = 9 - len(cut)
            if size < need:
                self._head = cut + data
                return None
            self._head = b""
            word, _, stream_id = _HEADER.unpack(cut + data[:need])
            at = need + (word >> 8)
            if (word & 0xFF) in (1, 2) and (why := self._check(word & 0xFF, stream_id)):
                return 0, why
        unpack = _HEADER.unpack_from
        while at + 9 <= size:
            word, _, stream_id = unpack(data, at)
            kind = word & 0xFF
            if kind == 1 and stream_id == self._next:
                self._next += 2  # a new stream, the next in order: the usual case
            elif kind in (1, 2) and (why := self._check(kind, stream_id)):
                return at, why
            at += 9 + (word >> 8)
        if at < size:
            self._head, self._skip = data[at:], 0
        else:
            self._skip = at - size
        return None

    def _check(self, kind: int, stream_id: int) -> str:
        """A HEADERS (``kind`` 1) or PRIORITY (2) frame's stream id: why it is a connection
        error, or ``""``; the ids skipped are kept (the newest ``_SKIPPED_KEPT`` ranges)."""
        stream_id &= 0x7FFFFFFF
        if kind == 2:
            return "" if stream_id else "PRIORITY on stream 0 (RFC 9113 6.3)"
        if stream_id >= self._next:
            if stream_id & 1:  # (an even one is nghttp2's connection error)
                if stream_id > self._next:
                    self._skipped.append((self._next, stream_id - 2))
                    del self._skipped[:-_SKIPPED_KEPT]
                self._next = stream_id + 2
        elif any(first <= stream_id <= last for first, last in self._skipped):
            return f"HEADERS on stream {stream_id}, which the peer skipped (RFC 9113 5.1.1)"
        return ""

    def _connection_error(self, reason: str) -> Closed:
        """A connection error of the peer's that nghttp2 lets through (:meth:`_scan`):
        GOAWAY PROTOCOL_ERROR after what nghttp2 has queued; nothing more is read or sent."""
        try:
            self._out += self.core.data_to_send()
        except ngh2.NGH2Error:
            pass
        self._dead = self.closed = True
        self._out += _goaway(self._last, ErrorCodes.PROTOCOL_ERROR)
        return Closed(int(ErrorCodes.PROTOCOL_ERROR), False, reason)

    def _receive(self, data: bytes) -> list[Event]:
        core = self.core
        try:
            core.receive_data(data)
            raw: list[Any] = core.events()
            if core.want_write:
                # acks, nghttp2's own RST_STREAMs or GOAWAY: written now, so that the
                # streams they close and the connection's end come back as events
                self._out += core.data_to_send()
                raw += core.events()
        except ngh2.NGH2Error as exc:
            return [self._failed(exc)]
        events: list[Event] = []
        streams = self._streams
        for event in raw:
            kind = type(event)
            if kind is _REQUEST:
                self._opened(event, events)
            elif kind is _DATA:
                body = event.data
                if body or event.end_stream:
                    events.append(DataIn(event.stream_id, body, len(body), event.end_stream))
                else:
                    self.control_frames += 1  # an empty DATA frame: nothing for anyone
            elif kind is _CLOSED:
                self._stream_closed(event, events)
            elif kind is _RESET:
                self.control_frames += 1
                stream_id = event.stream_id
                if stream_id in streams:
                    streams[stream_id] |= _PEER
                events.append(Reset(stream_id, int(event.error_code), True))
            elif kind is _WINDOW:
                if self.window_credit:  # (the same rules as h2's seam)
                    self.window_credit -= 1
                elif event.increment < WINDOW_UPDATE_USEFUL:
                    self.control_frames += 1
                events.append(WindowOpened(event.stream_id))
            elif kind is _TRAILERS:
                events.append(DataIn(event.stream_id, b"", 0, True))  # none kept
            elif kind is _GOAWAY:  # (nghttp2 still sends on the streams opened before it)
                self.closed = True
                code = int(event.error_code)
                events.append(Closed(code, True, "GOAWAY from the peer", finishing=not code))
            elif kind is _OVER:
                if not self.closed:  # nghttp2 ended it: its GOAWAY went out
                    self.closed = True
                    reason = bytes(event.debug_data).decode("latin-1") or "connection error"
                    events.append(Closed(int(event.error_code), False, reason))
            else:  # PING, SETTINGS, SETTINGS ack, PRIORITY_UPDATE
                self.control_frames += 1
                if kind is _SETTINGS and _INITIAL_WINDOW in event.settings:
                    events.append(WindowOpened(0))  # every stream's window may have grown
        return events

    def _opened(self, event: Any, events: list[Event]) -> None:
        stream_id = event.stream_id
        self._last = stream_id
        request = request_from_fields(event.headers)
        if request is None:  # host disagrees with :authority: malformed (RFC 9113 8.3.1)
            self.provoked_resets += 1
            self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        self._streams[stream_id] = _GIVEN
        events.append(Opened(stream_id, request, event.end_stream))

    def _refuse(self, stream_id: int, code: int) -> None:
        self._streams[stream_id] = _OURS
        try:
            self.core.reset_stream(stream_id, code)
        except ngh2.NGH2Error:
            pass  # nghttp2 is ending the connection (its GOAWAY is queued)

    def _stream_closed(self, event: Any, events: list[Event]) -> None:
        stream_id = event.stream_id
        flags = self._streams.pop(stream_id, 0)
        # (a malformed request nghttp2 reset before we saw it counts as seen)
        self._last = max(self._last, stream_id)
        code = event.error_code
        if code and not flags & (_OURS | _PEER):  # nghttp2 reset it: the peer's frames did
            self.provoked_resets += 1
            if flags & _GIVEN:
                events.append(Reset(stream_id, int(code), False))

    def _failed(self, exc: Exception) -> Closed:
        """ngh2 gave up on the session: our GOAWAY goes out in its place."""
        self._dead = self.closed = True
        if isinstance(exc, ngh2.DenialOfServiceError):
            code = ErrorCodes.ENHANCE_YOUR_CALM
        elif isinstance(exc, ngh2.ProtocolError):
            code = ErrorCodes.PROTOCOL_ERROR
        else:
            code = ErrorCodes.INTERNAL_ERROR
        self._out += _goaway(self._last, code)
        return Closed(int(code), False, str(exc) or type(exc).__name__)

    # -- bytes out -------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if self._dead:
            return
        try:
            if headers[0][1][:1] == b"1" and headers[0][0] == b":status":
                self.core.send_informational_response(stream_id, headers)
            else:
                self.core.send_response(stream_id, headers, end_stream=end)
        except _GONE:
            pass  # reset, or the connection is over: nothing more goes out

    def window(self, stream_id: int) -> int:
        """How many body bytes may go out on the stream now: the smaller of its window and
        the connection's, less what waits in ngh2's queue (nghttp2 cuts the frames)."""
        if self._dead:
            return 0
        core = self.core
        try:
            stream = core.stream_remote_window_size(stream_id) - core.queued_body_size(stream_id)
        except ngh2.NGH2Error:
            return 0
        return min(stream, core.remote_window_size - core.queued_body_size())

    def peer_window(self, stream_id: int) -> int:
        """How many more body bytes the peer may send on the stream before we give back
        what it sent (the smaller of the stream's and the connection's windows)."""
        if self._dead:
            return 0
        core = self.core
        try:
            return min(core.stream_local_window_size(stream_id), core.local_window_size)
        except ngh2.NGH2Error:
            return 0

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """Body bytes; ``data`` must fit :meth:`window`."""
        if self._dead:
            return
        try:
            self.core.send_data(stream_id, data, end_stream=end)
        except _GONE:
            return
        if data:
            self.window_credit += 2  # the peer may give its window back: stream, connection

    def end(self, stream_id: int) -> None:
        if self._dead:
            return
        try:
            self.core.end_stream(stream_id)
        except _GONE:
            pass

    def reset(self, stream_id: int, code: int) -> None:
        """Reset a stream (an app that failed mid-response: INTERNAL_ERROR)."""
        if self._dead:
            return
        flags = self._streams.get(stream_id)
        if flags is None:
            return  # closed already (the peer reset it first)
        self._streams[stream_id] = flags | _OURS
        try:
            self.core.reset_stream(stream_id, code)
        except ngh2.NGH2Error:
            pass  # the connection is over: nothing more goes out

    def consumed(self, stream_id: int, flow: int) -> None:
        """The app took ``flow`` body bytes: the peer may send as many more."""
        if flow and not self._dead:
            try:
                self.core.acknowledge_received_data(flow, stream_id)
            except (ngh2.NGH2Error, ValueError):
                pass  # the connection is over, or nghttp2 gave it back itself

    def going_away(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY naming the last stream we took: nothing newer will be served.

        An error ends the connection at once (nghttp2 writes its GOAWAY and nothing after).
        A graceful GOAWAY (NO_ERROR, the server is stopping) lets the streams in flight
        finish: the frame is written here, after what nghttp2 has queued, and newer streams
        still reach the engine, which refuses them."""
        if self.closed:
            return
        self.closed = True
        if self._dead:
            return
        core = self.core
        if code != ErrorCodes.NO_ERROR:
            try:
                core.terminate_connection(int(code), last_stream_id=self._last)
            except ngh2.NGH2Error:
                pass
            return
        try:
            self._out += core.data_to_send()
        except ngh2.NGH2Error:
            pass
        self._out += _goaway(self._last, code)

    def stream_open(self, stream_id: int) -> bool:
        """Can we still send on the stream (not reset, not closed)?"""
        flags = self._streams.get(stream_id)
        return flags is not None and not flags & (_OURS | _PEER) and not self._dead

    def data_to_send(self) -> bytes:
        """What to write, in order; asking nghttp2 only when it has something (the
        engine asks after every call, and most calls frame nothing)."""
        out = self._out
        if not self._dead:
            try:
                more = self.core.data_to_send() if self.core.want_write else b""
            except ngh2.NGH2Error:
                more = b""
            if not out:
                return more
            out += more
        self._out = b""
        return out


def _glitches(limits: H2Limits) -> tuple[int, int]:
    """nghttp2's glitch limit as a token bucket (burst, refill per second) holding the
    engine's control-frame budget (``limits.control_frames``: frames per seconds)."""
    frames, seconds = limits.control_frames
    return frames, max(1, round(frames / seconds))
