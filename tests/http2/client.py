"""A small blocking HTTP/2 client over a real socket, built on the ``h2`` library.

It speaks prior knowledge (cleartext) or TLS with ALPN, sends requests on as many streams
as asked at once, acknowledges what it receives (so windows stay open unless a test says
otherwise) and collects, per stream, the status, headers, body and how it ended.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from threadloom.testing import timeout_factor


@dataclass
class Answer:
    """What came back on one stream."""

    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code
    took: float = 0.0  # seconds from sending the request to the end of the stream


class H2Client:
    """One HTTP/2 connection (see the module docstring)."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        tls: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        ack: bool = True,
        sock: socket.socket | None = None,
    ) -> None:
        raw = sock or socket.create_connection(address, timeout=10 * timeout_factor())
        if tls is not None:
            raw = tls.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.alpn = raw.selected_alpn_protocol() if tls is not None else None
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.ack = ack  # give back the window as data arrives
        self.answers: dict[int, Answer] = {}
        self.started: dict[int, float] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        authority: str = "localhost",
    ) -> int:
        """Send a request (its body as far as the windows allow); its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", authority),
            *(headers or []),
        ]
        self.conn.send_headers(stream_id, fields, end_stream=not body)
        self.answers[stream_id] = Answer()
        self.started[stream_id] = time.monotonic()
        self._flush()
        if body:
            self._send_body(stream_id, body)
        return stream_id

    def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self._receive_once()
                continue
            piece, view = view[:window], view[window:]
            self.conn.send_data(stream_id, bytes(piece), end_stream=not view)
            self._flush()

    def wait(self, *stream_ids: int, timeout: float = 10.0) -> list[Answer]:
        """Read until every stream named (all, if none) has ended or been reset."""
        ids = stream_ids or tuple(self.answers)
        deadline = time.monotonic() + timeout * timeout_factor()
        while not all(self.answers[i].ended or self.answers[i].reset is not None for i in ids):
            if self.closed or time.monotonic() > deadline:
                break
            self._receive_once(deadline - time.monotonic())
        return [self.answers[i] for i in ids]

    def _receive_once(self, timeout: float = 10.0) -> None:
        self.sock.settimeout(max(timeout, 0.01))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            self._on(event)
            if isinstance(event, h2.events.ConnectionTerminated):
                # RFC 9113 6.8: streams up to the GOAWAY's last stream id still finish; h2's
                # client would refuse their frames from here on, so it is told to go on
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        self._flush()

    def _on(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            answer = self.answers[event.stream_id]
            answer.headers = dict(event.headers)
            answer.status = int(answer.headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            self.answers[event.stream_id].body += event.data
            if self.ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            answer = self.answers[event.stream_id]
            answer.ended = True
            answer.took = time.monotonic() - self.started[event.stream_id]
        elif isinstance(event, h2.events.StreamReset):
            self.answers[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(address: tuple[str, int], path: str = "/", **kwargs: Any) -> Answer:
    """One request on a fresh connection."""
    with H2Client(address, **kwargs) as client:
        stream_id = client.request(path)
        return client.wait(stream_id)[0]
