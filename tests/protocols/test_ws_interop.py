"""Interoperability with an independent implementation: the `websockets` sans-I/O protocols.

A fake wire joins websockets' ``ClientProtocol`` (its handshake, framing, masking and
permessage-deflate) to our HTTP core, handshake and ``WebSocketConnection``; then the roles
swap and our core, as a client, talks to websockets' ``ServerProtocol``. No sockets: bytes
are handed across, which is all either side sees on a real connection.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from threadloom.protocols.http1 import ServerConnection
from threadloom.protocols.websocket import (
    CloseReceived,
    DeflateParams,
    Event,
    Message,
    Ping,
    WebSocketConnection,
    accept_response,
    check_request,
    negotiate_deflate,
)
from threadloom.protocols.websocket.deflate import parse_extensions

DEFLATE_CONFIGS: list[dict[str, Any] | None] = [
    None,
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 8},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"client_max_window_bits": 12},
]


def send_all(client: ClientProtocol) -> bytes:
    return b"".join(client.data_to_send())


def open_pair(
    deflate: dict[str, Any] | None, subprotocols: list[str] | None = None, pick: str | None = None
) -> tuple[ClientProtocol, WebSocketConnection, DeflateParams | None]:
    """A websockets client and our server core, past the opening handshake."""
    extensions = None if deflate is None else [ClientPerMessageDeflateFactory(**deflate)]
    client = ClientProtocol(
        parse_uri("ws://example.com/chat?x=1"),
        extensions=extensions,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=None,
    )
    client.send_request(client.connect())
    http = ServerConnection()
    http.receive_data(send_all(client))
    request = http.requests.popleft()
    hs = check_request(request.method, request.http_version, request.headers, path=request.target)
    assert hs.path == "/chat?x=1"
    params = negotiate_deflate(hs.extensions_offered)
    client.receive_data(accept_response(hs, subprotocol=pick, deflate=params))
    [response] = client.events_received()
    assert response.status_code == 101  # type: ignore[union-attr]
    assert client.state is State.OPEN, client.handshake_exc
    return client, WebSocketConnection(deflate=params, max_message_size=1 << 22), params


def client_frames(client: ClientProtocol, data: bytes) -> list[Frame]:
    client.receive_data(data)
    return client.events_received()  # type: ignore[return-value]


@pytest.mark.parametrize("deflate", DEFLATE_CONFIGS)
def test_echo_both_ways(deflate: dict[str, Any] | None) -> None:
    client, server, params = open_pair(deflate)
    assert (params is None) == (deflate is None)
    messages: list[str | bytes] = [
        "",
        "hi",
        "é" * 70,
        "long text " * 3000,
        b"",
        os.urandom(300),
        bytes(70000),
        b"\x00\x01" * 40000,
    ]
    for message in messages * 2:  # twice: context takeover must carry over
        if isinstance(message, str):
            client.send_text(message.encode())
        else:
            client.send_binary(message)
        assert server.receive_data(send_all(client)) == [Message(message)]
        [echoed] = client_frames(client, server.send_message(message))
        expected = message.encode() if isinstance(message, str) else message
        assert bytes(echoed.data) == expected
        assert echoed.opcode is (Opcode.TEXT if isinstance(message, str) else Opcode.BINARY)


@pytest.mark.parametrize("deflate", [None, {}])
def test_fragments_pings_and_a_client_close(deflate: dict[str, Any] | None) -> None:
    client, server, _ = open_pair(deflate)
    client.send_text("κόσμε ".encode() * 50, fin=False)
    client.send_ping(b"are you there")
    client.send_continuation("κόσμε ".encode() * 50, fin=False)
    client.send_continuation(b"end", fin=True)
    events = server.receive_data(send_all(client))
    assert events == [Ping(b"are you there"), Message("κόσμε " * 100 + "end")]
    [pong] = client_frames(client, server.data_to_send())
    assert (pong.opcode, bytes(pong.data)) == (Opcode.PONG, b"are you there")
    client.send_close(1001, "tab closed")
    assert server.receive_data(send_all(client)) == [CloseReceived(1001, "tab closed")]
    assert server.closed
    client_frames(client, server.data_to_send())
    client.receive_eof()  # the server closes TCP first (RFC 6455 7.1.1)
    assert client.state is State.CLOSED
    assert client.close_code == 1001


def test_server_initiated_close() -> None:
    client, server, _ = open_pair({})
    client_frames(client, server.send_close(1000, "done"))
    assert not server.closed
    assert server.receive_data(send_all(client)) == [CloseReceived(1000, "done")]
    assert server.closed and server.data_to_send() == b""
    client.receive_eof()
    assert client.close_code == 1000


def test_subprotocol_is_agreed() -> None:
    client, _, _ = open_pair(None, subprotocols=["chat", "superchat"], pick="superchat")
    assert client.subprotocol == "superchat"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Frame(Opcode.TEXT, b"\xce\xba\xff"), 1007),
        (b"\xa1\x81\x00\x00\x00\x00x", 1002),  # RSV2 (websockets will not write it)
        (Frame(Opcode.CONT, b"x"), 1002),
        (Frame(Opcode.CLOSE, b"\x03\xed"), 1002),  # 1005 may not be sent
    ],
)
def test_our_failure_close_is_understood(frame: Frame | bytes, code: int) -> None:
    client, server, _ = open_pair(None)
    server.receive_data(frame if isinstance(frame, bytes) else frame.serialize(mask=True))
    assert server.closed and server.close_code == code
    client_frames(client, server.data_to_send())
    client.receive_eof()
    assert client.close_code == code


def test_oversized_compressed_message_from_websockets_is_1009() -> None:
    client, _, params = open_pair({})
    server = WebSocketConnection(deflate=params, max_message_size=1000)
    client.send_text(b"a" * 5000)
    server.receive_data(send_all(client))
    assert server.close_code == 1009


# -- our core as the client, websockets as the server ------------------------------------


def client_handshake(offer: bytes | None) -> tuple[ServerProtocol, bytes]:
    """Our client's request, answered by websockets' server; returns it and the 101."""
    server = ServerProtocol(
        extensions=[ServerPerMessageDeflateFactory()] if offer else None, max_size=None
    )
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET /feed HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
    )
    if offer:
        request += b"Sec-WebSocket-Extensions: " + offer + b"\r\n"
    server.receive_data(request + b"\r\n")
    [req] = server.events_received()
    server.send_response(server.accept(req))  # type: ignore[arg-type]
    return server, b"".join(server.data_to_send())


def agreed(response: bytes) -> DeflateParams | None:
    """A client's reading of the server's answer, enough for these tests."""
    for line in response.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"sec-websocket-extensions":
            [(_, params)] = parse_extensions(value)  # type: ignore[misc]
            flags = {name for name, _ in params}
            bits = {name: int(v) for name, v in params if v}
            return DeflateParams(
                server_no_context_takeover="server_no_context_takeover" in flags,
                client_no_context_takeover="client_no_context_takeover" in flags,
                server_max_window_bits=bits.get("server_max_window_bits", 15),
                client_max_window_bits=bits.get("client_max_window_bits", 15),
            )
    return None


@pytest.mark.parametrize("offer", [None, b"permessage-deflate; client_max_window_bits"])
def test_our_client_core_against_websockets_server(offer: bytes | None) -> None:
    server, response = client_handshake(offer)
    assert response.startswith(b"HTTP/1.1 101")
    params = agreed(response)
    assert (params is None) == (offer is None)
    ours = WebSocketConnection(is_client=True, deflate=params)
    for message in ("hello", "text " * 1000, os.urandom(5000)):
        server.receive_data(ours.send_message(message))
        [frame] = server.events_received()
        expected = message.encode() if isinstance(message, str) else message
        assert bytes(frame.data) == expected  # type: ignore[union-attr]
        if isinstance(message, str):
            server.send_text(expected)
        else:
            server.send_binary(expected)
        events: list[Event] = ours.receive_data(b"".join(server.data_to_send()))
        assert events == [Message(message)]
    server.receive_data(ours.send_close(1000))
    events = ours.receive_data(b"".join(server.data_to_send()))
    assert events == [CloseReceived(1000, "")]
    assert ours.closed
    server.receive_eof()  # the server would have closed TCP itself; either way it is done
    assert server.state is State.CLOSED and server.close_code == 1000
