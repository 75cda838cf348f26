"""Fuzz target for the sans-I/O WebSocket core: any bytes in, no crash, no hang, a close.

``one_input(data)``: the first byte chooses the side (server or client), permessage-deflate
(off, default, or no context takeover with small windows), a small or a large message limit
and how the rest is cut into reads. Whatever the bytes:

* the core never raises (peer violations become a Close with 1002, 1007 or 1009);
* at EOF it is closed, and nothing more is parsed after that;
* cutting the bytes differently never changes the events, the state, the close code or the
  frames the core owes the peer (except that bytes with two faults fail with the code of
  whichever one the reads revealed first: 1002, 1007 or 1009);
* what it owes the peer is whole frames: every frame it writes parses back, and a Close is
  the last one.

The WebSocket core's own property tests (``tests/protocols/test_ws_properties.py``) explore
structured traffic with hypothesis; this target is for coverage-guided runs (atheris).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from threadloom.protocols.websocket import DeflateParams, WebSocketConnection

DEFLATES = [None, DeflateParams(), DeflateParams(True, True, 9, 9)]
#: Close codes of a connection the core failed (protocol error, bad data, too big).
_FAILURES = frozenset({1002, 1007, 1009})


def pieces(data: bytes, step: int) -> list[bytes]:
    """``data`` in reads of ``step`` bytes (0: all at once); never an empty one (EOF)."""
    if not step:
        return [data] if data else []
    return [data[i : i + step] for i in range(0, len(data), step)]


def _make(control: int) -> WebSocketConnection:
    return WebSocketConnection(
        is_client=bool(control & 0x01),
        deflate=DEFLATES[(control >> 1) % 3],
        max_message_size=256 if control & 0x08 else 1 << 20,
    )


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """The frames in ``data`` (what the core wrote) as (opcode, unmasked payload), checking
    each is whole. Unmasked: a client masks with a random key, so only payloads compare."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        key = data[pos : pos + 4] if b1 & 0x80 else b"\0\0\0\0"
        pos += 4 if b1 & 0x80 else 0
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos : pos + n]))
        pos += n
        assert pos <= len(data), "a partial frame was written"
        frames.append((b0, payload))
    return frames


def run(control: int, payload: bytes, step: int) -> tuple[Any, ...]:
    conn = _make(control)
    events: list[Any] = []
    sent = b""
    for piece in pieces(payload, step):
        events += conn.receive_data(piece)
        sent += conn.data_to_send()
    events += conn.receive_data(b"")
    sent += conn.data_to_send()
    assert conn.closed
    assert conn.receive_data(b"\x81\x80\x00\x00\x00\x00") == []  # nothing after the end
    frames = frames_of(sent)
    assert all(b0 & 0x0F != 0x8 for b0, _ in frames[:-1]), "frames after our Close"
    # Bytes with two faults (badly compressed and bad UTF-8, or too big and badly
    # compressed) fail either way, with the code and reason of whichever fault the reads
    # let the core see first: compare "we failed it", not which of 1002/1007/1009.
    failed = conn.close_code in _FAILURES
    code = "failed" if failed else conn.close_code
    return events, conn.state, code, [(b0, b"" if failed else p[:2]) for b0, p in frames]


def one_input(data: bytes) -> None:
    """The fuzz target (module docstring)."""
    if not data:
        return
    control, payload = data[0], data[1:]
    whole = run(control, payload, 0)
    assert run(control, payload, 1 + (control >> 4) % 7) == whole
    if len(payload) <= 1024:
        assert run(control, payload, 1) == whole


def seeds() -> list[bytes]:
    """Client traffic of every kind (the seeds directory), under each control byte."""
    raw = [p.read_bytes() for p in sorted((Path(__file__).parent / "seeds" / "ws").glob("*"))]
    return [bytes([control]) + case for case in raw for control in (0x00, 0x02, 0x04, 0x1A)]
