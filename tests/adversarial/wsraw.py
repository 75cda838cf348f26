"""A raw WebSocket client for attacks: exact frames out, the server's frames parsed back.

The ``websockets`` client is too well behaved to send a deflate bomb by hand, a million
one-byte fragments or pings it never waits for, so these helpers speak RFC 6455 directly.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

from threadloom.testing import timeout_factor

MASK = b"\x37\xfa\x21\x3d"


def handshake(address: object, deflate: bool = False, path: str = "/") -> socket.socket:
    """Connect and upgrade; returns the socket positioned after the 101 head."""
    sock = socket.create_connection(address)  # type: ignore[arg-type]
    sock.settimeout(10 * timeout_factor())
    key = base64.b64encode(os.urandom(16)).decode()
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert deflate == (b"permessage-deflate" in head.lower()), head
    return sock


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, 0x80 | 127)) + struct.pack("!Q", n)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload)
    return head + MASK + masked


def _mask(payload: bytes) -> bytes:
    """Mask a long payload quickly (XOR as big integers)."""
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(len(payload), "big")


def deflated(data: bytes) -> bytes:
    """``data`` compressed as permessage-deflate sends it (the trailing 00 00 ff ff cut)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next server frame (opcode, payload); raises ConnectionError at EOF."""
    b0, b1 = _exactly(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _exactly(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _exactly(sock, 8))[0]
    return b0 & 0x0F, _exactly(sock, n)


def close_code(sock: socket.socket) -> int:
    """Read frames until the server's Close; its code (1005 if it carried none)."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed")
        data += chunk
    return bytes(data)
