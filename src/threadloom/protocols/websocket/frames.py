"""RFC 6455 framing primitives: opcodes, close codes, masking and frame heads.

Theory of operation
-------------------
Nothing here holds state: these are the pure functions that
:class:`~threadloom.protocols.websocket.connection.WebSocketConnection` calls to build and
judge frames, kept apart so each can be measured (``benchmarks/ws_core_micro.py``) and
tested alone. A rule broken by the peer raises :class:`Violation` with the close code to
fail the connection with; the connection turns it into a Close frame.

A frame is ``b0 b1 [extended length] [mask key] payload`` (RFC 6455 5.2): ``b0`` holds FIN,
RSV1-3 and the opcode; ``b1`` the MASK bit and a 7-bit length, where 126 and 127 announce a
16-bit or 63-bit length that follows. Clients mask every frame with a 4-byte key; servers
never mask.

Unmasking is the one per-byte operation in the core. :func:`unmask` uses a C accelerator
when one happens to be installed (``websockets.speedups``, or ``wsaccel``; neither is a
dependency) and otherwise pure Python: one big-integer XOR for payloads up to
:data:`TRANSLATE_FROM` bytes, and above it four ``bytes.translate`` lanes (one per key byte),
which is about twice as fast on large payloads. ``benchmarks/ws_core_micro.py`` prints the
figures behind both choices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import IntEnum

#: Payload length from which the pure-Python unmasker switches to translate lanes.
TRANSLATE_FROM = 4096


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 5.2); 3-7 and 11-15 are reserved and fail the connection."""

    CONT = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class CloseCode(IntEnum):
    """The close codes this core sends or names (RFC 6455 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class Violation(Exception):
    """The peer broke the protocol: fail the connection with this close ``code``.

    Internal to the core: :class:`WebSocketConnection` catches it, queues the Close frame
    and never lets it reach the driver.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_code_allowed(code: int) -> bool:
    """May this code appear in a Close frame on the wire?

    RFC 6455 7.4: 1000-1003 and 1007-1011 are defined, 1012-1014 were registered later
    (IANA), 3000-4999 belong to libraries and applications. 1004 is reserved, 1005, 1006
    and 1015 must never be sent, and everything else below 3000 is reserved for future
    RFCs; Autobahn's test suite expects all of those to fail the connection.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask_int(data: bytes, mask: bytes) -> bytes:
    """XOR with the key repeated, as one big-integer operation: cheapest for small payloads."""
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]


def _unmask_lanes(data: bytes, mask: bytes) -> bytes:
    """XOR lane by lane: every 4th byte shares a key byte, so one translate table does it."""
    out = bytearray(data)
    tables = _XOR_TABLES
    for lane in range(4):
        out[lane::4] = data[lane::4].translate(tables[mask[lane]])
    return bytes(out)


def _pure_unmask(data: bytes, mask: bytes) -> bytes:
    """The pure-Python choice by size (``_unmask_int`` inlined: a call costs 10% here)."""
    n = len(data)
    if n >= TRANSLATE_FROM:
        return _unmask_lanes(data, mask)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _find_accelerator() -> tuple[str, Callable[[bytes, bytes], bytes]] | None:
    """(name, C unmasker) from a package that happens to be installed, or None."""
    try:
        from websockets.speedups import apply_mask  # noqa: PLC0415

        return "websockets.speedups", apply_mask
    except ImportError:
        pass
    try:
        from wsaccel.xormask import XorMaskerSimple  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return None

    def wsaccel_unmask(data: bytes, mask: bytes) -> bytes:
        return XorMaskerSimple(mask).process(data)  # type: ignore[no-any-return]

    return "wsaccel", wsaccel_unmask


#: ``unmask(payload, key) -> bytes``, the fastest implementation here, and its name.
UNMASK_IMPL, unmask = _find_accelerator() or ("pure-python", _pure_unmask)


def rotate_mask(mask: bytes, consumed: int) -> bytes:
    """The key to apply to the rest of a payload after ``consumed`` bytes were unmasked."""
    shift = consumed & 3
    return mask[shift:] + mask[:shift] if shift else mask


def _small_heads(b0: int) -> tuple[bytes, ...]:
    return tuple(bytes((b0, n)) for n in range(126))


#: Unmasked heads for payloads up to 125 bytes, by first byte: a table lookup per frame sent.
SMALL_HEADS = {b0: _small_heads(b0) for b0 in (0x81, 0x82, 0xC1, 0xC2, 0x88, 0x89, 0x8A)}


def frame_head(b0: int, length: int, masked: bool = False) -> bytes:
    """The bytes before a payload of ``length``: ``b0``, the length encoding, no key."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        if not masked and b0 in SMALL_HEADS:
            return SMALL_HEADS[b0][length]
        return bytes((b0, mask_bit | length))
    if length < 0x10000:
        return bytes((b0, mask_bit | 126)) + length.to_bytes(2, "big")
    return bytes((b0, mask_bit | 127)) + length.to_bytes(8, "big")


def encode_frame(b0: int, payload: bytes, masked: bool = False) -> bytes:
    """A whole frame; a client (``masked``) gets a fresh random key per frame (RFC 6455 5.3)."""
    if not masked:
        return frame_head(b0, len(payload)) + payload
    key = os.urandom(4)
    return frame_head(b0, len(payload), True) + key + unmask(payload, key)


def close_payload(code: int, reason: str) -> bytes:
    """A Close frame's payload: the code in network order and the UTF-8 reason.

    1005 (NO_STATUS) means "no code": the payload is then empty, as RFC 6455 7.1.5 describes
    for a Close frame that carries no status.
    """
    if code == CloseCode.NO_STATUS:
        return b""
    return code.to_bytes(2, "big") + reason.encode("utf-8")


def head_error(b0: int, deflate: bool) -> str:
    """Why a frame's first byte is invalid (only called once it is known to be)."""
    opcode = b0 & 0x0F
    if b0 & 0x30:
        return "reserved bits RSV2/RSV3 set"
    if 3 <= opcode <= 7 or opcode >= 11:
        return f"reserved opcode {opcode}"
    if b0 & 0x40:
        if not deflate:
            return "RSV1 set without permessage-deflate"
        return "RSV1 set on a control or continuation frame"
    return "fragmented control frame"


def parse_close(payload: bytes) -> tuple[int, str]:
    """A received Close payload: (code, reason), 1005 when empty; Violation when invalid."""
    if not payload:
        return CloseCode.NO_STATUS.value, ""
    if len(payload) == 1:
        raise Violation(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not close_code_allowed(code):
        raise Violation(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise Violation(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None


def reject_surrogate(pending: bytes) -> None:
    """Fail fast on ED A0..BF: CPython's decoder waits for the third byte of a surrogate."""
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise Violation(CloseCode.INVALID_DATA, "invalid UTF-8")
