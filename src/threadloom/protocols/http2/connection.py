"""One HTTP/2 server connection, sans I/O: h2 behind a seam of threadloom's own events.

Theory of operation
-------------------
:meth:`H2Connection.receive` takes bytes and returns a list of events:

* :class:`Opened` -- a request's header block, as a
  :class:`~threadloom.protocols.http1.Request` (``http_version`` ``"2"``, a ``host``
  field made from ``:authority`` when the client sent none, ``upgrade`` set to the
  ``:protocol`` of an extended CONNECT, RFC 8441);
* :class:`DataIn` -- body bytes for a stream (``flow`` is what they cost the window: give
  it back with :meth:`H2Connection.consumed` once the app has taken them, never before);
* :class:`Reset` -- the peer reset a stream, or made us reset it (a frame not allowed in
  the stream's state: ``by_peer`` is False then);
* :class:`WindowOpened` -- the peer opened a window (stream 0: the connection's);
* :class:`Closed` -- the connection is over: the peer's GOAWAY, or a connection error of
  the peer's, for which a GOAWAY with ``code`` is already queued. After a graceful GOAWAY
  of the peer's, a core that can still send says so (``finishing``): the streams opened
  before it may still be answered (RFC 9113 6.8).

What h2 leaves to its user and this module adds:

* The stream limit. We advertise ``max_streams``; h2 enforces twice as many, past which
  a new stream is a connection error. Between the two the engine refuses each extra
  stream with ``REFUSED_STREAM`` (RFC 9113 5.1.2 allows it, and a client may retry).
* :attr:`H2Connection.control_frames`: how many frames that carry no request data the peer
  has sent (PING, SETTINGS, PRIORITY, RST_STREAM, WINDOW_UPDATE, unknown types, empty DATA),
  and :attr:`H2Connection.provoked_resets`: how many RST_STREAMs its frames made us send.
  A WINDOW_UPDATE that gives back the window of a DATA frame we sent is not counted: up to
  two per DATA frame (the stream's and the connection's) are the peer's due, and a proxy
  such as HAProxy sends about one per response on a busy upstream connection.
  The engine weighs them against time (floods: CVE-2019-9512/-9514/-9515/-9516/-9518,
  CVE-2023-44487, CVE-2025-8671); a protocol core has no clock.

* Three rules h2 gets wrong, put right here: the client's preface must go on with a
  SETTINGS frame (RFC 9113 3.4; h2 takes any frame), an HPACK decoding error is
  COMPRESSION_ERROR (4.3; h2 says PROTOCOL_ERROR), and a new
  SETTINGS_INITIAL_WINDOW_SIZE opens the peer's windows (6.9.2) as a WINDOW_UPDATE does,
  so it is a :class:`WindowOpened` too (h2 reports it only as a settings change).

h2 itself checks the frames, HPACK (the decoded header list is bounded by
``max_header_list``: CVE-2016-6581), CONTINUATION backlogs (64 frames: CVE-2024-27316),
pseudo-headers (present, known, once, first), lower-case and connection-specific names,
``:authority`` against ``Host``, and ``content-length`` against the DATA received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from threadloom.protocols.http1 import Request
from threadloom.protocols.http2.request import request_from_fields

__all__ = [
    "PREFACE",
    "Closed",
    "DataIn",
    "ErrorCodes",
    "H2Connection",
    "H2Limits",
    "Opened",
    "Reset",
    "WindowOpened",
    "looks_like_preface",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: the preface and the header of the frame after it, which must be a SETTINGS (no ACK)
_OPENING = len(PREFACE) + 9


def looks_like_preface(data: bytes) -> bool | None:
    """True if ``data`` opens with the client preface, False if it cannot, None if too
    short to say (a prefix of it)."""
    size = min(len(data), len(PREFACE))
    if data[:size] != PREFACE[:size]:
        return False
    return True if len(data) >= len(PREFACE) else None


@dataclass(frozen=True)
class H2Limits:
    """What one connection may cost; see DESIGN.md's defaults that protect the server."""

    #: streams in flight per connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    max_streams: int = 100
    #: the decoded header list of one request, in bytes (--max-header-size)
    max_header_list: int = 64 * 1024
    #: the body of one request (--max-body-size)
    max_body: int = 1024**3
    #: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): offer WebSockets over HTTP/2
    connect_protocol: bool = False
    #: the engine's control-frame budget (frames per seconds), for a core that keeps one
    #: of its own (ngh2's glitch limit); the engine decides it (engine/h2_core.py)
    control_frames: tuple[int, float] = (1000, 10.0)


class Opened:
    __slots__ = ("ended", "request", "stream_id")

    def __init__(self, stream_id: int, request: Request, ended: bool) -> None:
        self.stream_id = stream_id
        self.request = request
        self.ended = ended


