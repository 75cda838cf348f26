"""PROXY protocol v1 and v2 in front of HTTP, HTTPS and raw handlers, under every model."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.http1.client import read_response
from tests.proxy import apps
from tests.proxy.test_proxy_parser import v2, v2_inet
from tests.tls.conftest import TLSFiles
from tests.tls.test_tls import tls_options
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

TIMEOUT = 5 * timeout_factor()
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n"
V2 = v2_inet("2001:db8::7", "2001:db8::1", 51234, 443)
REQUEST = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(server.addresses[0], TIMEOUT, source_address=(source, 0))


def remote_of(sock: Any) -> str:
    response = read_response(sock, bytearray())
    assert response.status == 200
    remote: str = json.loads(response.body)["remote"]
    return remote


def serving(model: str, **options: Any) -> Any:
    """``asgi``: an ASGI app on the default loop (uvloop when installed); ``asgi-stdlib``: on
    asyncio's own loop, whose SSL and reader plumbing differ from uvloop's."""
    app = apps.asgi_whoami if model.startswith("asgi") else apps.whoami
    if model == "asgi-stdlib":
        options["loop"] = "asyncio"
    model = "asyncio" if model.startswith("asgi") else model
    return running_server(app, model=model, proxy_protocol=True, access_log=False, **options)


def closed_without_answer(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("model", [*MODELS, "asgi", "asgi-stdlib"])
@pytest.mark.parametrize(("header", "client"), [(V1, "203.0.113.7"), (V2, "2001:db8::7")])
def test_header_names_the_client(model: str, header: bytes, client: str) -> None:
    with serving(model) as server:
        for split in (len(header), 7):  # whole, and trickled with the request behind it
            with connect(server) as sock:
                data = header + REQUEST
                sock.sendall(data[:split])
                sock.sendall(data[split:])
                assert remote_of(sock) == client


@pytest.mark.parametrize("model", ["pool", "asgi"])
def test_local_and_unknown_keep_the_real_peer(model: str) -> None:
    with serving(model) as server:
        for header in (b"PROXY UNKNOWN\r\n", v2(command=0)):
            with connect(server) as sock:
                sock.sendall(header + REQUEST)
                assert remote_of(sock) == "127.0.0.1"


@pytest.mark.parametrize("model", [*MODELS, "asgi", "asgi-stdlib"])
def test_no_header_or_untrusted_peer_is_closed(model: str) -> None:
    with serving(model, timeout_header=1.0) as server:
        with connect(server) as sock:
            sock.sendall(REQUEST)  # no header: never guessed
            assert closed_without_answer(sock)
        with connect(server, "127.0.0.2") as sock:  # may not claim anyone's address
            sock.sendall(V1 + REQUEST)
            assert closed_without_answer(sock)
        with connect(server) as sock:
            sock.sendall(V1 + REQUEST)
            assert remote_of(sock) == "203.0.113.7"


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_forwarded_headers_are_judged_by_the_proxied_client(model: str) -> None:
    """Behind a TCP balancer the client's own X-Forwarded-For proves nothing."""
    with serving(model) as server, connect(server) as sock:
        sock.sendall(V1 + b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        assert remote_of(sock) == "203.0.113.7"


@pytest.mark.parametrize("model", [*MODELS, "asgi", "asgi-stdlib"])
def test_proxy_header_before_tls(model: str, tls: TLSFiles) -> None:
    with serving(model, **tls_options(tls)) as server:
        for header in (V1, V2):
            raw = connect(server)
            raw.sendall(header)  # in clear, then the handshake
            context = tls.client_context()
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(REQUEST)
                assert remote_of(sock) in ("203.0.113.7", "2001:db8::7")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("with_tls", [False, True])
def test_raw_handlers_get_the_proxied_client(model: str, with_tls: bool, tls: TLSFiles) -> None:
    options = tls_options(tls) if with_tls else {}
    with running_server(apps.raw_echo, model=model, proxy_protocol=True, **options) as server:
        sock: Any = connect(server)
        sock.sendall(V1)
        if with_tls:
            sock = tls.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            assert sock.recv(100) == b"203.0.113.7\n"
            sock.sendall(b"ping")  # not a byte of it was taken by the PROXY reader
            assert sock.recv(100) == b"ping"


@pytest.mark.parametrize("with_tls", [False, True])
def test_raw_streams_handler_gets_the_proxied_client(with_tls: bool, tls: TLSFiles) -> None:
    options = tls_options(tls) if with_tls else {}
    with running_server(
        apps.raw_echo_streams, model="asyncio", proxy_protocol=True, **options
    ) as server:
        sock: Any = connect(server)
        sock.sendall(V2)
        if with_tls:
            sock = tls.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            assert sock.recv(100) == b"2001:db8::7\n"
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping"


def test_garbage_header_is_closed_and_the_server_goes_on() -> None:
    with serving("pool") as server:
        for junk in (b"PROXY TCP4 1.2.3.4\r\n", b"PROXY " + b"9" * 200, b"\r\n\r\n\x00\r\nQUIZ"):
            with connect(server) as sock:
                sock.sendall(junk)
                assert closed_without_answer(sock)
        with connect(server) as sock:
            sock.sendall(V2 + REQUEST)
            assert remote_of(sock) == "2001:db8::7"
