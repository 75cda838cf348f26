"""HTTP/2 under every model, for WSGI and ASGI: what a user gets with no new flag.

Real sockets and a real HTTP/2 client (``tests/http2/client.py``, on the ``h2`` library);
``test_real_clients.py`` has curl, nghttp, h2load and httpx.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trustme
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.http2.apps import BIG, SLEEP_S, asgi_app, wsgi_app
from tests.http2.client import H2Client, get
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

#: (model, interface): ASGI runs only where coroutines run
CASES = [(model, "wsgi") for model in MODELS] + [("asyncio", "asgi")]
CONCURRENT = [case for case in CASES if case[0] != "single"]
UPLOAD = bytes(range(256)) * 1200  # 300 KiB: more than the 64 KiB window


def app_for(interface: str) -> Any:
    return asgi_app if interface == "asgi" else wsgi_app


@contextmanager
def serving(model: str, interface: str, **options: Any) -> Iterator[tuple[str, int]]:
    options.setdefault("access_log", False)
    with running_server(app_for(interface), model=model, **options) as server:
        yield server.addresses[0]


def _id(case: tuple[str, str]) -> str:
    return "-".join(case)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_hello_over_prior_knowledge_and_http1_on_the_same_port(case: tuple[str, str]) -> None:
    import http.client

    with serving(*case) as address:
        answer = get(address)
        assert answer.status == 200
        assert answer.body == b"HTTP/2"  # SERVER_PROTOCOL, or ASGI's http_version "2"
        assert answer.headers[b"server"] == b"threadloom"
        assert b"date" in answer.headers
        assert b"connection" not in answer.headers  # connection-specific: dropped (RFC 9113)
        plain = http.client.HTTPConnection(*address, timeout=10)
        plain.request("GET", "/")
        assert plain.getresponse().read() == b"HTTP/1.1"
        plain.close()


@pytest.mark.parametrize("case", CONCURRENT, ids=_id)
def test_ten_streams_of_one_connection_run_at_the_same_time(case: tuple[str, str]) -> None:
    """The issue's measure: ten streams whose app sleeps 0.5 s finish in about 0.5 s."""
    with serving(*case, threads=10) as address, H2Client(address) as client:
        began = time.monotonic()
        ids = [client.request("/sleep") for _ in range(10)]
        answers = client.wait(*ids)
        took = time.monotonic() - began
        assert [a.status for a in answers] == [200] * 10
        assert took < SLEEP_S * 3 * timeout_factor(), f"10 streams took {took:.2f} s"


def test_single_serves_streams_one_after_another() -> None:
    with serving("single", "wsgi") as address, H2Client(address) as client:
        began = time.monotonic()
        ids = [client.request("/sleep") for _ in range(3)]
        answers = client.wait(*ids)
        assert [a.status for a in answers] == [200] * 3
        assert time.monotonic() - began >= 3 * SLEEP_S * 0.9


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_bodies_both_ways_under_flow_control(case: tuple[str, str]) -> None:
    """A 300 KiB upload is more than the 64 KiB window: it arrives only because the window
    is given back as the app reads; a 4 MiB response is cut to the client's windows."""
    upload = bytes(range(256)) * 1200
    with serving(*case) as address, H2Client(address) as client:
        echo = client.request("/echo", method="POST", body=upload)
        big = client.request("/big")
        stream = client.request("/stream")
        answers = client.wait(echo, big, stream)
    assert answers[0].body == upload
    assert answers[1].body == BIG
    assert answers[2].body.endswith(b"chunk 999\n") and answers[2].body.count(b"\n") == 1000


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_an_app_error_is_a_500_and_a_bad_header_never_reaches_the_wire(
    case: tuple[str, str],
) -> None:
    with serving(*case) as address, H2Client(address) as client:
        fail = client.request("/fail")
        bad = client.request("/bad-header")
        fine = client.request("/")
        answers = client.wait(fail, bad, fine)
    assert [a.status for a in answers] == [500, 500, 200]
    assert b"never sent" not in answers[1].body
    assert b"x-bad" not in answers[1].headers


