"""WebSocketConnection on real frame bytes: framing, masking, fragments, UTF-8, close, limits."""

from __future__ import annotations

import os
import sys

import pytest

from threadloom.errors import LocalProtocolError
from threadloom.protocols.websocket import (
    CloseCode,
    CloseReceived,
    ConnectionState,
    DeflateParams,
    Event,
    Message,
    Ping,
    Pong,
    WebSocketConnection,
    frames,
)

KEY = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
FIN = 0x80


def xor(payload: bytes, key: bytes) -> bytes:
    """Masking written out longhand, independent of the code under test."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(b0: int, payload: bytes = b"", *, mask: bool = True, length: int | None = None) -> bytes:
    """A frame as a client (``mask``) or a server sends it; ``length`` may lie."""
    n = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 0x10000:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    return head + KEY + xor(payload, KEY) if mask else head + payload


def close_frame(code: int | None = None, reason: bytes = b"", *, mask: bool = True) -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return frame(FIN | CLOSE, payload, mask=mask)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server output into (b0, payload) pairs."""
    out = []
    pos = 0
    while pos < len(data):
        b0, n = data[pos], data[pos + 1]
        assert not n & 0x80, "a server never masks"
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        out.append((b0, data[pos : pos + n]))
        pos += n
    return out


def failed_with(conn: WebSocketConnection, code: int) -> None:
    """The connection failed: a Close with ``code`` queued, CLOSED, nothing more parsed."""
    assert conn.state is ConnectionState.CLOSED
    assert conn.closed and conn.close_sent and conn.failed
    assert conn.close_code == code
    sent = server_frames(conn.data_to_send())
    assert sent[-1][0] == FIN | CLOSE
    assert int.from_bytes(sent[-1][1][:2], "big") == code
    assert conn.receive_data(frame(FIN | TEXT, b"later")) == []


# -- framing ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_payload_lengths_7_16_and_64_bit(size: int) -> None:
    payload = os.urandom(size)
    conn = WebSocketConnection()
    assert conn.receive_data(frame(FIN | BINARY, payload)) == [Message(payload)]
    out = conn.send_message(payload)
    assert server_frames(out) == [(FIN | BINARY, payload)]
    head_len = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(out) == head_len + size


def test_text_and_binary_messages() -> None:
    conn = WebSocketConnection()
    data = frame(FIN | TEXT, "héllo ✓".encode()) + frame(FIN | BINARY, b"\x00\xff")
    assert conn.receive_data(data) == [Message("héllo ✓"), Message(b"\x00\xff")]
    assert conn.send_message("✓") == b"\x81\x03" + "✓".encode()
    assert conn.send_message(b"ab") == b"\x82\x02ab"
    assert conn.send_message(bytearray(b"ab")) == b"\x82\x02ab"


def test_many_frames_in_one_read_and_one_frame_over_many_reads() -> None:
    conn = WebSocketConnection()
    stream = b"".join(frame(FIN | TEXT, b"m%d" % i) for i in range(50))
    assert conn.receive_data(stream) == [Message(f"m{i}") for i in range(50)]
    big = frame(FIN | BINARY, bytes(range(256)) * 300)
    events: list[Event] = []
    for i in range(0, len(big), 997):
        events += conn.receive_data(big[i : i + 997])
    assert events == [Message(bytes(range(256)) * 300)]


def test_frame_head_encodings() -> None:
    assert frames.frame_head(0x82, 125) == b"\x82\x7d"
    assert frames.frame_head(0x82, 126) == b"\x82\x7e\x00\x7e"
    assert frames.frame_head(0x82, 65536) == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert frames.frame_head(0x82, 5, masked=True) == b"\x82\x85"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 4095, 4096, 4097, 10001])
def test_every_unmasker_agrees(size: int) -> None:
    data = os.urandom(size)
    expected = xor(data, KEY)
    assert frames._unmask_int(data, KEY) == expected
    assert frames._unmask_lanes(data, KEY) == expected
    assert frames._pure_unmask(data, KEY) == expected
    assert frames.unmask(data, KEY) == expected


def test_pure_python_when_no_accelerator_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "websockets.speedups", None)  # import fails
    monkeypatch.setitem(sys.modules, "wsaccel.xormask", None)
    assert frames._find_accelerator() is None
    assert frames.UNMASK_IMPL in ("pure-python", "websockets.speedups", "wsaccel")


