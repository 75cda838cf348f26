"""Property tests: whatever bytes arrive, however they are split, the core neither raises nor
hangs, and it reaches the same events and state as when the bytes arrive in one piece."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadloom.protocols.websocket import (
    DeflateParams,
    Event,
    Message,
    WebSocketConnection,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = b"\x0f\xf0\x55\xaa"
#: Well-formed traffic most of the time, so that the deeper states are reached too.
KINDS = ["text"] * 4 + ["binary"] * 3 + ["fragmented"] * 4 + ["control"] * 3 + ["junk", "raw"]
DEFLATE_CHOICES = [None, DeflateParams(), DeflateParams(True, True, 9, 9)]


def encode(b0: int, payload: bytes, *, mask: bool = True, long_form: int = 0) -> bytes:
    """A frame; ``long_form`` 1 or 2 forces the 16- or 64-bit length encoding."""
    n = len(payload)
    bit = 0x80 if mask else 0
    if long_form == 2 or n >= 0x10000:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    elif long_form == 1 or n >= 126:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | n))
    if not mask:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


@st.composite
def conversation(draw: st.DrawFn, deflate: DeflateParams | None) -> bytes:
    """Mostly well-formed client traffic (messages, fragments, control frames, and with
    ``deflate`` payloads from a real zlib stream), with occasional garbage spliced in."""
    z = zlib.compressobj(wbits=-9)
    reset = deflate is not None and deflate.client_no_context_takeover
    flush = zlib.Z_FULL_FLUSH if reset else zlib.Z_SYNC_FLUSH
    out = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(KINDS))
        long_form = draw(st.sampled_from([0, 0, 0, 1, 2]))
        if kind in ("text", "binary", "fragmented"):
            text = draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
            payload = text if kind != "binary" else draw(st.binary(max_size=200))
            rsv1 = 0x40 if deflate and draw(st.booleans()) else 0
            if rsv1:
                payload = (z.compress(payload) + z.flush(flush))[:-4]
            opcode = 0x2 if kind == "binary" else 0x1
            if kind == "fragmented":
                cut = draw(st.integers(0, len(payload)))
                out.append(encode(rsv1 | opcode, payload[:cut]))
                out.append(encode(0x89, draw(st.binary(max_size=10))))
                out.append(encode(0x80, payload[cut:], long_form=long_form))
            else:
                out.append(encode(0x80 | rsv1 | opcode, payload, long_form=long_form))
        elif kind == "control":
            b0 = draw(st.sampled_from([0x88, 0x89, 0x8A]))
            out.append(encode(b0, draw(st.binary(max_size=20))))
        elif kind == "raw":  # any first byte, any payload, masked or not
            b0 = draw(st.integers(0, 255))
            out.append(encode(b0, draw(st.binary(max_size=40)), mask=draw(st.booleans())))
        else:
            out.append(draw(st.binary(min_size=1, max_size=12)))
    return b"".join(out)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (those inside it), never into an empty piece (that is EOF)."""
    points = [0, *sorted({cut for cut in cuts if 0 < cut < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def run(conn: WebSocketConnection, pieces: list[bytes]) -> tuple[Any, ...]:
    """Feed the pieces then EOF; everything observable about the outcome."""
    events: list[Event] = []
    sent = b""
    for piece in pieces:
        events += conn.receive_data(piece)
        sent += conn.data_to_send()
    events += conn.receive_data(b"")
    sent += conn.data_to_send()
    assert conn.closed
    assert conn.receive_data(b"\x81\x80" + KEY) == []
    return events, conn.state, conn.close_code, conn.close_reason, conn.failed, sent


@SETTINGS
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    client=st.booleans(),
    deflate=st.sampled_from(DEFLATE_CHOICES),
)
def test_random_bytes_never_raise(
    data: bytes, cuts: list[int], client: bool, deflate: DeflateParams | None
) -> None:
    conn = WebSocketConnection(is_client=client, deflate=deflate, max_message_size=300)
    run(conn, chunks(data, cuts))


@SETTINGS
@given(data=st.data(), deflate=st.sampled_from(DEFLATE_CHOICES))
def test_same_outcome_whatever_the_chunking(
    data: st.DataObject, deflate: DeflateParams | None
) -> None:
    stream = data.draw(conversation(deflate))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    limit = data.draw(st.sampled_from([40, 1 << 20]))
    whole = run(WebSocketConnection(deflate=deflate, max_message_size=limit), [stream])
    split = run(WebSocketConnection(deflate=deflate, max_message_size=limit), chunks(stream, cuts))
    bytewise = run(
        WebSocketConnection(deflate=deflate, max_message_size=limit),
        [stream[i : i + 1] for i in range(len(stream))],
    )
    assert split == whole
    assert bytewise == whole


@SETTINGS
@given(
    messages=st.lists(st.text(max_size=300) | st.binary(max_size=300), max_size=10),
    cuts=st.lists(st.integers(0, 5000), max_size=15),
    deflate=st.sampled_from(DEFLATE_CHOICES),
    compress_min=st.sampled_from([0, 128]),
)
def test_messages_survive_the_round_trip(
    messages: list[str | bytes], cuts: list[int], deflate: DeflateParams | None, compress_min: int
) -> None:
    client = WebSocketConnection(is_client=True, deflate=deflate, compress_min_size=compress_min)
    server = WebSocketConnection(deflate=deflate, compress_min_size=compress_min)
    messages = [m for m in messages if not (isinstance(m, str) and _has_surrogate(m))]
    upstream = b"".join(client.send_message(m) for m in messages)
    events: list[Event] = []
    for piece in chunks(upstream, cuts):
        events += server.receive_data(piece)
    assert events == [Message(m) for m in messages]
    downstream = b"".join(server.send_message(m) for m in messages)
    events = []
    for piece in chunks(downstream, cuts):
        events += client.receive_data(piece)
    assert events == [Message(m) for m in messages]


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
