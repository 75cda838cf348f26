"""The bench's minimal WebSocket framing: lengths at every boundary, masks, partial buffers."""

from __future__ import annotations

import os

import pytest

from threadloom.bench import wsframes


@pytest.mark.parametrize("size", [0, 1, 32, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("masked", [False, True])
def test_frames_round_trip(size: int, masked: bool) -> None:
    payload = os.urandom(size)
    frame = wsframes.encode(wsframes.OP_BINARY, payload, os.urandom(4) if masked else None)
    buffer = bytearray(frame + b"\x81")  # a second frame's first byte follows
    assert wsframes.decode(buffer) == [(True, wsframes.OP_BINARY, payload)]
    assert buffer == b"\x81"


def test_a_partial_frame_waits_for_the_rest() -> None:
    frame = wsframes.encode(wsframes.OP_TEXT, b"x" * 300, b"abcd")
    buffer = bytearray()
    for i in range(len(frame) - 1):
        buffer.append(frame[i])
        assert wsframes.decode(buffer) == []
    buffer.append(frame[-1])
    assert wsframes.decode(buffer) == [(True, wsframes.OP_TEXT, b"x" * 300)]


def test_accept_key_matches_rfc_6455_example() -> None:
    assert wsframes.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