def test_rotated_key_continues_the_mask() -> None:
    data = os.urandom(11)
    for cut in range(12):
        rest = frames.unmask(data[cut:], frames.rotate_mask(KEY, cut))
        assert frames.unmask(data[:cut], KEY) + rest == xor(data, KEY)


# -- masking rules -----------------------------------------------------------------------


def test_server_fails_an_unmasked_frame_with_1002() -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(frame(FIN | TEXT, b"hi", mask=False)) == []
    failed_with(conn, CloseCode.PROTOCOL_ERROR)


def test_client_fails_a_masked_frame_and_masks_its_own() -> None:
    conn = WebSocketConnection(is_client=True)
    assert conn.receive_data(frame(FIN | TEXT, b"hi", mask=False)) == [Message("hi")]
    out = conn.send_message(b"hello")
    assert out[:2] == b"\x82\x85"
    assert xor(out[6:], out[2:6]) == b"hello"
    assert conn.receive_data(frame(FIN | TEXT, b"hi")) == []
    assert conn.close_code == CloseCode.PROTOCOL_ERROR
    sent = conn.data_to_send()
    assert sent[0] == FIN | CLOSE
    assert sent[1] & 0x80  # the failing Close is masked too
    assert xor(sent[6:], sent[2:6])[:2] == b"\x03\xea"


def test_client_and_server_cores_talk_to_each_other() -> None:
    deflate = DeflateParams()
    client = WebSocketConnection(is_client=True, deflate=deflate)
    server = WebSocketConnection(deflate=deflate)
    text = "over the fake wire " * 20
    assert server.receive_data(client.send_message(text)) == [Message(text)]
    assert client.receive_data(server.send_message(text.encode())) == [Message(text.encode())]
    assert server.receive_data(client.send_ping(b"?")) == [Ping(b"?")]
    assert client.receive_data(server.data_to_send()) == [Pong(b"?")]
    assert server.receive_data(client.send_close(1001, "bye")) == [CloseReceived(1001, "bye")]
    assert client.receive_data(server.data_to_send()) == [CloseReceived(1001, "")]
    assert client.closed and server.closed


# -- fragmentation and UTF-8 -------------------------------------------------------------


def test_fragmented_message_with_interleaved_ping() -> None:
    conn = WebSocketConnection()
    data = (
        frame(TEXT, b"Hel")
        + frame(FIN | PING, b"p1")
        + frame(CONT, b"lo ")
        + frame(FIN | PONG, b"p2")
        + frame(FIN | CONT, b"world")
    )
    assert conn.receive_data(data) == [Ping(b"p1"), Pong(b"p2"), Message("Hello world")]
    assert server_frames(conn.data_to_send()) == [(FIN | PONG, b"p1")]
    assert conn.data_to_send() == b""


def test_empty_fragments() -> None:
    conn = WebSocketConnection()
    data = frame(BINARY) + frame(CONT, b"x") + frame(CONT) + frame(FIN | CONT)
    assert conn.receive_data(data) == [Message(b"x")]
    assert conn.receive_data(frame(TEXT) + frame(FIN | CONT)) == [Message("")]


def test_utf8_split_inside_a_character_across_fragments() -> None:
    encoded = "κόσμε€𝄞".encode()
    for cut in range(1, len(encoded)):
        conn = WebSocketConnection()
        data = frame(TEXT, encoded[:cut]) + frame(FIN | CONT, encoded[cut:])
        assert conn.receive_data(data) == [Message("κόσμε€𝄞")]


def test_invalid_utf8_fails_fast_before_the_message_ends() -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(frame(TEXT, "κόσμε".encode())) == []
    assert conn.receive_data(frame(CONT, b"\xf4\x90")) == []  # > U+10FFFF: already hopeless
    failed_with(conn, CloseCode.INVALID_DATA)


@pytest.mark.parametrize("bad", [b"\xed\xa0", b"\xc0", b"\xe0\x80", b"\xff", b"\xf5"])
def test_invalid_utf8_fails_fast_inside_one_frame_arriving_in_parts(bad: bytes) -> None:
    data = frame(FIN | TEXT, b"ok" + bad + b"\x80" * 100)
    conn = WebSocketConnection()
    conn.receive_data(data[: 6 + 2 + len(bad)])  # head, key, "ok" and the bad bytes only
    failed_with(conn, CloseCode.INVALID_DATA)


