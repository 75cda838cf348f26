"""A raw HTTP/2 frame client for the conformance suite: it sends whatever frames a case
needs, well-formed or not, and reads back what the server answers, frame by frame.

It keeps no state machine of its own (that is the point: it must be able to break the
rules) beyond the two things a peer cannot do without, an HPACK encoder and decoder, so
that the server's header blocks decode and ours stay in step with its decoder. Every read
has a timeout: a server that says nothing fails the case, it never hangs it.

    with FrameClient(address) as client:
        client.handshake()
        client.send(raw_frame(PING, 0, 0, b"1234567"))       # a PING one byte short
        client.expect_goaway(ErrorCodes.FRAME_SIZE_ERROR)
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from h2.errors import ErrorCodes
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from threadloom.protocols.http2 import PREFACE  # (the server's own constant)
from threadloom.testing import timeout_factor

# frame types (RFC 9113 6), for raw_frame()
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
# flags
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

#: seconds a case waits for the server's next frame (scaled by THREADLOOM_TIMEOUT_FACTOR)
READ_TIMEOUT_S = 5.0


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame's bytes, with no check at all: the length is the payload's."""
    header = struct.pack(">L", len(payload))[1:] + bytes((kind, flags))
    return header + struct.pack(">L", stream_id) + payload


def setting(ident: int, value: int) -> bytes:
    """One SETTINGS parameter (6 octets), for raw SETTINGS payloads."""
    return struct.pack(">HL", ident, value)


class Closed(Exception):
    """The server closed the connection (EOF or reset) while a frame was awaited."""


