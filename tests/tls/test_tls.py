"""TLS under every model: real clients verifying a throwaway CA, and handshakes gone wrong."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy import apps
from tests.tls.conftest import TLSFiles
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

TIMEOUT = 5 * timeout_factor()


def tls_options(tls: TLSFiles, **extra: Any) -> dict[str, Any]:
    return {"certfile": str(tls.server_cert), "keyfile": str(tls.server_key), **extra}


#: Every model, and asyncio once more on asyncio's own loop (its SSL code is not uvloop's).
ALL_LOOPS = [*MODELS, "asyncio-stdlib"]


def model_and_options(model: str, tls: TLSFiles, **extra: Any) -> tuple[str, dict[str, Any]]:
    options = tls_options(tls, **extra)
    if model == "asyncio-stdlib":
        model, options["loop"] = "asyncio", "asyncio"
    return model, options


def https(server: Server, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    host, port = server.addresses[0]
    return http.client.HTTPSConnection(host, port, context=context, timeout=TIMEOUT)


def get_json(conn: http.client.HTTPConnection, path: str = "/") -> dict[str, Any]:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    result: dict[str, Any] = json.loads(response.read())
    return result


def serves_again(server: Server, tls: TLSFiles) -> None:
    """The server still answers a well-behaved HTTPS client."""
    conn = https(server, tls.client_context())
    try:
        assert get_json(conn)["scheme"] == "https"
    finally:
        conn.close()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.parametrize("model", ALL_LOOPS)
def test_https_keep_alive_alpn_and_scheme(
    model: str, tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    model, options = model_and_options(model, tls, access_log=False)
    with running_server(apps.whoami, model=model, **options) as server:
        conn = https(server, tls.client_context())
        try:
            for _ in range(3):  # one connection, one handshake, three requests
                seen = get_json(conn)
                assert seen["scheme"] == "https"
                assert seen["remote"] == "127.0.0.1"
            assert conn.sock.selected_alpn_protocol() == "http/1.1"
            assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            conn.close()
        host, port = server.addresses[0]
        with httpx.Client(verify=tls.client_context(), timeout=TIMEOUT) as client:
            response = client.get(f"https://{host}:{port}/")
            assert response.json()["scheme"] == "https"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("model", ALL_LOOPS)
def test_large_upload_and_download(model: str, tls: TLSFiles) -> None:
    body = os.urandom(1_500_000)
    model, options = model_and_options(model, tls, access_log=False)
    with running_server(apps.upload, model=model, **options) as server:
        host, port = server.addresses[0]
        with httpx.Client(verify=tls.client_context(), timeout=TIMEOUT) as client:
            for _ in range(2):
                response = client.post(f"https://{host}:{port}/", content=body)
                assert response.content == body[::-1]


def test_sendfile_goes_through_the_encryption(tls: TLSFiles, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    path = tmp_path / "blob"
    path.write_bytes(payload)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", str(len(payload)))])
        return environ["wsgi.file_wrapper"](path.open("rb"))

    with running_server(app, model="threads", access_log=False, **tls_options(tls)) as server:
        conn = https(server, tls.client_context())
        try:
            conn.request("GET", "/")
            assert conn.getresponse().read() == payload
        finally:
            conn.close()


def test_asgi_scope_scheme_is_https(tls: TLSFiles) -> None:
    with running_server(
        apps.asgi_whoami, model="asyncio", access_log=False, **tls_options(tls)
    ) as server:
        conn = https(server, tls.client_context())
        try:
            assert get_json(conn)["scheme"] == "https"
            assert conn.sock.selected_alpn_protocol() == "http/1.1"
        finally:
            conn.close()


@pytest.mark.parametrize("model", ALL_LOOPS)
def test_plain_http_and_garbage_cost_only_their_connection(
    model: str, tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="threadloom.tls")
    model, options = model_and_options(model, tls, access_log=False)
    with running_server(apps.whoami, model=model, **options) as server:
        address = server.addresses[0]
        for opening in (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plain HTTP on the TLS port
            b"\x16\x03\x01\x00\x20" + b"\xff" * 32,  # a handshake record full of junk
            os.urandom(64),
        ):
            with socket.create_connection(address, timeout=TIMEOUT) as sock:
                sock.sendall(opening)
                answer = read_until_closed(sock)  # closed: at most a TLS alert, no HTTP
                assert answer == b"" or answer.startswith(b"\x15\x03")
            serves_again(server, tls)
    failures = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(failures) == 3  # one line each, at debug level
    assert all(r.levelno == logging.DEBUG for r in failures)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("model", MODELS)
def test_a_stalled_handshake_times_out(model: str, tls: TLSFiles) -> None:
    options = tls_options(tls, timeout_header=0.5)
    with running_server(apps.whoami, model=model, access_log=False, **options) as server:
        with socket.create_connection(server.addresses[0], timeout=TIMEOUT) as silent:
            if model != "single":  # single serves one connection at a time, by design
                serves_again(server, tls)
            began = time.monotonic()
            assert read_until_closed(silent) == b""
            assert time.monotonic() - began < 3 * timeout_factor()
        serves_again(server, tls)


@pytest.mark.parametrize("model", MODELS)
def test_client_certificates_required(model: str, tls: TLSFiles) -> None:
    options = tls_options(tls, ca_certs=str(tls.ca_pem))
    with running_server(apps.whoami, model=model, access_log=False, **options) as server:
        conn = https(server, tls.client_context(with_cert=True))
        try:
            assert get_json(conn)["scheme"] == "https"
        finally:
            conn.close()
        anonymous = https(server, tls.client_context())
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get_json(anonymous)  # TLS 1.3: the refusal arrives after the client's Finished
        anonymous.close()
        conn = https(server, tls.client_context(with_cert=True))
        try:
            assert get_json(conn)["scheme"] == "https"
        finally:
            conn.close()


def test_client_certificates_optional(tls: TLSFiles) -> None:
    options = tls_options(tls, ca_certs=str(tls.ca_pem), ssl_cert_reqs="optional")
    with running_server(apps.whoami, model="pool", access_log=False, **options) as server:
        for with_cert in (False, True):
            conn = https(server, tls.client_context(with_cert=with_cert))
            try:
                assert get_json(conn)["scheme"] == "https"
            finally:
                conn.close()


@pytest.mark.parametrize("model", MODELS)
def test_raw_handler_over_tls(model: str, tls: TLSFiles) -> None:
    with running_server(apps.raw_echo, model=model, **tls_options(tls)) as server:
        context = tls.client_context()
        raw = socket.create_connection(server.addresses[0], timeout=TIMEOUT)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert sock.selected_alpn_protocol() is None  # raw TCP: no ALPN on offer
            assert sock.recv(100) == b"127.0.0.1\n"
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping"


def test_raw_streams_handler_over_tls(tls: TLSFiles) -> None:
    with running_server(apps.raw_echo_streams, model="asyncio", **tls_options(tls)) as server:
        raw = socket.create_connection(server.addresses[0], timeout=TIMEOUT)
        with tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert sock.recv(100) == b"127.0.0.1\n"
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping"


def test_certificate_and_key_in_one_file(tls: TLSFiles) -> None:
    with running_server(apps.whoami, model="pool", certfile=str(tls.server_pem)) as server:
        serves_again(server, tls)


def test_bad_tls_settings_are_one_line_errors(tls: TLSFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--keyfile"):
        Config(keyfile=str(tls.server_key)).validated()
    with pytest.raises(ConfigError, match="no such file"):
        Server(apps.whoami, certfile=str(tmp_path / "missing.pem"), bind=("127.0.0.1:0",)).start()
    with pytest.raises(ConfigError, match="--certfile"):
        Server(apps.whoami, certfile=str(tls.ca_pem), bind=("127.0.0.1:0",)).start()
    with pytest.raises(ConfigError, match="--ssl-ciphers"):
        options = tls_options(tls, ssl_ciphers="NOT-A-CIPHER", bind=("127.0.0.1:0",))
        Server(apps.whoami, **options).start()