@pytest.mark.parametrize("bad", [b"\xed\xa0\x80", b"\xc3", b"a\x80", b"\xf8\x88\x80\x80\x80"])
def test_invalid_utf8_in_a_whole_message(bad: bytes) -> None:
    conn = WebSocketConnection()
    conn.receive_data(frame(FIN | TEXT, bad))
    failed_with(conn, CloseCode.INVALID_DATA)
    conn = WebSocketConnection()
    conn.receive_data(frame(TEXT, b"x") + frame(FIN | CONT, bad))
    failed_with(conn, CloseCode.INVALID_DATA)


def test_binary_messages_are_not_utf8_checked() -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(frame(FIN | BINARY, b"\xff\xfe")) == [Message(b"\xff\xfe")]


# -- protocol violations -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(FIN | 3), id="reserved-opcode-3"),
        pytest.param(frame(FIN | 7), id="reserved-opcode-7"),
        pytest.param(frame(FIN | 0xB), id="reserved-opcode-11"),
        pytest.param(frame(FIN | 0xF), id="reserved-opcode-15"),
        pytest.param(frame(FIN | 0x40 | TEXT, b"x"), id="rsv1-without-deflate"),
        pytest.param(frame(FIN | 0x20 | TEXT, b"x"), id="rsv2"),
        pytest.param(frame(FIN | 0x10 | BINARY, b"x"), id="rsv3"),
        pytest.param(frame(PING, b"x"), id="fragmented-ping"),
        pytest.param(frame(CLOSE), id="fragmented-close"),
        pytest.param(frame(FIN | PING, b"x" * 126), id="ping-over-125"),
        pytest.param(frame(FIN | PONG, length=200)[:4], id="pong-length-only"),
        pytest.param(frame(FIN | CONT, b"x"), id="continuation-without-message"),
        pytest.param(frame(TEXT, b"a") + frame(FIN | TEXT, b"b"), id="new-message-in-fragmented"),
        pytest.param(b"\x82\xff" + (1 << 63).to_bytes(8, "big"), id="length-high-bit"),
    ],
)
def test_protocol_errors_fail_with_1002(data: bytes) -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(data) == []
    failed_with(conn, CloseCode.PROTOCOL_ERROR)


def test_close_payload_of_one_byte() -> None:
    conn = WebSocketConnection()
    conn.receive_data(frame(FIN | CLOSE, b"\x03"))
    failed_with(conn, CloseCode.PROTOCOL_ERROR)


def test_rsv1_rules_with_deflate() -> None:
    for data in (
        frame(TEXT | 0x40, b"") + frame(FIN | CONT | 0x40, b""),  # RSV1 on a continuation
        frame(FIN | PING | 0x40, b""),  # RSV1 on a control frame
    ):
        conn = WebSocketConnection(deflate=DeflateParams())
        conn.receive_data(data)
        failed_with(conn, CloseCode.PROTOCOL_ERROR)


def test_events_before_a_violation_are_returned() -> None:
    conn = WebSocketConnection()
    data = frame(FIN | TEXT, b"first") + frame(FIN | PING, b"p") + frame(FIN | 5)
    assert conn.receive_data(data) == [Message("first"), Ping(b"p")]
    sent = server_frames(conn.data_to_send())
    assert sent == [(FIN | PONG, b"p"), (FIN | CLOSE, sent[1][1])]
    assert conn.close_code == 1002


# -- closing -----------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes_are_echoed(code: int) -> None:
    conn = WebSocketConnection()
    events = conn.receive_data(close_frame(code, "done ✓".encode()))
    assert events == [CloseReceived(code, "done ✓")]
    assert conn.closed and not conn.failed
    assert (conn.close_code, conn.close_reason) == (code, "done ✓")
    assert server_frames(conn.data_to_send()) == [(FIN | CLOSE, code.to_bytes(2, "big"))]


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes_fail_with_1002(code: int) -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(close_frame(code)) == []
    failed_with(conn, CloseCode.PROTOCOL_ERROR)


def test_close_without_code_is_1005_and_echoed_empty() -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(close_frame()) == [CloseReceived(1005, "")]
    assert conn.close_code == 1005
    assert conn.data_to_send() == b"\x88\x00"