class Silent(AssertionError):
    """The server sent nothing for READ_TIMEOUT_S while a frame was awaited."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    frames: list[Frame] = field(default_factory=list)  # every frame seen on the stream


class FrameClient:
    """One connection to the server under test (see the module docstring)."""

    def __init__(self, address: Any) -> None:
        self.sock = socket.create_connection(address, timeout=READ_TIMEOUT_S * timeout_factor())
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.header_block = bytearray()  # a server header block still awaiting CONTINUATION
        #: the decoded header blocks the server sent, by stream, in order
        self.blocks: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        self.server_settings: dict[int, int] = {}
        self.acks = 0  # SETTINGS ACKs the server sent
        self.goaway: GoAwayFrame | None = None
        #: the connection window the server gives us to send in (65,535 and its updates)
        self.window = 65535
        #: stream windows the server opened past its SETTINGS_INITIAL_WINDOW_SIZE
        self.stream_windows: dict[int, int] = {}
        #: frames read while sending a body, for the reads after it
        self.pending: list[Frame] = []
        #: frames of other streams read while awaiting a response, for their own
        self.stash: list[Frame] = []
        #: give back the window of every DATA frame read (off for flow-control cases)
        self.auto_window = True

    def __enter__(self) -> FrameClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending -------------------------------------------------------------------------

    def send(self, *frames: Frame | bytes) -> None:
        """Frames (hyperframe objects or raw bytes) in one write; a server that has already
        closed is not an error here (what it said before closing is read next)."""
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def handshake(self, settings: dict[int, int] | None = None) -> None:
        """The preface and our SETTINGS; wait for the server's SETTINGS and ACK them."""
        ours = SettingsFrame(0, settings or {})
        self.send(PREFACE + ours.serialize())
        frame = self.next_frame()
        assert isinstance(frame, SettingsFrame) and "ACK" not in frame.flags, (
            f"the server's first frame must be SETTINGS (RFC 9113 3.4), not {frame}"
        )
        self.send(SettingsFrame(0, flags=["ACK"]))

    def block(self, headers: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
        """An HPACK block for ``headers`` (keeps our encoder in step with the server)."""
        return bytes(self.encoder.encode(headers))

    def headers(
        self,
        stream_id: int,
        headers: list[tuple[str, str]] | None = None,
        end_stream: bool = True,
        path: str = "/",
        method: str = "GET",
    ) -> HeadersFrame:
        """A request's HEADERS frame (not sent): the four pseudo-headers unless given."""
        if headers is None:
            headers = request_headers(method, path)
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(stream_id, self.block(headers), flags=flags)

    def request(self, stream_id: int, path: str = "/", body: bytes = b"", **kw: Any) -> Response:
        """A whole request and its response (the connection must still be usable)."""
        frames: list[Frame] = [self.headers(stream_id, end_stream=not body, path=path, **kw)]
        if body:
            frames.append(DataFrame(stream_id, body, flags=["END_STREAM"]))
        self.send(*frames)
        return self.response(stream_id)

    def send_body(self, stream_id: int, body: bytes) -> None:
        """``body`` in DATA frames as the server's windows allow (the last ends the
        stream), reading its WINDOW_UPDATEs while they are shut."""
        sent = 0
        while True:
            size = min(len(body) - sent, self.window, self._stream_window(stream_id), 16384)
            if size <= 0 and sent < len(body):
                frame = self._receive()
                if frame is None or isinstance(frame, GoAwayFrame):
                    raise AssertionError(f"closed while sending a body ({frame})")
                self.pending.append(frame)
                continue
            last = sent + size == len(body)
            self.send(DataFrame(stream_id, body[sent : sent + size], flags=["END_STREAM"] * last))
            self.window -= size
            self.stream_windows[stream_id] = self._stream_window(stream_id) - size
            sent += size
            if last:
                return

    def _stream_window(self, stream_id: int) -> int:
        initial = self.server_settings.get(0x4, 65535)
        return self.stream_windows.get(stream_id, initial)

    def ping(self) -> list[bytes]:
        """A PING and its ACK: the server has handled every frame sent before it and the
        connection is alive. Fails on a GOAWAY, a close or silence. Returns the payloads
        of the other PING ACKs read meanwhile."""
        opaque = os.urandom(8)
        self.send(PingFrame(0, opaque))
        others = []
        while True:
            frame = self.next_frame()
            if isinstance(frame, PingFrame) and "ACK" in frame.flags:
                if frame.opaque_data == opaque:
                    return others
                others.append(frame.opaque_data)

    # -- receiving -----------------------------------------------------------------------

    def read_frame(self) -> Frame | None:
        """The server's next frame; None if it closed the connection. Raises Silent after
        READ_TIMEOUT_S with nothing."""
        if self.pending:
            return self.pending.pop(0)
        return self._receive()

    def _receive(self) -> Frame | None:
        """The next frame from the socket (read_frame without the pending ones)."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self.buffer[9 : 9 + length])))
                    del self.buffer[: 9 + length]
                    self._note(frame)
                    return frame
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise Silent("the server said nothing for a read timeout") from None
            except ConnectionError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def next_frame(self) -> Frame:
        """The next frame, failing on a GOAWAY or a close (for cases that must go on)."""
        frame = self.read_frame()
        if frame is None:
            raise Closed("the server closed the connection")
        if isinstance(frame, GoAwayFrame):
            raise AssertionError(f"unexpected GOAWAY {describe(frame)}")
        return frame

    def _note(self, frame: Frame) -> None:
        """What a peer must track of the server's frames: settings, header blocks."""
        if isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                self.acks += 1
            else:
                self.server_settings.update(frame.settings)
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            self.header_block += frame.data
            if "END_HEADERS" in frame.flags:
                decoded = self.decoder.decode(bytes(self.header_block), raw=True)
                self.header_block.clear()
                self.blocks.setdefault(frame.stream_id, []).append(decoded)
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, WindowUpdateFrame):
            if frame.stream_id == 0:
                self.window += frame.window_increment
            else:
                self.stream_windows[frame.stream_id] = (
                    self._stream_window(frame.stream_id) + frame.window_increment
                )
        elif isinstance(frame, DataFrame) and frame.flow_controlled_length and self.auto_window:
            # give the window straight back, so that long responses are never stuck (not
            # on a stream the frame ended: a WINDOW_UPDATE there is a frame on a closed one)
            size = frame.flow_controlled_length
            updates = [WindowUpdateFrame(0, size)]
            if "END_STREAM" not in frame.flags:
                updates.append(WindowUpdateFrame(frame.stream_id, size))
            self.send(*updates)

    def response(self, stream_id: int) -> Response:
        """Read until the stream's response ends; fails on its reset, a GOAWAY or close."""
        frames: list[Frame] = []
        body = bytearray()
        while True:
            mine = [f for f in self.stash if f.stream_id == stream_id]
            if mine:
                frame = mine[0]
                self.stash.remove(frame)
            else:
                frame = self.next_frame()
            if frame.stream_id != stream_id:
                if frame.stream_id:
                    self.stash.append(frame)  # another stream's response: kept for it
                continue
            frames.append(frame)
            if isinstance(frame, RstStreamFrame):
                raise AssertionError(f"stream {stream_id} reset: {describe(frame)}")
            if isinstance(frame, DataFrame):
                body += frame.data
            if "END_STREAM" in frame.flags:
                break
        blocks = [b for b in self.blocks.get(stream_id, []) if not _informational(b)]
        head = blocks[0]
        status = int(dict(head)[b":status"])
        return Response(status, head, bytes(body), frames)

    def expect_goaway(self, *codes: int) -> GoAwayFrame:
        """A connection error: a GOAWAY with one of ``codes``, then the server closes."""
        while True:
            frame = self.read_frame()
            if frame is None:
                raise AssertionError(f"closed without a GOAWAY (expected {_names(codes)})")
            if isinstance(frame, GoAwayFrame):
                break
            if isinstance(frame, RstStreamFrame):
                raise AssertionError(
                    f"a stream error {describe(frame)} where a connection error "
                    f"({_names(codes)}) is due"
                )
        assert frame.error_code in codes, f"GOAWAY {describe(frame)}, expected {_names(codes)}"
        self.expect_closed()
        return frame

    def expect_rst(self, stream_id: int, *codes: int) -> RstStreamFrame:
        """A stream error: RST_STREAM on ``stream_id`` with one of ``codes``; the
        connection must live on (a GOAWAY or close fails the case)."""
        while True:
            frame = self.read_frame()
            if frame is None:
                raise AssertionError(f"closed where RST_STREAM {_names(codes)} is due")
            if isinstance(frame, GoAwayFrame):
                raise AssertionError(
                    f"a connection error {describe(frame)} where a stream error "
                    f"(RST_STREAM {_names(codes)}) is due"
                )
            if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                break
        assert frame.error_code in codes, f"{describe(frame)}, expected {_names(codes)}"
        return frame

    def expect_error(self, stream_id: int | None, *codes: int, discard: bool = False) -> str:
        """An error RFC 9113 lets an endpoint signal either way: a stream error, RST_STREAM
        on ``stream_id`` with one of ``codes`` (None: no stream error is due), or a
        connection error, GOAWAY with one of ``codes`` and then the close (5.4.1: "an
        endpoint MAY choose to treat a stream error as a connection error"); with
        ``discard``, also nothing at all (5.1: frames on a closed stream may be discarded),
        which a PING sent after the frames and answered with nothing before it shows.
        Returns ``"stream"``, ``"connection"`` or ``"discarded"``; after a stream error or
        a discard the caller checks the connection still serves."""
        opaque = os.urandom(8)
        if discard:
            self.send(PingFrame(0, opaque))
        expected = _names(codes)
        while True:
            frame = self.read_frame()
            if frame is None:
                raise AssertionError(f"closed without a GOAWAY (expected {expected})")
            if isinstance(frame, GoAwayFrame):
                assert frame.error_code in codes, f"GOAWAY {describe(frame)}, expected {expected}"
                self.expect_closed()
                return "connection"
            if isinstance(frame, RstStreamFrame):
                assert stream_id is not None and frame.stream_id == stream_id, (
                    f"{describe(frame)} where a connection error ({expected}) is due"
                )
                assert frame.error_code in codes, f"{describe(frame)}, expected {expected}"
                return "stream"
            if discard and isinstance(frame, PingFrame) and frame.opaque_data == opaque:
                return "discarded"  # (the answer to our PING: nothing came before it)

    def expect_closed(self) -> None:
        """The server closes the connection (whatever it sends first)."""
        while self.read_frame() is not None:
            pass

    def read_raw(self) -> bytes:
        """Every byte until the server closes (for answers that are not HTTP/2)."""
        data = bytearray(self.buffer)
        self.buffer.clear()
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)


def request_headers(method: str = "GET", path: str = "/") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)]


def describe(frame: Frame) -> str:
    if isinstance(frame, GoAwayFrame | RstStreamFrame):
        code = frame.error_code
        name = ErrorCodes(code).name if code in ErrorCodes._value2member_map_ else str(code)
        return f"{type(frame).__name__}(stream {frame.stream_id}, {name})"
    return repr(frame)


def _names(codes: tuple[int, ...]) -> str:
    return " or ".join(ErrorCodes(c).name for c in codes)


def _informational(block: list[tuple[bytes, bytes]]) -> bool:
    return dict(block).get(b":status", b"").startswith(b"1")
