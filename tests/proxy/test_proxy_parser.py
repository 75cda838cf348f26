"""The PROXY protocol core and the X-Forwarded rules, bytes and strings only."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from threadloom.errors import ConfigError
from threadloom.protocols.forwarded import (
    TrustedProxies,
    forwarded_client,
    forwarded_host,
    forwarded_scheme,
    new_request_id,
    sane_request_id,
)
from threadloom.protocols.proxy import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    header_length,
    parse_header,
)


def v2(
    command: int = 1,
    family: int = 0x11,
    addresses: bytes = b"",
    tlvs: bytes = b"",
) -> bytes:
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


def v2_inet(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if a.version == 4 else 0x21
    return v2(1, family, a.packed + b.packed + struct.pack(">HH", sport, dport), tlvs)


@pytest.mark.parametrize(
    ("line", "source", "destination"),
    [
        (
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n",
            ("203.0.113.7", 51234),
            ("192.0.2.1", 443),
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
            ("2001:db8::1", 1),
            ("2001:db8::2", 65535),
        ),
        (b"PROXY UNKNOWN\r\n", None, None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, None),
    ],
)
def test_v1_lines(line: bytes, source: object, destination: object) -> None:
    assert header_length(line + b"GET /") == len(line)
    assert parse_header(line) == ProxyHeader(1, source, destination)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xb2\r\n",
    ],
)
def test_v1_bad_lines(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_header(line)


def test_not_a_header_fails_at_the_first_wrong_byte() -> None:
    for data in (b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"PROXX", b"\r\n\r\n\x00\r\nQUIZ"):
        with pytest.raises(ProxyProtocolError):
            header_length(data)
    for prefix in (b"", b"P", b"PROXY", b"\r\n\r", V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11"):
        assert header_length(prefix) is None


def test_v1_line_is_bounded() -> None:
    with pytest.raises(ProxyProtocolError, match="107"):
        header_length(b"PROXY TCP4 " + b"1" * 200)


def test_v2_inet_inet6_unix_local_unspec() -> None:
    header = parse_header(v2_inet("198.51.100.9", "192.0.2.1", 4242, 443))
    assert header == ProxyHeader(2, ("198.51.100.9", 4242), ("192.0.2.1", 443))
    header = parse_header(v2_inet("2001:db8::9", "2001:db8::1", 1, 2))
    assert header.source == ("2001:db8::9", 1)
    unix = b"/run/client.sock".ljust(108, b"\x00") + b"/run/server.sock".ljust(108, b"\x00")
    assert parse_header(v2(1, 0x31, unix)).source == "/run/client.sock"
    assert parse_header(v2(0, 0x11, b"junk")).source is None  # LOCAL: a health check
    assert parse_header(v2(1, 0x00)).source is None  # UNSPEC: real endpoints


def test_v2_tlvs() -> None:
    tlvs = b"\x01\x00\x08http/1.1" + b"\x05\x00\x03abc"
    header = parse_header(v2_inet("10.0.0.1", "10.0.0.2", 1, 2, tlvs))
    assert header.tlvs == ((1, b"http/1.1"), (5, b"abc"))
    with pytest.raises(ProxyProtocolError, match="TLV"):
        parse_header(v2_inet("10.0.0.1", "10.0.0.2", 1, 2, b"\x01\x00\x09short"))


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,  # version 1
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12,  # command 2
        V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12,  # UDP
        V2_SIGNATURE + b"\x21\x41\x00\x0c" + b"\x00" * 12,  # family 4
        V2_SIGNATURE + b"\x21\x21\x00\x0c" + b"\x00" * 12,  # INET6 needs 36 bytes
    ],
)
def test_v2_bad_headers(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_header(data)


@pytest.mark.parametrize("split", [1, 5, 13, 17, 27])
def test_parser_in_pieces_keeps_the_rest(split: int) -> None:
    for header in (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", v2_inet("1.2.3.4", "5.6.7.8", 1, 2)):
        data = header + b"GET / HTTP/1.1\r\n"
        parser = ProxyHeaderParser()
        assert parser.receive_data(data[:split]) is None
        result = parser.receive_data(data[split:])
        assert result is not None and result.source == ("1.2.3.4", 1)
        assert parser.trailing_data == b"GET / HTTP/1.1\r\n"


def test_wanted_never_reads_past_the_header() -> None:
    for header in (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", v2_inet("1.2.3.4", "5.6.7.8", 1, 2)):
        wire = header + b"\x16\x03\x01 TLS follows"
        parser = ProxyHeaderParser()
        taken = 0
        for step in (3, 10, 200):  # what a peek would see, growing as bytes arrive
            peeked = wire[taken : taken + step]
            want = parser.wanted(peeked)
            parser.receive_data(peeked[:want])
            taken += want
        assert parser.header is not None
        assert taken == len(header)
        assert parser.trailing_data == b""


def test_eof_inside_the_header() -> None:
    parser = ProxyHeaderParser()
    parser.receive_data(b"PROXY TCP4")
    with pytest.raises(ProxyProtocolError):
        parser.receive_data(b"")


def test_trusted_proxies() -> None:
    proxies = TrustedProxies("127.0.0.1, 10.0.0.0/8 2001:db8::/32")
    assert proxies.trusts("127.0.0.1") and proxies.trusts("10.1.2.3")
    assert proxies.trusts("2001:db8::5") and proxies.trusts("::ffff:10.0.0.1")
    assert not proxies.trusts("127.0.0.2") and not proxies.trusts("junk")
    assert proxies.trusts_client("/run/app.sock")  # a unix-socket peer
    assert not proxies.trusts_client(("192.0.2.1", 5))
    assert TrustedProxies("*").trusts("192.0.2.1")
    with pytest.raises(ConfigError, match="forwarded-allow-ips"):
        TrustedProxies("127.0.0.1,not-an-ip")


def test_x_forwarded_for_rightmost_untrusted_hop() -> None:
    proxies = TrustedProxies("127.0.0.1,10.0.0.0/8")
    assert forwarded_client("203.0.113.7", proxies) == "203.0.113.7"
    # The client wrote the first entry itself; the proxies appended the rest.
    assert forwarded_client("6.6.6.6, 203.0.113.7, 10.0.0.5", proxies) == "203.0.113.7"
    assert forwarded_client("10.0.0.9, 10.0.0.5", proxies) == "10.0.0.9"  # all trusted
    assert forwarded_client("[2001:db8::7]:443, 203.0.113.7:5000", proxies) == "203.0.113.7"
    assert forwarded_client("unknown", proxies) is None
    assert forwarded_client("1.2.3.4, junk", proxies) is None


def test_proto_host_and_request_ids() -> None:
    assert forwarded_scheme("https") == "https"
    assert forwarded_scheme("http, HTTPS") == "https"
    assert forwarded_scheme("wss") == "https"
    assert forwarded_scheme("gopher") is None
    assert forwarded_host("a.example, b.example:8443") == "b.example:8443"
    assert forwarded_host("evil\x1b[31m") is None
    assert sane_request_id("7b0c2f1e-aa41-4f6c-9d5e-1f0d1c2b3a4e")
    assert not sane_request_id("") and not sane_request_id("a" * 201)
    assert not sane_request_id("bad id") and not sane_request_id("x\r\ny")
    first, second = new_request_id(), new_request_id()
    assert first != second and len(first) == 32 and sane_request_id(first)