def test_close_reason_must_be_utf8() -> None:
    conn = WebSocketConnection()
    assert conn.receive_data(close_frame(1000, b"\xff")) == []
    failed_with(conn, CloseCode.INVALID_DATA)


def test_bytes_after_the_close_frame_are_ignored() -> None:
    conn = WebSocketConnection()
    data = frame(FIN | TEXT, b"a") + close_frame(1000) + frame(FIN | TEXT, b"b") + b"\xff\xff"
    assert conn.receive_data(data) == [Message("a"), CloseReceived(1000, "")]
    assert conn.receive_data(frame(FIN | TEXT, b"c")) == []
    assert conn.receive_data(b"") == []
    assert conn.close_code == 1000


def test_server_initiated_close() -> None:
    conn = WebSocketConnection()
    assert conn.send_close(1001, "going") == b"\x88\x07\x03\xe9going"
    assert conn.state is ConnectionState.CLOSING and conn.close_sent and not conn.closed
    assert conn.send_close() == b""  # only one Close is ever sent
    assert conn.send_ping(b"late") == b""
    assert conn.send_pong() == b""
    with pytest.raises(LocalProtocolError):
        conn.send_message("late")
    # the peer may still send data and pings before its Close; no Pong follows our Close
    events = conn.receive_data(frame(FIN | TEXT, b"x") + frame(FIN | PING) + close_frame(1001))
    assert events == [Message("x"), Ping(b""), CloseReceived(1001, "")]
    assert conn.data_to_send() == b""
    assert conn.state is ConnectionState.CLOSED and not conn.failed


def test_send_close_validation() -> None:
    conn = WebSocketConnection()
    for code in (999, 1004, 1006, 1015, 2000, 5000):
        with pytest.raises(LocalProtocolError, match="may not be sent"):
            conn.send_close(code)
    with pytest.raises(LocalProtocolError, match="too long"):
        conn.send_close(1000, "é" * 62)
    with pytest.raises(LocalProtocolError, match="too long"):
        conn.send_close(1005, "a reason needs a code")
    assert conn.state is ConnectionState.OPEN
    assert conn.send_close(1005) == b"\x88\x00"


def test_eof_without_close_is_1006() -> None:
    conn = WebSocketConnection()
    conn.receive_data(frame(TEXT, b"partial"))
    assert conn.receive_data(b"") == []
    assert conn.closed and conn.close_code == CloseCode.ABNORMAL and not conn.failed
    assert conn.data_to_send() == b""


def test_nothing_is_sent_once_the_peer_is_gone() -> None:
    conn = WebSocketConnection()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.send_message("anyone?")
    assert conn.send_ping() == b""
    assert conn.send_close() == b""
    assert conn.close_code == 1006


def test_eof_after_our_close_is_still_abnormal() -> None:
    conn = WebSocketConnection()
    conn.send_close()
    conn.receive_data(b"")
    assert conn.closed and conn.close_code == 1006


def test_control_frame_size_limits_when_sending() -> None:
    conn = WebSocketConnection()
    assert conn.send_ping(b"x" * 125)[:2] == b"\x89\x7d"
    with pytest.raises(LocalProtocolError):
        conn.send_ping(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        conn.send_message("\ud800")  # a lone surrogate cannot be UTF-8


# -- size limit --------------------------------------------------------------------------


def test_a_frame_over_the_limit_fails_at_its_head() -> None:
    conn = WebSocketConnection(max_message_size=1000)
    head = frame(FIN | BINARY, length=1001)  # only the head: the payload never comes
    assert conn.receive_data(head) == []
    failed_with(conn, CloseCode.TOO_BIG)


def test_fragments_adding_up_over_the_limit() -> None:
    conn = WebSocketConnection(max_message_size=1000)
    data = frame(BINARY, b"x" * 600) + frame(FIN | CONT, b"x" * 400)
    assert conn.receive_data(data) == [Message(b"x" * 1000)]
    conn.receive_data(frame(TEXT, b"x" * 600) + frame(CONT, length=401))
    failed_with(conn, CloseCode.TOO_BIG)


def test_exactly_the_limit_in_one_frame_is_fine() -> None:
    conn = WebSocketConnection(max_message_size=1000)
    assert conn.receive_data(frame(FIN | TEXT, b"y" * 1000)) == [Message("y" * 1000)]
    conn.receive_data(frame(FIN | TEXT, b"y" * 1001))
    failed_with(conn, CloseCode.TOO_BIG)
