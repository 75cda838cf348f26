"""The sans-I/O WebSocket core (RFC 6455, with permessage-deflate from RFC 7692).

It imports no socket, selector, thread or event loop, and never reads the clock: the
engine drives it from blocking threads and from asyncio alike. ``handshake`` judges the
HTTP Upgrade request (parsed by the HTTP core) and frames the 101 or the refusal;
``deflate`` negotiates and runs permessage-deflate; ``connection`` turns bytes into
events and messages into frames after the handshake; ``frames`` holds the framing
primitives (opcodes, close codes, masking).
"""

from threadloom.protocols.websocket.connection import (
    CloseReceived,
    ConnectionState,
    Event,
    Message,
    Ping,
    Pong,
    WebSocketConnection,
)
from threadloom.protocols.websocket.deflate import DeflateParams, negotiate_deflate
from threadloom.protocols.websocket.frames import CloseCode, Opcode
from threadloom.protocols.websocket.handshake import (
    Handshake,
    HandshakeError,
    accept_fields,
    accept_key,
    accept_response,
    check_connect_request,
    check_request,
    is_upgrade_request,
    reject_response,
)

__all__ = [
    "CloseCode",
    "CloseReceived",
    "ConnectionState",
    "DeflateParams",
    "Event",
    "Handshake",
    "HandshakeError",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "WebSocketConnection",
    "accept_fields",
    "accept_key",
    "accept_response",
    "check_connect_request",
    "check_request",
    "is_upgrade_request",
    "negotiate_deflate",
    "reject_response",
]