class DataIn:
    __slots__ = ("data", "ended", "flow", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow: int, ended: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow = flow
        self.ended = ended


class Reset:
    __slots__ = ("by_peer", "code", "stream_id")

    def __init__(self, stream_id: int, code: int, by_peer: bool) -> None:
        self.stream_id = stream_id
        self.code = code
        self.by_peer = by_peer


class WindowOpened:
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class Closed:
    __slots__ = ("by_peer", "code", "finishing", "reason")

    def __init__(self, code: int, by_peer: bool, reason: str, finishing: bool = False) -> None:
        self.code = code
        self.by_peer = by_peer
        self.reason = reason
        #: the peer's graceful GOAWAY, and the core can still answer the streams it opened
        #: before it (RFC 9113 6.8): no new stream is taken, those finish (ngh2 only: h2
        #: sends nothing after a GOAWAY it received)
        self.finishing = finishing


class FrameSeen:
    """Not an event: the kinds counted in :attr:`H2Connection.control_frames`."""

    KINDS = (
        h2.events.PingReceived,
        h2.events.RemoteSettingsChanged,
        h2.events.SettingsAcknowledged,
        h2.events.PriorityUpdated,
        h2.events.UnknownFrameReceived,
        h2.events.WindowUpdated,
        h2.events.StreamReset,
    )


Event = Opened | DataIn | Reset | WindowOpened | Closed


class _Settings(h2.settings.Settings):
    """Our local settings: the stream limit h2 enforces as a connection error is twice the
    one we advertise, so that between the two we answer REFUSED_STREAM (a stream error)."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2 * int(self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS])

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value


class CompressionError(h2.exceptions.ProtocolError):
    """A header block HPACK cannot decode: a connection error COMPRESSION_ERROR (RFC 9113
    4.3). h2 turns HPACK's errors into PROTOCOL_ERROR; it lets its own ProtocolErrors
    through with their code, so :class:`_Decoder` raises this one instead."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class _Decoder(hpack.Decoder):
    def decode(self, data: bytes, raw: bool = False) -> Any:
        try:
            return super().decode(data, raw)
        except hpack.OversizedHeaderListError:
            raise  # h2 makes it a DenialOfServiceError (an HPACK bomb), rightly
        except hpack.HPACKError as exc:
            raise CompressionError(f"Error decoding header block: {exc}") from exc


class _Core(h2.connection.H2Connection):
    """h2's connection, counting the RST_STREAM frames it queues."""

    resets_queued = 0

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        for frame in frames:
            if type(frame) is RstStreamFrame:
                self.resets_queued += 1
        super()._prepare_for_sending(frames)


_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=True,
    # response_headers() builds valid, lower-case lists: checking them twice costs time
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class H2Connection:
    """One server connection (see the module docstring). Not thread-safe: the engine
    holds the connection's lock around every call."""

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        core = self.core = _Core(_CONFIG)
        settings = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        }
        if limits.connect_protocol:
            settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        core.local_settings = _Settings(client=False, initial_values=settings)
        core.decoder = _Decoder()
        core.decoder.max_header_list_size = limits.max_header_list
        core.initiate_connection()
        #: frames carrying no request data the peer sent, and resets its frames caused
        self.control_frames = 0
        self.provoked_resets = 0
        #: WINDOW_UPDATEs the peer may send for our DATA frames without being counted
        self.window_credit = 0
        self.closed = False
        #: the connection's first bytes, until the frame after the preface is known
        self.opening: bytes | None = b""

    # -- bytes in ------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; the events they make (see the module docstring)."""
        core = self.core
        before = core.resets_queued
        try:
            if self.opening is not None:
                self._check_opening(data)
            raw: list[Any] = core.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # h2 has queued the GOAWAY
            self.closed = True
            return [Closed(int(exc.error_code), False, str(exc) or type(exc).__name__)]
        self.provoked_resets += core.resets_queued - before
        events: list[Event] = []
        for event in raw:
            kind = type(event)
            if kind is h2.events.DataReceived:
                if not event.flow_controlled_length and not event.stream_ended:
                    self.control_frames += 1  # an empty DATA frame: nothing for anyone
                events.append(
                    DataIn(
                        event.stream_id,
                        event.data,
                        event.flow_controlled_length,
                        event.stream_ended is not None,
                    )
                )
            elif kind is h2.events.RequestReceived:
                if event.priority_updated is not None:
                    event.priority_updated.with_headers = True  # (see _expected)
                self._opened(event, events)
            elif kind is h2.events.StreamEnded:
                events.append(DataIn(event.stream_id, b"", 0, True))
            elif kind is h2.events.TrailersReceived:
                continue  # trailers: the body has ended (StreamEnded follows); none kept
            elif kind is h2.events.ConnectionTerminated:
                self.closed = True
                events.append(Closed(int(event.error_code or 0), True, "GOAWAY from the peer"))
            else:
                if kind is h2.events.WindowUpdated and self.window_credit:
                    self.window_credit -= 1  # it gives back the window of DATA we sent
                elif kind in FrameSeen.KINDS and not _expected(event, kind):
                    self.control_frames += 1
                if kind is h2.events.StreamReset:
                    events.append(
                        Reset(event.stream_id, int(event.error_code), bool(event.remote_reset))
                    )
                elif kind is h2.events.WindowUpdated:
                    events.append(WindowOpened(event.stream_id))
                elif (
                    kind is h2.events.RemoteSettingsChanged
                    and h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings
                ):
                    events.append(WindowOpened(0))  # every stream's window moved
        return events

    def _check_opening(self, data: bytes) -> None:
        """RFC 9113 3.4: the preface is followed by a SETTINGS frame (h2 checks the preface
        but takes any frame after it). Else a connection error PROTOCOL_ERROR."""
        opening = self.opening = (self.opening or b"") + data[:_OPENING]
        if len(opening) < _OPENING:
            return
        self.opening = None
        kind, flags = opening[len(PREFACE) + 3], opening[len(PREFACE) + 4]
        if kind != 0x4 or flags & 0x1:  # SETTINGS, without ACK
            self.core.close_connection(ErrorCodes.PROTOCOL_ERROR)
            raise h2.exceptions.ProtocolError("the preface is not followed by SETTINGS")

    def _opened(self, event: Any, events: list[Event]) -> None:
        stream_id = event.stream_id
        request = request_from_fields(event.headers)
        if request is None:  # (h2 refuses such host fields before this: never, in practice)
            # The events of one receive() come after all its frames: a later frame in the
            # same bytes may have closed the stream already, and reset_stream() would raise.
            if self.stream_open(stream_id):
                self.provoked_resets += 1
                self.core.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        events.append(Opened(stream_id, request, event.stream_ended is not None))

    # -- bytes out -------------------------------------------------------------------------

    @property
    def over(self) -> bool:
        """The connection ended in an error: h2 sends nothing more (its GOAWAY went)."""
        return self.core.state_machine.state == h2.connection.ConnectionState.CLOSED

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if not self.over:
            self.core.send_headers(stream_id, headers, end_stream=end)

    def window(self, stream_id: int) -> int:
        """How many body bytes may go out on the stream now (flow control and frame size)."""
        core = self.core
        return min(core.local_flow_control_window(stream_id), core.max_outbound_frame_size)

    def peer_window(self, stream_id: int) -> int:
        """How many more body bytes the peer may send on the stream before we give back
        what it sent (the smaller of the stream's and the connection's windows)."""
        try:
            return int(self.core.remote_flow_control_window(stream_id))
        except h2.exceptions.StreamClosedError:
            return 0

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """One DATA frame; ``data`` must fit :meth:`window`."""
        if not self.over:
            self.core.send_data(stream_id, data, end_stream=end)
            if data:
                self.window_credit += 2  # the peer may give its window back: stream, connection

    def end(self, stream_id: int) -> None:
        if not self.over:
            self.core.end_stream(stream_id)

    def reset(self, stream_id: int, code: int) -> None:
        """Reset a stream (an app that failed mid-response: INTERNAL_ERROR)."""
        try:
            self.core.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass  # the peer reset it first
        except h2.exceptions.ProtocolError:
            pass  # the connection is over: nothing more goes out

    def consumed(self, stream_id: int, flow: int) -> None:
        """The app took ``flow`` body bytes: the peer may send as many more."""
        if flow and not self.over:
            self.core.acknowledge_received_data(flow, stream_id)

    def going_away(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY naming the last stream we took: nothing newer will be served.

        An error ends the connection at once (h2 then refuses to send anything more). A
        graceful GOAWAY (NO_ERROR, the server is stopping) must let the streams in flight
        finish, which h2's ``close_connection`` would forbid: the frame is queued as it is,
        and newer streams are refused by the engine."""
        if self.closed:
            return
        self.closed = True
        core = self.core
        if code != ErrorCodes.NO_ERROR:
            core.close_connection(code, last_stream_id=core.highest_inbound_stream_id)
            return
        frame = GoAwayFrame(0)
        frame.last_stream_id = core.highest_inbound_stream_id
        frame.error_code = code
        core._prepare_for_sending([frame])

    def stream_open(self, stream_id: int) -> bool:
        """Can we still send on the stream (not reset, not closed)?"""
        stream = self.core.streams.get(stream_id)
        return stream is not None and stream.open

    def data_to_send(self) -> bytes:
        return self.core.data_to_send()


#: A WINDOW_UPDATE that opens at least this much is a client reading what we send, not a
#: flood: a download of a few MB/s sends one every 32 KiB or so, which would otherwise
#: spend the control-frame budget in seconds.
WINDOW_UPDATE_USEFUL = 1024


def _expected(event: Any, kind: type) -> bool:
    """Frames that come with normal traffic and cost the budget nothing: a useful
    WINDOW_UPDATE, and the priority a browser puts in each request's HEADERS (h2 reports
    it as a PriorityUpdated of its own)."""
    if kind is h2.events.WindowUpdated:
        return bool(event.delta and event.delta >= WINDOW_UPDATE_USEFUL)
    if kind is h2.events.PriorityUpdated:
        return bool(getattr(event, "with_headers", False))
    return False
