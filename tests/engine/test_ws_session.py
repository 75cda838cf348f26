"""The WebSocket session core with a fake clock: deadlines are numbers, nothing sleeps.

A client-side RFC 6455 core plays the peer: it makes the frames the session receives and
parses the bytes the session answers with.
"""

from __future__ import annotations

import pytest

from threadloom.engine.ws_session import WSSession
from threadloom.interfaces.websocket import ConnectionClosedError, ConnectionClosedOK
from threadloom.protocols.websocket import (
    CloseReceived,
    Event,
    Ping,
    WebSocketConnection,
)

INTERVAL = 10.0
CLOSE_TIMEOUT = 5.0


def pair(max_size: int = 1000) -> tuple[WSSession, WebSocketConnection]:
    server = WebSocketConnection(max_message_size=max_size)
    session = WSSession(server, 0.0, ping_interval=INTERVAL, close_timeout=CLOSE_TIMEOUT)
    return session, WebSocketConnection(is_client=True)


def peer_sees(peer: WebSocketConnection, data: bytes) -> list[Event]:
    return peer.receive_data(data)


def test_a_silent_peer_is_pinged_then_closed_with_1011() -> None:
    session, peer = pair()
    assert session.deadline() == INTERVAL
    assert session.tick(INTERVAL - 0.1) == b""  # early: nothing
    ping = session.tick(INTERVAL)
    assert peer_sees(peer, ping) == [Ping(b"")]
    assert session.deadline() == 2 * INTERVAL  # the pong is awaited one interval
    assert session.tick(2 * INTERVAL - 0.1) == b""
    close = session.tick(2 * INTERVAL)
    assert peer_sees(peer, close) == [CloseReceived(1011, "keepalive ping timeout")]
    assert session.ending == (1011, "keepalive ping timeout")
    assert session.done and session.deadline() is None
    with pytest.raises(ConnectionClosedError) as ended:
        session.next_message()
    assert (ended.value.code, ended.value.reason) == (1011, "keepalive ping timeout")


def test_a_pong_ends_the_wait_and_bytes_reset_the_silence() -> None:
    session, peer = pair()
    peer_sees(peer, session.tick(INTERVAL))  # the ping; the client core queues its pong
    assert session.receive(peer.data_to_send(), 12.0) == b""
    assert session.deadline() == 12.0 + INTERVAL  # silence counts from the pong again
    assert session.receive(peer.send_message("hi"), 15.0) == b""
    assert session.deadline() == 15.0 + INTERVAL
    assert session.next_message() == "hi"
    assert session.next_message() is None
    assert not session.done


def test_no_interval_no_deadline() -> None:
    session = WSSession(WebSocketConnection(), 0.0, ping_interval=0)
    assert session.deadline() is None
    assert session.tick(1e9) == b""
    assert not session.done


def test_our_close_unanswered_ends_after_the_close_timeout_with_our_code() -> None:
    session, peer = pair()
    close = session.close(4001, "done", 100.0)
    assert peer_sees(peer, close) == [CloseReceived(4001, "done")]
    assert session.deadline() == 100.0 + CLOSE_TIMEOUT  # the ping clock no longer counts
    assert session.tick(100.0 + CLOSE_TIMEOUT - 0.1) == b""
    assert not session.done
    assert session.tick(100.0 + CLOSE_TIMEOUT) == b""
    assert session.ending == (4001, "done")


def test_our_close_answered_with_another_code_still_ends_with_ours() -> None:
    session, peer = pair()
    session.close(4001, "done", 0.0)
    session.receive(peer.send_message("late"), 1.0)  # after our Close: dropped
    session.receive(peer.send_close(1000, "whatever"), 1.0)
    assert session.ending == (4001, "done")
    with pytest.raises(ConnectionClosedError):
        session.next_message()  # "late" was dropped


def test_sending_after_our_close_raises_what_the_handler_will_see() -> None:
    session, _ = pair()
    session.going_away(0.0)
    with pytest.raises(ConnectionClosedOK) as closed:
        session.send_message("x")
    assert (closed.value.code, closed.value.reason) == (1001, "server shutting down")
    assert session.close(1000, "", 0.0) == b""  # one Close at most


def test_messages_before_the_peer_close_are_read_first() -> None:
    session, peer = pair()
    echo = session.receive(peer.send_message("one") + peer.send_close(4000, "bye"), 0.0)
    assert peer_sees(peer, echo) == [CloseReceived(4000, "")]  # the core echoes the code
    assert session.next_message() == "one"
    with pytest.raises(ConnectionClosedError) as closed:
        session.next_message()
    assert (closed.value.code, closed.value.reason) == (4000, "bye")


def frame(b0: int, payload: bytes) -> bytes:
    """One masked client frame, bytes as given (the client core refuses to send bad ones)."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((b0, 0x80 | len(payload))) + mask + masked


@pytest.mark.parametrize(
    ("data", "ending"),
    [
        (frame(0x88, b""), (1005, "")),
        (frame(0x88, b"\x0f\xa0bye"), (4000, "bye")),
        (frame(0x83, b""), (1002, "reserved opcode 3")),
        (frame(0x81, b"ok \xff"), (1007, "invalid UTF-8")),
        (frame(0x81, b"a" * 101), (1009, "message too big")),
        (b"", (1006, "connection lost")),
    ],
    ids=["close-no-code", "close-code", "protocol-error", "invalid-utf8", "too-big", "eof"],
)
def test_each_ending_from_the_peer(data: bytes, ending: tuple[int, str]) -> None:
    session, _ = pair(max_size=100)
    session.receive(data, 1.0)
    assert session.ending == ending
    assert session.deadline() is None


def test_endings_from_our_side() -> None:
    for act, ending in [
        (lambda s: s.finish(True, 0.0), (1011, "handler failed")),
        (lambda s: s.finish(False, 0.0), (1000, "")),
        (lambda s: s.going_away(0.0), (1001, "server shutting down")),
    ]:
        session, _ = pair()
        act(session)
        session.tick(CLOSE_TIMEOUT)
        assert session.ending == ending
    session, _ = pair()
    assert session.lost().code == 1006
    assert session.ending == (1006, "connection lost")
