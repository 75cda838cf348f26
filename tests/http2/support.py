"""What the HTTP/2 tests share: a raw frame client, a well-behaved h2 client, and an app.

:class:`RawPeer` is the attacker. It speaks HTTP/2 over a plain socket with frames built by
hand (``hyperframe`` for the frames, ``hpack`` for header blocks, :func:`raw_frame` for
what hyperframe refuses to build), so it can send what no conforming client would. It
records what it sent (:meth:`RawPeer.story`, printed by a failing assertion) and parses
what the server sends back: the GOAWAY, each stream's RST_STREAM code, ``:status`` and
body size, and whether the server closed the connection. Every read has a deadline.

:func:`h2_get` is the bystander: one ordinary request on a connection of its own, with the
``h2`` library as the client, timed, for checking that other connections are still served.

:func:`app` is the WSGI app the attack tests serve (``tests.http2.support:app``).

The folder is ``tests/http2``, not ``tests/h2``: pytest puts ``tests/`` on ``sys.path``
(there is no ``tests/__init__.py``), so a folder ``tests/h2`` would be imported as ``h2``
and shadow the ``h2`` library itself.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from threadloom.protocols.http2 import PREFACE
from threadloom.testing import timeout_factor

#: Frame type numbers (RFC 9113 6) for :func:`raw_frame`.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
)
END_STREAM, END_HEADERS = 0x1, 0x4

#: The size of ``/big``, streamed in 64 KiB blocks.
BIG = 32 * 1024 * 1024
_BLOCK = b"x" * 65536


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame, byte for byte: nothing checked, so anything can be sent."""
    return (
        struct.pack("!L", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack("!L", stream_id & 0x7FFFFFFF)
        + payload
    )


def request_fields(
    path: str = "/", method: str = "GET", authority: str = "localhost"
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", authority.encode()),
    ]


def _summary(data: bytes) -> list[str]:
    """The frames in ``data`` by type, for the story of what was sent."""
    out = []
    view = memoryview(data)
    if bytes(view[: len(PREFACE)]) == PREFACE:
        out.append("PREFACE")
        view = view[len(PREFACE) :]
    while len(view) >= 9:
        length = int.from_bytes(view[:3], "big")
        kind, flags = view[3], view[4]
        stream_id = int.from_bytes(view[5:9], "big") & 0x7FFFFFFF
        names = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS"}
        names |= {5: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
        out.append(
            f"{names.get(kind, f'type {kind}')}(stream {stream_id}, flags {flags:#x}, {length} B)"
        )
        view = view[9 + length :]
    if len(view):
        out.append(f"{len(view)} bytes of a partial frame")
    return out


class RawPeer:
    """An HTTP/2 client connection that sends raw frames (see the module docstring)."""

    def __init__(
        self,
        address: tuple[str, int],
        settings: dict[int, int] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout * timeout_factor())
        sock.connect(address)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 20)
        self.sent: list[str] = []  # the last frames sent
        self.counts: dict[str, int] = {}  # frames sent, by kind
        self.inbox = bytearray()
        #: (error code, last stream id) of the server's GOAWAY
        self.goaway: tuple[int, int] | None = None
        self.resets: dict[int, int] = {}  # stream -> RST_STREAM error code
        self.statuses: dict[int, int] = {}  # stream -> :status of its response
        self.body: dict[int, int] = {}  # stream -> DATA bytes received
        self.ended: set[int] = set()  # streams the server ended (END_STREAM)
        self.pings = 0  # PING ACKs received
        self.settings_acks = 0
        self.frames_in = 0
        self.closed = False  # the server closed (EOF or reset), as read
        self.send_failed = False  # a send failed (the server closed or reset)
        self.auto_ack = True  # answer the server's SETTINGS with an ACK
        fields = settings or {}
        frame = SettingsFrame(0)
        frame.settings = dict(fields)
        self.send(PREFACE + frame.serialize())

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: bytes | Frame | Iterable[bytes | Frame]) -> bool:
        """Send frames (bytes, a hyperframe Frame, or an iterable of them); False if the
        server has closed the connection meanwhile."""
        if isinstance(data, Frame):
            data = data.serialize()
        elif not isinstance(data, bytes | bytearray):
            data = b"".join(f.serialize() if isinstance(f, Frame) else f for f in data)
        self._note(_summary(data))
        try:
            self.sock.sendall(data)
        except OSError as exc:
            # (not closed yet for us: what the server sent before is still to be read)
            self.sent.append(f"(send failed: {exc!r})")
            self.send_failed = True
            return False
        return True

    def _note(self, frames: list[str]) -> None:
        """Keep the story short: every frame is counted by kind, the last 12 are kept."""
        for line in frames:
            kind = line.split("(", 1)[0]
            self.counts[kind] = self.counts.get(kind, 0) + 1
        self.sent = [*self.sent, *frames][-12:]

    def block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        """A header block, encoded with this connection's HPACK context."""
        return bytes(self.encoder.encode(fields))

    def headers(
        self,
        stream_id: int,
        fields: list[tuple[bytes, bytes]] | None = None,
        end_stream: bool = True,
        end_headers: bool = True,
    ) -> HeadersFrame:
        frame = HeadersFrame(stream_id)
        frame.data = self.block(fields if fields is not None else request_fields())
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame

    def request(self, stream_id: int, path: str = "/", end_stream: bool = True) -> HeadersFrame:
        return self.headers(stream_id, request_fields(path), end_stream)

    # -- receiving ----------------------------------------------------------------------------

    def read_until(self, done: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Read and parse the server's frames until ``done()``, the server closes, or
        ``timeout`` (times the factor) passes; whether ``done()`` became true."""
        deadline = time.monotonic() + timeout * timeout_factor()
        while not done():
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                return done()
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                continue
            if not chunk:
                self.closed = True
            self.inbox += chunk
            self._parse()
        return True

    def read_for(self, seconds: float) -> None:
        """Read whatever comes for ``seconds``."""
        self.read_until(lambda: False, seconds)

    def until_goaway(self, timeout: float = 5.0) -> tuple[int, int] | None:
        self.read_until(lambda: self.goaway is not None, timeout)
        return self.goaway

    def until_closed(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (frames read)."""
        return self.read_until(lambda: self.closed, timeout)

    def _parse(self) -> None:
        inbox = self.inbox
        while len(inbox) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(inbox[:9]))
            if len(inbox) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(inbox[9 : 9 + length])))
            del inbox[: 9 + length]
            self.frames_in += 1
            self._seen(frame)

    def _seen(self, frame: Frame) -> None:
        sid = frame.stream_id
        if isinstance(frame, GoAwayFrame):
            if self.goaway is None:
                self.goaway = (frame.error_code, frame.last_stream_id)
        elif isinstance(frame, RstStreamFrame):
            self.resets[sid] = frame.error_code
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            for name, value in self.decoder.decode(frame.data, raw=True):
                if name == b":status" and not value.startswith(b"1"):
                    self.statuses[sid] = int(value)
            if "END_STREAM" in frame.flags:
                self.ended.add(sid)
        elif isinstance(frame, DataFrame):
            self.body[sid] = self.body.get(sid, 0) + len(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended.add(sid)
        elif isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                self.settings_acks += 1
            elif self.auto_ack:
                self.send(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame) and "ACK" in frame.flags:
            self.pings += 1

    def story(self) -> str:
        """What was sent and what came back, for a failing assertion."""
        last = "\n  ".join(self.sent)
        resets = dict(list(self.resets.items())[:10])
        statuses = dict(list(self.statuses.items())[:10])
        return (
            f"\nsent: {self.counts}; the last frames:\n  {last}\n"
            f"got: goaway={self.goaway} resets={resets} ({len(self.resets)} in all) "
            f"statuses={statuses} ({len(self.statuses)} in all) ended={len(self.ended)} "
            f"pings={self.pings} frames={self.frames_in} closed={self.closed}"
        )

    def close(self) -> None:
        self.sock.close()


def h2_get(
    address: tuple[str, int], path: str = "/", timeout: float = 5.0
) -> tuple[int, bytes, float]:
    """One ordinary HTTP/2 GET on a new connection, with h2 as the client: (status, body,
    seconds taken); status 0 if no answer came within ``timeout`` (times the factor)."""
    started = time.monotonic()
    deadline = started + timeout * timeout_factor()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    status, body, done = 0, bytearray(), False
    try:
        with socket.create_connection(address, timeout=timeout * timeout_factor()) as sock:
            conn.initiate_connection()
            conn.send_headers(1, request_fields(path), end_stream=True)
            sock.sendall(conn.data_to_send())
            while not done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        done = True
                sock.sendall(conn.data_to_send())
    except OSError:
        pass
    return (status if done else 0), bytes(body), time.monotonic() - started


def reset_peak(pid: int) -> None:
    """Start a new peak for ``/proc/PID/status``'s VmHWM (``clear_refs``: 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# -- the app the attack tests serve ----------------------------------------------------------

_calls = 0
_calls_lock = threading.Lock()


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """``/`` hello; ``/big`` 32 MiB streamed; ``/slow`` answers after 0.5 s; ``/echo``
    the body back; ``/calls`` how many requests the app has run (itself excluded)."""
    global _calls
    path = environ["PATH_INFO"]
    if path == "/calls":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(_calls).encode()]
    with _calls_lock:
        _calls += 1
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (_BLOCK for _ in range(BIG // len(_BLOCK)))
    if path == "/slow":
        time.sleep(0.5)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def calls(address: tuple[str, int]) -> int:
    """How many requests the server's app has run (``/calls``)."""
    status, body, _ = h2_get(address, "/calls")
    assert status == 200, f"/calls answered {status}"
    return int(body)


__all__ = [
    "BIG",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "GOAWAY",
    "HEADERS",
    "PING",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "RawPeer",
    "app",
    "calls",
    "h2_get",
    "raw_frame",
    "request_fields",
    "reset_peak",
]
