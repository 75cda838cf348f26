"""ServerConnection on valid input: bytes in, Request objects out (no sockets)."""

from __future__ import annotations

import pytest

from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1 import HTTPLimits, Request, ServerConnection

HOST = b"Host: example.com\r\n"


def parse(raw: bytes, limits: HTTPLimits | None = None) -> ServerConnection:
    conn = ServerConnection(limits) if limits else ServerConnection()
    conn.receive_data(raw)
    return conn


def paused(conn: ServerConnection) -> bool:
    """A call, not a property read, so mypy does not narrow it between feeds."""
    return conn.paused


def complete(request: Request) -> bool:
    return request.body.complete


def only(conn: ServerConnection) -> Request:
    assert len(conn.requests) == 1
    return conn.requests[0]


def test_simple_get() -> None:
    conn = parse(b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nX-Pad:  v \t\r\n\r\n")
    request = only(conn)
    assert request.method == "GET"
    assert request.target == b"/a/b%20c?x=1&y=2"
    assert request.path == b"/a/b%20c"
    assert request.query == b"x=1&y=2"
    assert request.http_version == "1.1"
    assert request.headers == [(b"host", b"example.com"), (b"x-pad", b"v")]
    assert request.keep_alive
    assert not request.expect_continue and not request.chunked
    assert request.content_length is None and request.upgrade is None
    assert request.body.complete and request.body.take() == b""
    assert not conn.head_started and not conn.paused and not conn.peer_closed


def test_absolute_form_target() -> None:
    request = only(parse(b"GET http://example.com:8080?q=1 HTTP/1.1\r\n" + HOST + b"\r\n"))
    assert (request.target, request.path, request.query) == (
        b"http://example.com:8080?q=1",
        b"/",
        b"q=1",
    )


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Connection: keep-alive\r\n", True),
        (b"1.0", b"", False),
        (b"1.0", b"Connection: keep-alive\r\n", True),
        (b"1.0", b"Connection: close\r\n", False),
    ],
)
def test_keep_alive_rules(version: bytes, connection: bytes, keep_alive: bool) -> None:
    request = only(parse(b"GET / HTTP/%s\r\n%s%s\r\n" % (version, HOST, connection)))
    assert request.http_version == version.decode()
    assert request.keep_alive is keep_alive