@pytest.mark.parametrize("case", CONCURRENT, ids=_id)
def test_streams_past_the_limit_are_refused_the_others_served(case: tuple[str, str]) -> None:
    with serving(*case, h2_max_streams=2) as address, H2Client(address) as client:
        ids = [client.request("/sleep") for _ in range(4)]
        answers = client.wait(*ids)
    assert sorted(a.status for a in answers if a.ended) == [200, 200]
    assert [a.reset for a in answers if not a.ended] == [ErrorCodes.REFUSED_STREAM] * 2


@pytest.mark.parametrize("model", ["pool", "asyncio"])
def test_streams_that_would_wait_past_the_bound_get_503_at_once(model: str) -> None:
    """One thread, 0.5 s a stream, a 0.2 s bound: once a stream waits for the thread, a new
    one would wait 0.5 s more and is answered 503 at once; the connection goes on."""
    with (
        serving(model, "wsgi", threads=1, max_queue_wait=0.2) as address,
        H2Client(address) as client,
    ):
        queued = [client.request("/sleep") for _ in range(3)]  # no estimate yet: all admitted
        time.sleep(SLEEP_S + 0.1)  # one is done, one runs, one waits
        started = time.monotonic()
        late = client.wait(client.request("/"))[0]
        refused_in = time.monotonic() - started
        answers = client.wait(*queued)
        after = client.wait(client.request("/"))[0]
    assert [a.status for a in answers] == [200, 200, 200]
    assert late.status == 503 and late.headers[b"retry-after"] == b"1"
    assert refused_in < 0.3 * timeout_factor()  # queued, it would have waited ~0.4 s
    assert after.status == 200


