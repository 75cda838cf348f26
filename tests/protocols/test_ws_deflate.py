"""permessage-deflate: offer parsing, negotiation, and compressed messages against plain zlib."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

from threadloom.protocols.websocket import (
    CloseCode,
    DeflateParams,
    Message,
    WebSocketConnection,
    negotiate_deflate,
)
from threadloom.protocols.websocket.deflate import parse_extensions

KEY = b"\xa1\x0b\x5c\x77"
TAIL = b"\x00\x00\xff\xff"


def frame(b0: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """A masked client frame (masking written out longhand)."""
    n = len(payload) if length is None else length
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 0x10000:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def deflate(data: bytes, wbits: int = -15) -> bytes:
    """What a client sends for ``data``: one raw deflate stream, sync-flushed, tail removed."""
    z = zlib.compressobj(wbits=wbits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def unframe(data: bytes) -> tuple[int, bytes]:
    """One unmasked server frame: (b0, payload)."""
    b0, n = data[0], data[1]
    if n == 126:
        return b0, data[4 : 4 + int.from_bytes(data[2:4], "big")]
    if n == 127:
        return b0, data[10:]
    return b0, data[2 : 2 + n]


# -- parsing offers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"permessage-deflate", [("permessage-deflate", [])]),
        (
            b"permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("x-webkit-deflate-frame", []),
            ],
        ),
        (
            b'Permessage-Deflate ;Server_Max_Window_Bits = "10" ',
            [("permessage-deflate", [("server_max_window_bits", "10")])],
        ),
        (b'x; a="q\\"x"', [None]),  # unescaped, a quoted value must still be a token
        (b'x; a="10"; b=tok', [("x", [("a", "10"), ("b", "tok")])]),
        (b'x; a="1\\0"', [("x", [("a", "10")])]),
        (b", ,x,, y ,", [("x", []), ("y", [])]),
        (b"x; a=", [None]),
        (b"x; =1", [None]),
        (b"x; a=1=2", [None]),
        (b"x y", [None]),
        (b"x; a b", [None]),
        (b"x; a=\x01", [None]),
        (b"; a", [None]),
        (b'x; a="unterminated, y', [None]),
        (b'x, y; a="b c", z', [("x", []), None, ("z", [])]),
    ],
)
def test_parse_extensions(header: bytes, expected: list[object]) -> None:
    assert parse_extensions(header) == expected


def test_parse_extensions_is_linear_on_hostile_quotes() -> None:
    assert parse_extensions(b'x; a="' + b'\\"' * 30000) == [None]
    assert len(parse_extensions(b'x; a="",' * 5000)) == 5000


# -- negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (None, None),
        (b"", None),
        (b"x-webkit-deflate-frame", None),
        (b"permessage-deflate", DeflateParams()),
        (
            b"permessage-deflate; client_max_window_bits",
            DeflateParams(),
        ),
        (
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True),
        ),
        (
            b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            DeflateParams(
                server_max_window_bits=10,
                client_max_window_bits=9,
                state_server_bits=True,
                state_client_bits=True,
            ),
        ),
        (
            b'permessage-deflate; server_max_window_bits="8"',
            DeflateParams(server_max_window_bits=8, state_server_bits=True),
        ),
        # invalid offers are declined and the next one is taken
        (b"permessage-deflate; server_max_window_bits=7, permessage-deflate", DeflateParams()),
        (b"permessage-deflate; server_max_window_bits=16", None),
        (b"permessage-deflate; server_max_window_bits=08", None),
        (b"permessage-deflate; server_max_window_bits", None),
        (b"permessage-deflate; client_max_window_bits=abc", None),
        (b"permessage-deflate; server_no_context_takeover=1", None),
        (b"permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        (b"permessage-deflate; mystery", None),
        (
            b"permessage-deflate; mystery, permessage-deflate; client_no_context_takeover",
            DeflateParams(client_no_context_takeover=True),
        ),
    ],
)
def test_negotiate_deflate(offer: bytes | None, expected: DeflateParams | None) -> None:
    assert negotiate_deflate(offer) == expected


def test_negotiation_can_be_disabled_or_capped() -> None:
    assert negotiate_deflate(b"permessage-deflate", enabled=False) is None
    capped = negotiate_deflate(
        b"permessage-deflate; client_max_window_bits",
        server_max_window_bits=12,
        client_max_window_bits=11,
    )
    assert capped == DeflateParams(
        server_max_window_bits=12, client_max_window_bits=11, state_client_bits=True
    )
    assert capped.header_value() == (
        b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=11"
    )
    # a client that did not offer client_max_window_bits cannot be capped (RFC 7692 7.1.2.2)
    assert negotiate_deflate(b"permessage-deflate", client_max_window_bits=9) == DeflateParams()


def test_header_value_names_what_the_offer_named() -> None:
    params = negotiate_deflate(b"permessage-deflate; server_max_window_bits=15")
    assert params is not None
    assert params.header_value() == b"permessage-deflate; server_max_window_bits=15"
    everything = DeflateParams(True, True, 9, 10)
    assert everything.header_value() == (
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        b"server_max_window_bits=9; client_max_window_bits=10"
    )


# -- receiving compressed messages -------------------------------------------------------


def test_compressed_text_in_one_frame_and_in_fragments() -> None:
    text = "compressible text, " * 200
    payload = deflate(text.encode())
    conn = WebSocketConnection(deflate=DeflateParams())
    assert conn.receive_data(frame(0xC1, payload)) == [Message(text)]
    third = len(payload) // 3
    data = (
        frame(0x41, payload[:third])
        + frame(0x89, b"ping")
        + frame(0x00, payload[third : 2 * third])
        + frame(0x80, payload[2 * third :])
    )
    assert conn.receive_data(data)[-1] == Message(text)


def test_peer_context_takeover_and_reset() -> None:
    for reset in (False, True):
        z = zlib.compressobj(wbits=-15)
        conn = WebSocketConnection(deflate=DeflateParams(client_no_context_takeover=reset))
        for i in range(5):
            data = b"the same message again %d " % i * 20
            out = z.compress(data) + z.flush(zlib.Z_FULL_FLUSH if reset else zlib.Z_SYNC_FLUSH)
            assert conn.receive_data(frame(0xC2, out[:-4])) == [Message(data)]


def test_a_message_ending_with_a_final_block_resets_the_stream() -> None:
    z = zlib.compressobj(wbits=-15)
    final = z.compress(b"one") + z.flush(zlib.Z_FINISH)
    conn = WebSocketConnection(deflate=DeflateParams())
    assert conn.receive_data(frame(0xC2, final + b"\x00junk")) == [Message(b"one")]
    assert conn.receive_data(frame(0xC2, deflate(b"two"))) == [Message(b"two")]


def test_uncompressed_messages_mix_with_compressed_ones() -> None:
    conn = WebSocketConnection(deflate=DeflateParams())
    data = frame(0x81, b"plain") + frame(0xC1, deflate(b"packed")) + frame(0x82, b"raw")
    assert conn.receive_data(data) == [Message("plain"), Message("packed"), Message(b"raw")]


def test_corrupt_compressed_data_is_1007() -> None:
    conn = WebSocketConnection(deflate=DeflateParams())
    conn.receive_data(frame(0xC2, b"\xff\xff\xff\xff"))
    assert conn.closed and conn.close_code == CloseCode.INVALID_DATA


def test_invalid_utf8_inside_compressed_text_is_1007() -> None:
    conn = WebSocketConnection(deflate=DeflateParams())
    conn.receive_data(frame(0xC1, deflate(b"ok \xc3\x28 not ok")))
    assert conn.closed and conn.close_code == CloseCode.INVALID_DATA


def test_size_limit_counts_decompressed_bytes() -> None:
    limit = 10_000
    exact = deflate(b"a" * limit)
    over = deflate(b"a" * (limit + 1))
    assert len(over) < 100
    conn = WebSocketConnection(deflate=DeflateParams(), max_message_size=limit)
    assert conn.receive_data(frame(0xC2, exact)) == [Message(b"a" * limit)]
    assert conn.receive_data(frame(0xC2, over)) == []
    assert conn.close_code == CloseCode.TOO_BIG
    # fragments add up too
    conn = WebSocketConnection(deflate=DeflateParams(), max_message_size=limit)
    conn.receive_data(frame(0x42, over[:20]) + frame(0x80, over[20:]))
    assert conn.close_code == CloseCode.TOO_BIG


def test_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = deflate(bytes(10 * 1024 * 1024))
    assert len(bomb) < 20_000
    data = frame(0xC2, bomb)
    conn = WebSocketConnection(deflate=DeflateParams(), max_message_size=1 << 20)
    tracemalloc.start()
    try:
        for i in range(0, len(data), 4096):
            conn.receive_data(data[i : i + 4096])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert conn.close_code == CloseCode.TOO_BIG
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes"


# -- sending compressed messages ---------------------------------------------------------


def inflate_all(payloads: list[bytes], reset: bool, wbits: int = -15) -> list[bytes]:
    """Decode our payloads as a peer would: one stream, or a fresh one per message."""
    z = zlib.decompressobj(wbits=wbits)
    out = []
    for payload in payloads:
        if reset:
            z = zlib.decompressobj(wbits=wbits)
        out.append(z.decompress(payload + TAIL))
    return out


@pytest.mark.parametrize("no_takeover", [False, True])
def test_sent_messages_with_and_without_context_takeover(no_takeover: bool) -> None:
    conn = WebSocketConnection(deflate=DeflateParams(server_no_context_takeover=no_takeover))
    message = b'{"event": "tick", "payload": "' + b"z" * 200 + b'"}'
    payloads = []
    for _ in range(3):
        b0, payload = unframe(conn.send_message(message))
        assert b0 == 0xC2
        payloads.append(payload)
    assert inflate_all(payloads, reset=no_takeover) == [message] * 3
    if no_takeover:
        assert len(payloads[0]) == len(payloads[1]) == len(payloads[2])
    else:
        assert len(payloads[1]) < len(payloads[0]) // 2  # the window remembers message 1


def test_small_messages_are_sent_uncompressed() -> None:
    conn = WebSocketConnection(deflate=DeflateParams(), compress_min_size=64)
    assert conn.send_message("tiny") == b"\x81\x04tiny"
    assert unframe(conn.send_message("a" * 64))[0] == 0xC1
    conn = WebSocketConnection(deflate=DeflateParams(), compress_min_size=0)
    b0, payload = unframe(conn.send_message(b""))
    assert (b0, payload) == (0xC2, b"\x00")  # RFC 7692 7.2.3.6: an empty message
    assert inflate_all([payload], reset=True) == [b""]


def test_server_window_of_8_bits_is_decodable_with_8_bits() -> None:
    # each message repeats the last one 300 bytes back: a 15-bit compressor would refer to
    # it, which an 8-bit decoder cannot follow ("invalid distance too far back")
    message = random.Random(7).randbytes(300)
    conn = WebSocketConnection(deflate=DeflateParams(server_max_window_bits=8))
    payloads = [unframe(conn.send_message(message))[1] for _ in range(3)]
    assert inflate_all(payloads, reset=False, wbits=-8) == [message] * 3


def test_client_window_of_8_bits_is_decoded() -> None:
    message = bytes(range(200)) * 30
    conn = WebSocketConnection(deflate=DeflateParams(client_max_window_bits=8))
    z = zlib.compressobj(wbits=-9)  # the best any zlib-based client can do for "8"
    for _ in range(3):
        out = z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH)
        assert conn.receive_data(frame(0xC2, out[:-4])) == [Message(message)]
