"""The opening handshake on real bytes: requests parsed by the HTTP core, responses checked."""

from __future__ import annotations

import httptools
import pytest

from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1 import ServerConnection
from threadloom.protocols.websocket import (
    DeflateParams,
    Handshake,
    HandshakeError,
    accept_key,
    accept_response,
    check_request,
    is_upgrade_request,
    negotiate_deflate,
    reject_response,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
GOOD = [
    (b"host", b"server.example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"origin", b"http://example.com"),
    (b"sec-websocket-protocol", b"chat, superchat"),
    (b"sec-websocket-version", b"13"),
]


def parsed(raw: bytes) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """Method, version, headers and target, as the HTTP core hands them over."""
    conn = ServerConnection()
    conn.receive_data(raw)
    request = conn.requests[0]
    return request.method, request.http_version, request.headers, request.target


def without(name: bytes, headers: list[tuple[bytes, bytes]] = GOOD) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in headers if n != name]


def replaced(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [*without(name), (name, value)]


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_rfc_example_request_through_the_http_core() -> None:
    raw = (
        b"GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    method, version, headers, target = parsed(raw)
    assert is_upgrade_request(headers)
    hs = check_request(method, version, headers, path=target)
    assert hs == Handshake(
        path="/chat?room=1",
        key=KEY,
        subprotocols=["chat", "superchat"],
        extensions_offered=None,
        origin="http://example.com",
    )


def test_header_names_in_any_case_and_lists_split_over_fields() -> None:
    headers = [
        (b"Host", b"a"),
        (b"UPGRADE", b"WebSocket"),
        (b"Connection", b"keep-alive"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", KEY),
        (b"Sec-WebSocket-Version", b"13"),
        (b"Sec-WebSocket-Protocol", b"a"),
        (b"sec-websocket-protocol", b" b ,, c"),
        (b"Sec-WebSocket-Extensions", b"x-one"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]
    assert is_upgrade_request(headers)
    hs = check_request(b"GET", "1.1", headers)
    assert hs.subprotocols == ["a", "b", "c"]
    assert hs.extensions_offered == b"x-one, permessage-deflate"
    assert hs.origin is None
    assert hs.path == "/"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"upgrade", b"websocket")], True),
        ([(b"Upgrade", b"h2c, WebSocket")], True),
        ([(b"upgrade", b"h2c")], False),
        ([(b"upgrade", b"websockets")], False),
        ([(b"connection", b"websocket")], False),
        ([], False),
    ],
)
def test_is_upgrade_request(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert is_upgrade_request(headers) is expected


@pytest.mark.parametrize("version", ["1.1", "2", "2.0", "HTTP/1.1", b"1.1"])
def test_http_versions_from_1_1_up_are_accepted(version: str | bytes) -> None:
    assert check_request("GET", version, GOOD).key == KEY


@pytest.mark.parametrize(
    ("method", "version", "headers", "needle"),
    [
        (b"POST", "1.1", GOOD, "GET"),
        (b"get", "1.1", GOOD, "GET"),
        (b"GET", "1.0", GOOD, "HTTP/1.1"),
        (b"GET", "0.9", GOOD, "HTTP/1.1"),
        (b"GET", "x.y", GOOD, "HTTP/1.1"),
        (b"GET", "1.1", without(b"host"), "Host"),
        (b"GET", "1.1", without(b"upgrade"), "Upgrade"),
        (b"GET", "1.1", replaced(b"upgrade", b"h2c"), "Upgrade"),
        (b"GET", "1.1", without(b"connection"), "Connection"),
        (b"GET", "1.1", replaced(b"connection", b"keep-alive"), "Connection"),
        (b"GET", "1.1", without(b"sec-websocket-key"), "Sec-WebSocket-Key"),
        (b"GET", "1.1", replaced(b"sec-websocket-key", b"not base64!"), "Sec-WebSocket-Key"),
        (b"GET", "1.1", replaced(b"sec-websocket-key", b"c2hvcnQ="), "Sec-WebSocket-Key"),
        (b"GET", "1.1", replaced(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ"), "Key"),
        (b"GET", "1.1", [*GOOD, (b"sec-websocket-key", KEY)], "Sec-WebSocket-Key"),
    ],
)
def test_refusals_are_400_naming_the_problem(
    method: bytes, version: str, headers: list[tuple[bytes, bytes]], needle: str
) -> None:
    with pytest.raises(HandshakeError, match=needle) as info:
        check_request(method, version, headers)
    assert info.value.status == 400
    assert info.value.extra_headers == []


@pytest.mark.parametrize(
    "headers",
    [
        without(b"sec-websocket-version"),
        replaced(b"sec-websocket-version", b"8"),
        replaced(b"sec-websocket-version", b"13, 8"),
        [*GOOD, (b"sec-websocket-version", b"13")],
    ],
)
def test_a_missing_or_other_version_is_426_naming_13(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(HandshakeError, match="Sec-WebSocket-Version") as info:
        check_request(b"GET", "1.1", headers)
    assert info.value.status == 426
    assert info.value.extra_headers == [(b"sec-websocket-version", b"13")]


def response_fields(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Parse a response with llhttp itself: status, fields (lower-cased names), body."""
    fields: dict[bytes, bytes] = {}
    body: list[bytes] = []

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            assert name.lower() not in fields, f"duplicate {name!r}"
            fields[name.lower()] = value

        def on_body(self, data: bytes) -> None:
            body.append(data)

    parser = httptools.HttpResponseParser(Sink())
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    return parser.get_status_code(), fields, b"".join(body)


def test_reject_response_426_is_a_complete_closing_response() -> None:
    with pytest.raises(HandshakeError) as info:
        check_request(b"GET", "1.1", without(b"sec-websocket-version"))
    raw = reject_response(info.value)
    status, fields, body = response_fields(raw)
    assert raw.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert status == 426
    assert fields[b"sec-websocket-version"] == b"13"
    assert fields[b"connection"] == b"close"
    assert int(fields[b"content-length"]) == len(body)
    assert b"Sec-WebSocket-Version" in body


def test_reject_response_400() -> None:
    raw = reject_response(HandshakeError("missing Host header"))
    status, fields, body = response_fields(raw)
    assert status == 400
    assert fields[b"connection"] == b"close"
    assert body == b"missing Host header\n"


def test_accept_response_is_a_valid_101() -> None:
    hs = check_request(b"GET", "1.1", GOOD)
    raw = accept_response(hs, subprotocol="superchat", extra_headers=[(b"X-Id", b"7")])
    assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert raw.endswith(b"\r\n\r\n")
    status, fields, body = response_fields(raw)
    assert status == 101
    assert body == b""
    assert fields[b"upgrade"] == b"websocket"
    assert fields[b"connection"] == b"Upgrade"
    assert fields[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert fields[b"sec-websocket-protocol"] == b"superchat"
    assert fields[b"x-id"] == b"7"
    assert b"sec-websocket-extensions" not in fields


def test_accept_response_states_the_agreed_deflate_parameters() -> None:
    hs = check_request(b"GET", "1.1", GOOD)
    offer = b"permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
    raw = accept_response(hs, deflate=negotiate_deflate(offer))
    _, fields, _ = response_fields(raw)
    assert fields[b"sec-websocket-extensions"] == (
        b"permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
    )
    raw = accept_response(hs, deflate=DeflateParams())
    assert response_fields(raw)[1][b"sec-websocket-extensions"] == b"permessage-deflate"


def test_accept_response_refuses_a_subprotocol_not_offered() -> None:
    hs = check_request(b"GET", "1.1", GOOD)
    with pytest.raises(LocalProtocolError, match="not offered"):
        accept_response(hs, subprotocol="mqtt")


@pytest.mark.parametrize(
    "header",
    [
        (b"X-Bad", b"a\r\nSet-Cookie: x=1"),
        (b"X-Bad", b"a\nb"),
        (b"X-Bad", b"a\x00b"),
        (b"X Bad", b"a"),
        (b"X-Bad\r\n", b"a"),
    ],
)
def test_accept_response_validates_extra_header_bytes(header: tuple[bytes, bytes]) -> None:
    hs = check_request(b"GET", "1.1", GOOD)
    with pytest.raises(LocalProtocolError):
        accept_response(hs, extra_headers=[header])


@pytest.mark.parametrize(
    "name",
    [b"Sec-WebSocket-Accept", b"sec-websocket-protocol", b"Upgrade", b"Connection", "Connection"],
)
def test_accept_response_refuses_headers_the_handshake_owns(name: bytes) -> None:
    hs = check_request(b"GET", "1.1", GOOD)
    with pytest.raises(LocalProtocolError, match="set by the WebSocket handshake"):
        accept_response(hs, extra_headers=[(name, b"x")])