def test_streams_read_in_a_late_pass_of_the_loop_get_503_at_once() -> None:
    """An ASGI app keeps the loop 0.5 s; the streams that came meanwhile would each wait
    another 0.5 s, so the pass that reads them refuses them (but one, under uvloop, whose
    pass samples the lag before it reads); the connection goes on."""
    with (
        serving("asyncio", "asgi", max_queue_wait=0.2) as address,
        H2Client(address) as client,
    ):
        first = client.request("/hog")
        time.sleep(0.1)  # the loop is kept now
        late = [client.request("/hog") for _ in range(3)]
        answers = client.wait(first, *late)
        after = client.wait(client.request("/"))[0]
    statuses = [a.status for a in answers]
    assert statuses[0] == 200 and statuses.count(503) >= 2, statuses
    assert all(a.headers[b"retry-after"] == b"1" for a in answers if a.status == 503)
    assert after.status == 200


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_stopping_sends_goaway_and_lets_streams_in_flight_finish(case: tuple[str, str]) -> None:
    app = app_for(case[1])
    server = Server(app, model=case[0], bind=("127.0.0.1:0",), access_log=False)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert server.model is not None and server.model.ready.wait(10)
    try:
        with H2Client(server.addresses[0]) as client:
            stream_id = client.request("/sleep")
            time.sleep(0.1)  # the stream is in flight
            threading.Thread(target=server.stop, daemon=True).start()
            answer = client.wait(stream_id)[0]
            while client.goaway is None and not client.closed:
                client.wait(stream_id, timeout=1)
                client._receive_once(1)
            assert answer.status == 200 and answer.ended
            assert client.goaway is not None
            assert client.goaway.last_stream_id == stream_id
            assert client.goaway.error_code == ErrorCodes.NO_ERROR
    finally:
        server.stop()
        thread.join(timeout=15)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    folder = tmp_path_factory.mktemp("h2tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile), ca


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_tls_offers_h2_by_alpn(case: tuple[str, str], certificate: Any) -> None:
    certfile, keyfile, ca = certificate
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with serving(*case, certfile=certfile, keyfile=keyfile) as address:
        with H2Client(address, tls=context) as client:
            assert client.alpn == "h2"
            ids = [client.request("/"), client.request("/big")]
            answers = client.wait(*ids)
        assert answers[0].body == b"HTTP/2" and answers[1].body == BIG
        old = ssl.create_default_context()
        ca.configure_trust(old)
        old.set_alpn_protocols(["http/1.1"])
        with old.wrap_socket(
            __import__("socket").create_connection(address, timeout=10), server_hostname="localhost"
        ) as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"


@pytest.mark.parametrize("case", CONCURRENT, ids=_id)
def test_the_last_tls_records_reach_a_reader_that_falls_behind(
    case: tuple[str, str], certificate: Any
) -> None:
    """A worker that wrote a response's last piece while the socket was full leaves that
    piece sealed but unsent: someone must still write it (under ``threads`` the outbox
    counted it as sent and nobody did, so a client that sends nothing more, as httpx,
    waited for ever: 4 runs in 10 of test_httpx_over_tls[threads] timed out)."""
    certfile, keyfile, ca = certificate
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2"])
    with serving(*case, certfile=certfile, keyfile=keyfile) as address:
        for _ in range(3):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.settimeout(10 * timeout_factor())
            raw.connect(address)
            # windows that let the worker frame the whole response itself, and no frame
            # from the client meanwhile (no WINDOW_UPDATE) that would wake the owner
            windows = {SettingCodes.INITIAL_WINDOW_SIZE: 2**30}
            with H2Client(address, tls=context, sock=raw, settings=windows, ack=False) as client:
                client.conn.increment_flow_control_window(2**30)
                stream_id = client.request("/echo", "POST", body=UPLOAD)
                time.sleep(0.3)  # the server's writes fill the socket meanwhile
                answer = client.wait(stream_id, timeout=5)[0]
            assert answer.ended and answer.body == UPLOAD


@pytest.mark.parametrize("model", ["pool", "asyncio"])
def test_the_http_flag_turns_http2_off_or_forces_it(model: str) -> None:
    import http.client

    with serving(model, "wsgi", http="1") as address:
        client = H2Client(address)
        client.request("/")
        client.wait(timeout=3)
        assert client.closed  # the preface is not HTTP/1.1: refused, closed
        client.sock.close()
    with serving(model, "wsgi", http="2") as address:
        assert get(address).body == b"HTTP/2"
        plain = http.client.HTTPConnection(*address, timeout=10)
        plain.request("GET", "/")
        assert plain.getresponse().status == 505
        plain.close()


@pytest.mark.parametrize("case", [("pool", "wsgi"), ("asyncio", "asgi")], ids=_id)
def test_the_access_log_says_http_2_0(case: tuple[str, str], caplog: Any) -> None:
    caplog.set_level("INFO", logger="threadloom.access")
    with serving(*case, access_log=True) as address:
        assert get(address).status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "threadloom.access"]
    assert any('"GET / HTTP/2.0" 200' in line for line in lines), lines


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_proxy_header_before_the_preface_names_the_client(
    case: tuple[str, str], caplog: Any
) -> None:
    """HAProxy's ``send-proxy`` in front of an h2 upstream: the PROXY header comes first,
    then the client preface; the access log names the client the header named."""
    import socket

    caplog.set_level("INFO", logger="threadloom.access")
    with serving(*case, proxy_protocol=True, access_log=True) as address:
        raw = socket.create_connection(address, timeout=10)
        raw.sendall(b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 8000\r\n")
        with H2Client(address, sock=raw) as client:
            answer = client.wait(client.request("/"))[0]
    assert answer.body == b"HTTP/2"
    lines = [r.getMessage() for r in caplog.records if r.name == "threadloom.access"]
    assert any(line.startswith("203.0.113.7 ") and "HTTP/2.0" in line for line in lines), lines
