"""response_head / full_response / ResponseFramer / error_response / DateCache, on bytes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1 import (
    CONTINUE,
    DateCache,
    Request,
    ServerConnection,
    error_response,
    full_response,
    full_response_parts,
    response_head,
    whole_head,
)


def request(raw: bytes) -> Request:
    conn = ServerConnection()
    conn.receive_data(raw)
    return conn.requests[0]


GET11 = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
GET11_CLOSE = request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
HEAD11 = request(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
GET10 = request(b"GET / HTTP/1.0\r\n\r\n")
GET10_KA = request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
CL = [("Content-Length", "5")]


def fields(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")
    assert lines[-2:] == [b"", b""]
    pairs = [line.split(b": ", 1) for line in lines[1:-2]]
    return {name.lower(): value for name, value in pairs}


# request, status, app headers, close -> (framing, Connection field, keep_alive)
FRAMING = [
    ("cl", GET11, 200, CL, False, "length", None, True),
    ("chunked", GET11, 200, [], False, "chunked", None, True),
    ("head", HEAD11, 200, [], False, "none", None, True),
    ("head-cl", HEAD11, 200, CL, False, "none", None, True),
    ("204", GET11, 204, [], False, "none", None, True),
    ("304", GET11, 304, [], False, "none", None, True),
    ("1.0-close-delimited", GET10, 200, [], False, "close", b"close", False),
    ("1.0-cl", GET10, 200, CL, False, "length", b"close", False),
    ("1.0-keep-alive-cl", GET10_KA, 200, CL, False, "length", b"keep-alive", True),
    ("1.0-keep-alive-no-length", GET10_KA, 200, [], False, "close", b"close", False),
    ("close-true", GET11, 200, CL, True, "length", b"close", False),
    ("close-true-chunked", GET11, 200, [], True, "chunked", b"close", False),
    ("request-close", GET11_CLOSE, 200, [], False, "chunked", b"close", False),
    ("app-close", GET11, 200, [*CL, ("Connection", "close")], False, "length", b"close", False),
    ("no-request", None, 400, [], False, "close", b"close", False),
]


@pytest.mark.parametrize(
    ("req", "status", "headers", "close", "framing", "connection", "keep_alive"),
    [case[1:] for case in FRAMING],
    ids=[case[0] for case in FRAMING],
)
def test_framing_table(
    req: Request | None,
    status: int,
    headers: list[tuple[str, str]],
    close: bool,
    framing: str,
    connection: bytes | None,
    keep_alive: bool,
) -> None:
    head, framer = response_head(req, status, headers, close=close)
    got = fields(head)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert got.get(b"connection") == connection
    assert (b"transfer-encoding" in got) == (framing == "chunked")
    body = framer.body(b"hello")
    tail = framer.end()
    expected = {
        "length": (b"hello", b""),
        "chunked": (b"5\r\nhello\r\n", b"0\r\n\r\n"),
        "none": (b"", b""),
        "close": (b"hello", b""),
    }[framing]
    assert (body, tail) == expected
    assert framer.keep_alive is keep_alive


def test_date_and_server_added_only_when_absent() -> None:
    got = fields(response_head(GET11, 200, CL)[0])
    assert got[b"server"] == b"threadloom" and got[b"date"].endswith(b" GMT")
    head, _ = response_head(GET11, 200, [*CL, ("Date", "x"), (b"server", b"mine")])
    assert head.count(b"Date") + head.count(b"date") == 1 and b"server: mine" in head
    assert b"threadloom" not in head
    assert b"Server" not in response_head(GET11, 200, CL, server_header=b"")[0]


def test_status_line_and_reason() -> None:
    assert response_head(GET11, 404, CL)[0].startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert response_head(GET11, 299, CL)[0].startswith(b"HTTP/1.1 299 Unknown\r\n")
    assert response_head(GET11, 200, CL, reason="Fine")[0].startswith(b"HTTP/1.1 200 Fine\r\n")
    with pytest.raises(LocalProtocolError):
        response_head(GET11, 200, CL, reason="Fine\r\nX: y")
    with pytest.raises(LocalProtocolError):
        response_head(GET11, 42, CL)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Bad", "a\r\nSet-Cookie: x"),
        ("X-Bad", "a\nb"),
        ("X-Bad", "a\rb"),
        ("X-Bad", "a\x00b"),
        ("X-Bad", "a\x0bb"),
        ("X-Bad", "a\x7fb"),
        (b"X-Bad", b"a\r\n"),
        ("X-Bad\r\nX-Evil", "v"),
        ("X Bad", "v"),
        ("X-Bad:", "v"),
        ("", "v"),
        ("X-Bad\x00", "v"),
        ("X-Snowman", "\u2603"),
    ],
)
def test_invalid_header_never_reaches_the_wire(name: str | bytes, value: str | bytes) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        response_head(GET11, 200, [(name, value)])
    assert caught.value.status == 500
    with pytest.raises(LocalProtocolError):
        full_response(GET11, 200, [(name, value)], b"x")


def test_valid_header_values() -> None:
    head, _ = response_head(GET11, 200, [("X-Tab", "a\tb"), ("X-Latin", "caf\xe9"), *CL])
    assert b"X-Tab: a\tb\r\n" in head and b"X-Latin: caf\xe9\r\n" in head


def test_content_length_overrun_and_short_body() -> None:
    _, framer = response_head(GET11, 200, CL)
    assert framer.body(b"1234") == b"1234"
    with pytest.raises(LocalProtocolError):
        framer.body(b"56")
    assert not framer.keep_alive
    _, short = response_head(GET11, 200, CL)
    short.body(b"123")
    assert short.end() == b"" and not short.keep_alive
    _, exact = response_head(GET11, 200, CL)
    exact.body(b"12345")
    assert exact.end() == b"" and exact.keep_alive


def test_invalid_app_content_length() -> None:
    for value in ("-1", "1_0", "0x5", ""):
        with pytest.raises(LocalProtocolError):
            response_head(GET11, 200, [("Content-Length", value)])
    with pytest.raises(LocalProtocolError):
        response_head(GET11, 200, [*CL, *CL])


def test_app_transfer_encoding_and_connection_are_ours() -> None:
    head, framer = response_head(GET11, 200, [("Transfer-Encoding", "gzip"), ("Connection", "x")])
    got = fields(head)
    assert got[b"transfer-encoding"] == b"chunked" and b"connection" not in got
    assert framer.keep_alive


def test_switching_protocols_keeps_connection_upgrade() -> None:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "x")]
    head, framer = response_head(GET11, 101, headers)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Connection: Upgrade\r\n" in head and head.count(b"Connection") == 1
    assert b"Transfer-Encoding" not in head and framer.body(b"x") == b""


def test_empty_body_piece_is_not_a_last_chunk() -> None:
    _, framer = response_head(GET11, 200, [])
    assert framer.body(b"") == b""
    assert framer.end() == b"0\r\n\r\n"
    assert framer.end() == b""


def test_full_response_fast_path() -> None:
    data, keep = full_response(GET11, 200, [("Content-Type", "text/plain")], b"hello")
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"hello" and keep
    assert fields(head + b"\r\n\r\n")[b"content-length"] == b"5"
    data, keep = full_response(HEAD11, 200, [], b"hello")
    assert data.endswith(b"\r\n\r\n") and b"Content-Length: 5\r\n" in data and keep
    data, _ = full_response(GET11, 204, [], b"ignored")
    assert data.endswith(b"\r\n\r\n") and b"Content-Length" not in data
    data, keep = full_response(GET10, 200, [], b"x")
    assert b"Connection: close\r\n" in data and not keep
    data, keep = full_response(GET11, 200, CL, b"hello", close=True)
    assert data.endswith(b"\r\n\r\nhello") and not keep
    with pytest.raises(LocalProtocolError):
        full_response(GET11, 200, CL, b"hell")


def test_full_response_matches_response_head() -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", "2"), ("Date", "today")]
    head, framer = response_head(GET11, 200, headers)
    assert full_response(GET11, 200, headers, b"hi") == (head + framer.body(b"hi"), True)


def test_error_response() -> None:
    for status in (400, 408, 413, 414, 431, 500, 501, 503, 505):
        data = error_response(status)
        head, _, body = data.partition(b"\r\n\r\n")
        got = fields(head + b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status)
        assert got[b"connection"] == b"close"
        assert int(got[b"content-length"]) == len(body)
        assert (b"retry-after" in got) == (status == 503)
    assert error_response(400, "bad thing").endswith(b"\r\n\r\nbad thing\n")
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_date_cache_recomputes_only_when_the_second_changes() -> None:
    now = [1_700_000_000.1]
    cache = DateCache(lambda: now[0])
    first = cache.header_value()
    assert first == b"Tue, 14 Nov 2023 22:13:20 GMT"
    now[0] = 1_700_000_000.9
    assert cache.header_value() is first  # same second: the very same object
    now[0] = 1_700_000_001.0
    second = cache.header_value()
    assert second == b"Tue, 14 Nov 2023 22:13:21 GMT"
    assert cache.header_value() is second


@given(
    status=st.sampled_from([200, 201, 204, 206, 304, 404, 500, 101, 999]),
    headers=st.lists(
        st.sampled_from(
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", "70000"),
                ("Content-Length", "5"),
                ("Connection", "close"),
                ("X-Bad", "a\r\nb"),
                ("Transfer-Encoding", "chunked"),
            ]
        ),
        max_size=3,
    ),
    method=st.sampled_from(["GET", "HEAD"]),
    keep_alive=st.booleans(),
    size=st.sampled_from([0, 5, 70000]),
)
def test_parts_are_the_whole_response_unjoined(
    status: int, headers: list[tuple[str, str]], method: str, keep_alive: bool, size: int
) -> None:
    """``full_response_parts`` (large bodies, never joined) says exactly what
    ``full_response`` says, or refuses the same way."""
    request = Request()
    request.method, request.keep_alive = method, keep_alive
    body = b"b" * size
    try:
        whole, alive = full_response(request, status, headers, body)
    except LocalProtocolError as exc:
        with pytest.raises(LocalProtocolError, match=re.escape(str(exc)[:20])):
            full_response_parts(request, status, headers, body)
        return
    head, rest, alive_too = full_response_parts(request, status, headers, body)
    assert (_no_date(head + rest), alive_too) == (_no_date(whole), alive)
    # a file of that size (an ASGI pathsend) is framed by the same rule, its bytes unread
    file_head, with_body, alive_file = whole_head(request, status, headers, size)
    assert (_no_date(file_head), alive_file) == (_no_date(head), alive)
    assert with_body == (method == "GET" and status >= 200 and status not in (204, 304))


def _no_date(data: bytes) -> bytes:
    """The Date line may tick between the two calls."""
    return re.sub(rb"Date: [^\r]*\r\n", b"", data, flags=re.IGNORECASE)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([("Content-Length", "1x")], "invalid Content-Length"),
        ([("Content-Length", "3"), ("Content-Length", "3")], "invalid Content-Length"),
        ([("Content-Length", "4")], "Content-Length 4 but a body of 3 bytes"),
    ],
)
def test_an_apps_content_length_is_one_rule_for_both_protocols(
    fields: list[tuple[str, str]], error: str
) -> None:
    """HTTP/1.1's whole head and HTTP/2's header list refuse the same Content-Length the
    same way (protocols/http1/response: app_length, check_whole_length)."""
    from threadloom.protocols.http1.response import whole_head
    from threadloom.protocols.http2 import response_headers

    with pytest.raises(LocalProtocolError, match=error):
        whole_head(None, 200, fields, 3)
    with pytest.raises(LocalProtocolError, match=error):
        response_headers(200, fields, 3, exact=True)
    assert whole_head(None, 200, [("Content-Length", "3")], 3)[1]
    assert (b"content-length", b"3") in response_headers(200, [("Content-Length", "3")], 3)
