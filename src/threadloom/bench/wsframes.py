"""Just enough RFC 6455 framing for a load generator and a do-nothing echo responder.

The bench's WebSocket client sends one small message at a time and waits for its echo; the
ceiling responder answers each client frame with the same payload. Neither needs extensions,
fragmentation or UTF-8 checks, and both must be cheap enough not to be what is measured, so
this is a few functions over byte buffers, not a protocol implementation. (The server under
test uses threadloom's own WebSocket core; nothing here is shared with it.)
"""

from __future__ import annotations

import base64
import hashlib
import os

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Frame = tuple[bool, int, bytes]  # (fin, opcode, payload)


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value that answers ``key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def new_key() -> bytes:
    """A fresh ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16))


def handshake_request(host: str, path: str, key: bytes) -> bytes:
    """The client's Upgrade request; no extensions, so every frame stays uncompressed."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode()}\r\n\r\n"
    ).encode()


def _xor(payload: bytes, mask: bytes) -> bytes:
    """Mask or unmask ``payload`` (the operation is its own inverse)."""
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def encode(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; clients must pass a 4-byte ``mask``, servers must not."""
    head = bytearray([0x80 | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if mask:
        return bytes(head) + mask + _xor(payload, mask)
    return bytes(head) + payload


def decode(buffer: bytearray) -> list[Frame]:
    """Remove every complete frame from the front of ``buffer`` and return them, unmasked."""
    frames: list[Frame] = []
    pos = 0
    while len(buffer) - pos >= 2:
        first, second = buffer[pos], buffer[pos + 1]
        n, at = second & 0x7F, pos + 2
        if n == 126:
            if len(buffer) - at < 2:
                break
            n, at = int.from_bytes(buffer[at : at + 2], "big"), at + 2
        elif n == 127:
            if len(buffer) - at < 8:
                break
            n, at = int.from_bytes(buffer[at : at + 8], "big"), at + 8
        mask = b""
        if second & 0x80:
            if len(buffer) - at < 4:
                break
            mask, at = bytes(buffer[at : at + 4]), at + 4
        if len(buffer) - at < n:
            break
        payload = bytes(buffer[at : at + n])
        frames.append((bool(first & 0x80), first & 0x0F, _xor(payload, mask) if mask else payload))
        pos = at + n
    del buffer[:pos]
    return frames