def test_bytes_after_a_closing_request_are_dropped() -> None:
    conn = parse(b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n")
    assert only(conn).path == b"/"
    conn.receive_data(b"garbage that is never answered")
    assert len(conn.requests) == 1


def test_pipelined_in_order() -> None:
    raw = b"".join(b"GET /%d HTTP/1.1\r\n%s\r\n" % (i, HOST) for i in range(5))
    raw += b"POST /p HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabcGET /last"
    conn = parse(raw)
    assert [r.path for r in conn.requests] == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/p"]
    assert conn.requests[-1].body.take() == b"abc"
    assert conn.head_started
    conn.receive_data(b" HTTP/1.1\r\n" + HOST + b"\r\n")
    assert conn.requests[-1].path == b"/last" and not conn.head_started


def test_one_byte_at_a_time() -> None:
    raw = b"POST /up?x HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nX-A: b\r\n\r\nhello"
    conn = ServerConnection()
    for i in range(len(raw)):
        conn.receive_data(raw[i : i + 1])
        assert conn.head_started == (i < len(raw) - 6)
    request = only(conn)
    assert request.headers == [
        (b"host", b"example.com"),
        (b"content-length", b"5"),
        (b"x-a", b"b"),
    ]
    assert (request.path, request.query, request.content_length) == (b"/up", b"x", 5)
    assert request.body.complete and request.body.take() == b"hello"


def test_content_length_streamed() -> None:
    conn = parse(b"PUT /f HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n0123")
    body = only(conn).body
    assert (body.buffered, body.received, body.complete) == (4, 4, False)
    assert body.take(2) == b"01"
    assert body.buffered == 2
    conn.receive_data(b"45")
    conn.receive_data(b"6789GET")
    assert body.complete and body.received == 10
    assert body.take(3) == b"234"
    assert body.take() == b"56789"
    assert body.buffered == 0 and body.take() == b""


def test_chunked_with_extensions_and_trailers() -> None:
    raw = (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b'5;a=b;c="d;e"\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n'
    )
    request = only(parse(raw))
    assert request.chunked and request.content_length is None
    assert request.body.complete and request.body.take() == b"hello world"
    # trailers are checked and dropped: the head keeps only the head's fields
    assert [name for name, _ in request.headers] == [b"host", b"transfer-encoding"]


def test_chunked_streamed() -> None:
    conn = parse(b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n4\r\nab")
    body = only(conn).body
    assert body.take() == b"ab" and not complete(conn.requests[0])
    conn.receive_data(b"cd\r\n0\r\n")
    assert not complete(conn.requests[0])
    conn.receive_data(b"\r\n")
    assert complete(conn.requests[0]) and body.take() == b"cd"


def test_expect_continue() -> None:
    raw = b"POST / HTTP/1.1\r\n" + HOST + b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
    request = only(parse(raw))
    assert request.expect_continue and not request.body.complete


def test_upgrade_keeps_trailing_bytes() -> None:
    raw = b"GET /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    conn = parse(raw + b"\x81\x00")
    assert only(conn).upgrade == b"websocket"
    assert conn.upgraded and conn.trailing_data == b"\x81\x00"
    conn.receive_data(b"more")
    assert conn.trailing_data == b"\x81\x00more" and len(conn.requests) == 1
    conn.receive_data(b"")
    assert conn.peer_closed


def test_upgrade_in_a_read_bigger_than_max_header_size() -> None:
    raw = b"GET /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    frames = bytes(range(256)) * 4
    conn = parse(raw + frames, HTTPLimits(max_header_size=100))
    assert only(conn).upgrade == b"websocket"
    assert conn.trailing_data == frames


def test_upgrade_header_without_connection_upgrade_is_ignored() -> None:
    request = only(parse(b"GET / HTTP/1.1\r\n" + HOST + b"Upgrade: websocket\r\n\r\n"))
    assert request.upgrade is None


def test_declined_upgrade_resumes_http() -> None:
    raw = b"GET / HTTP/1.1\r\n" + HOST + b"Connection: upgrade\r\nUpgrade: h2c\r\n\r\n"
    conn = parse(raw + b"GET /next HTTP/1.1\r\n")
    conn.decline_upgrade()
    assert not conn.upgraded and conn.trailing_data == b""
    conn.receive_data(HOST + b"\r\n")
    assert [r.path for r in conn.requests] == [b"/", b"/next"]


def test_paused_over_body_high_water_until_taken() -> None:
    limits = HTTPLimits(body_high_water=10)
    conn = parse(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 100\r\n\r\n", limits)
    conn.receive_data(b"x" * 10)
    assert not paused(conn)
    conn.receive_data(b"x")
    assert paused(conn)
    assert conn.requests[0].body.take(5) == b"xxxxx"
    assert not paused(conn)


def test_paused_with_too_many_pipelined() -> None:
    conn = parse(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n" * 1, HTTPLimits(max_pipelined=2))
    conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert not paused(conn)
    conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert paused(conn)
    conn.requests.popleft()
    assert not paused(conn)


def test_eof_mid_body_truncates() -> None:
    conn = parse(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc")
    with pytest.raises(RemoteProtocolError) as caught:  # 400: the body can never complete
        conn.receive_data(b"")
    assert caught.value.status == 400
    body = only(conn).body
    assert body.truncated and not body.complete and body.take() == b"abc"
    assert conn.peer_closed


def test_eof_between_requests_is_clean() -> None:
    conn = parse(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    conn.receive_data(b"")
    assert conn.peer_closed and len(conn.requests) == 1


def test_eof_mid_head_is_400() -> None:
    conn = parse(b"GET / HTTP/1.1\r\nHo")
    assert conn.head_started
    with pytest.raises(RemoteProtocolError) as caught:
        conn.receive_data(b"")
    assert caught.value.status == 400


def test_dead_after_error() -> None:
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert not conn.requests


def refused(raw: bytes, limits: HTTPLimits, *pieces: bytes) -> int:
    conn = ServerConnection(limits)
    with pytest.raises(RemoteProtocolError) as caught:
        conn.receive_data(raw)
        for piece in pieces:
            conn.receive_data(piece)
    return caught.value.status


def test_limits() -> None:
    small = HTTPLimits(max_header_size=100, max_headers=3, max_body_size=10)
    assert refused(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n", small) == 414
    assert refused(b"GET /" + b"a" * 50, small, b"a" * 51) == 414
    assert refused(b"GET / HTTP/1.1\r\nX: " + b"v" * 100 + b"\r\n\r\n", small) == 431
    assert refused(b"GET / HTTP/1.1\r\nX: " + b"v" * 250, small) == 431  # one slice late
    assert refused(b"GET / HTTP/1.1\r\nX: ", small, b"v" * 60, b"v" * 60) == 431
    many = b"GET / HTTP/1.1\r\n" + HOST + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    assert refused(many, small) == 431
    assert refused(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 11\r\n\r\n", small) == 413
    chunked = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    assert refused(chunked + b"ff\r\n" + b"x" * 11, small) == 413
    assert refused(chunked, small, b"5\r\nxxxxx\r\n", b"6\r\nxxxxxx\r\n") == 413
    # a trailer section or chunk extensions may not grow without bound either
    assert refused(chunked + b"0\r\nX-T: ", small, b"v" * 60, b"v" * 60) == 431
    assert refused(chunked + b"1;", small, b"e" * 60, b"e" * 60) == 431


def test_big_read_with_many_small_requests_is_not_a_big_head() -> None:
    one = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"
    conn = ServerConnection(HTTPLimits(max_header_size=200, max_pipelined=10**6))
    conn.receive_data(one * 50 + one[:30])
    conn.receive_data(one[30:] + one * 50 + one[:30])
    assert len(conn.requests) == 101


def test_413_kills_body_being_received() -> None:
    conn = parse(
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n",
        HTTPLimits(max_body_size=4),
    )
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"5\r\nhello\r\n")
    assert conn.requests[0].body.truncated
