"""WebSockets over HTTP/2 (RFC 8441) under asyncio: an extended CONNECT opens one on a
stream, beside plain requests on the same connection.

The client is ``h2``, which sends an extended CONNECT once the server's SETTINGS allow it;
the WebSocket frames inside the stream are built here by hand (masked, as RFC 6455 asks of
a client).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.http2.client import Answer, H2Client
from tests.ws import handlers
from threadloom.interfaces.websocket import WSGIWithWebSocket
from threadloom.testing import MODELS, running_server


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole unmasked frame in ``data``."""
    frames, at = [], 0
    while at + 2 <= len(data):
        b0, b1 = data[at], data[at + 1]
        size, at = b1 & 0x7F, at + 2
        if size == 126:
            (size,), at = struct.unpack("!H", data[at : at + 2]), at + 2
        elif size == 127:
            (size,), at = struct.unpack("!Q", data[at : at + 8]), at + 8
        frames.append((b0 & 0x0F, data[at : at + size]))
        at += size
    return frames


@contextmanager
def connected(app: Any = handlers.asgi_app, model: str = "asyncio") -> Iterator[H2Client]:
    with running_server(app, model=model, access_log=False) as server:
        client = H2Client(server.addresses[0])
        try:
            client.wait(timeout=0.5)  # the server's SETTINGS
            yield client
        finally:
            client.close()


def open_websocket(client: H2Client, path: str = "/ws", extra: list | None = None) -> int:
    stream_id = client.conn.get_next_available_stream_id()
    fields = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("sec-websocket-version", "13"),
        *(extra or []),
    ]
    client.conn.send_headers(stream_id, fields)
    client.answers[stream_id] = Answer()
    client.started[stream_id] = 0.0
    client._flush()
    return stream_id


def until(client: H2Client, test: object, limit: int = 50) -> None:
    for _ in range(limit):
        if test():  # type: ignore[operator]
            return
        client._receive_once(0.2)
    raise AssertionError("the server did not answer in time")


def test_the_server_offers_extended_connect() -> None:
    with connected() as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)


def test_an_asgi_websocket_over_a_stream_echoes_and_closes_beside_plain_requests() -> None:
    with connected() as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        ws = open_websocket(client, extra=[("sec-websocket-protocol", "chat")])
        plain = client.request("/plain")
        until(client, lambda: client.answers[ws].status == 200)
        assert client.answers[ws].headers[b"sec-websocket-protocol"] == b"chat"
        assert b"sec-websocket-accept" not in client.answers[ws].headers  # HTTP/1.1's only
        client.conn.send_data(ws, client_frame(0x1, b"hello over h2"))
        client._flush()
        until(client, lambda: server_frames(client.answers[ws].body) != [])
        assert server_frames(client.answers[ws].body) == [(0x1, b"hello over h2")]
        assert client.wait(plain)[0].body == b"plain http"
        client.conn.send_data(ws, client_frame(0x1, b"bye"))  # the app closes with 4001
        client._flush()
        until(client, lambda: client.answers[ws].ended)
        frames = server_frames(client.answers[ws].body)
        assert frames[-1][0] == 0x8 and struct.unpack("!H", frames[-1][1][:2])[0] == 4001


def test_a_refused_websocket_is_a_403_and_the_connection_lives_on() -> None:
    with connected() as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        ws = open_websocket(client, path="/deny")
        until(client, lambda: client.answers[ws].ended)
        assert client.answers[ws].status == 403
        assert client.wait(client.request("/"))[0].body == b"plain http"


@pytest.mark.parametrize("version", [None, "8"])
def test_a_bad_version_is_refused(version: str | None) -> None:
    with connected() as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        stream_id = client.conn.get_next_available_stream_id()
        fields = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/ws"),
            (":authority", "localhost"),
        ]
        if version:
            fields.append(("sec-websocket-version", version))
        client.conn.send_headers(stream_id, fields)
        client.answers[stream_id] = Answer()
        client.started[stream_id] = 0.0
        client._flush()
        until(client, lambda: client.answers[stream_id].ended)
        answer = client.answers[stream_id]
        assert answer.status == 400
        assert answer.headers[b"sec-websocket-version"] == b"13"


def test_the_client_leaving_ends_the_websocket_and_its_stream() -> None:
    with connected() as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        ws = open_websocket(client)
        until(client, lambda: client.answers[ws].status == 200)
        client.conn.reset_stream(ws)
        client._flush()
        assert client.wait(client.request("/"))[0].body == b"plain http"


def _plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain wsgi"]


HANDLERS = [(model, handlers.echo) for model in MODELS] + [("asyncio", handlers.async_echo)]


@pytest.mark.parametrize(
    ("model", "handler"), HANDLERS, ids=[f"{m}-{h.__name__}" for m, h in HANDLERS]
)
def test_a_wsgi_apps_websocket_handler_over_a_stream(model: str, handler: Any) -> None:
    """threadloom's own handlers, sync (on a thread of the model, or the pool through the
    loop) and async, get the stream's WebSocket as they get an Upgrade's; permessage-deflate
    is negotiated the same; a message goes both ways; the Close ends the stream."""
    with connected(WSGIWithWebSocket(_plain, handler), model) as client:
        until(client, lambda: client.conn.remote_settings.enable_connect_protocol == 1)
        ws = open_websocket(client, extra=[("sec-websocket-extensions", "permessage-deflate")])
        until(client, lambda: client.answers[ws].status == 200)
        assert b"permessage-deflate" in client.answers[ws].headers[b"sec-websocket-extensions"]
        client.conn.send_data(ws, client_frame(0x2, b"\x00binary"))
        client._flush()
        until(client, lambda: server_frames(client.answers[ws].body) != [])
        opcode, payload = server_frames(client.answers[ws].body)[0]
        assert opcode == 0x2 and payload  # (compressed or not: the deflate context decides)
        client.conn.send_data(ws, client_frame(0x8, struct.pack("!H", 1000)))
        client._flush()
        until(client, lambda: client.answers[ws].ended)
        assert server_frames(client.answers[ws].body)[-1][0] == 0x8  # its Close answered
        # (after it: under single the connection's streams run one after another)
        assert client.wait(client.request("/"))[0].body == b"plain wsgi"
