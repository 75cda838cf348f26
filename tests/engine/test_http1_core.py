"""The HTTP/1.1 connection core's rules, on a fake clock: no socket, no sleep.

Every deadline the drivers honour comes from :class:`HTTP1Core`; these tests move ``now``
by hand, so a rule that puts a deadline a second late fails here at once rather than
in a timed integration test.
"""

from __future__ import annotations

from typing import Any

import pytest

from threadloom.config import Config
from threadloom.engine.http1_core import DISPATCH_BODY_BYTES, HTTP1Core, HTTPSettings, Route
from threadloom.engine.session import CLOSE, READ, SERVE
from threadloom.engine.ws import WSSettings
from threadloom.interfaces.wsgi import WSGIRunner

HEADER, KEEP_ALIVE, IO, RATE = 10.0, 5.0, 30.0, 100
T0 = 1000.0  # the fake clock's accept time


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def config(**changes: Any) -> Config:
    return Config(
        timeout_header=HEADER,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_io=IO,
        min_body_rate=RATE,
        access_log=False,
        **changes,
    )


def wsgi_settings(ws: bool = False) -> HTTPSettings:
    cfg = config()
    runner = WSGIRunner(
        wsgi_app, server_name="test", server_port="80", url_scheme="http", multithread=True
    )
    return HTTPSettings(cfg, runner=runner, ws=WSSettings(cfg, lambda s: None) if ws else None)


@pytest.fixture
def core() -> HTTP1Core:
    return HTTP1Core(wsgi_settings(), T0)


def serve_one(core: HTTP1Core, now: float, keep_alive: bool = True) -> Any:
    request, _ = core.begin()
    return request, core.finish(request, 200, 0, 0.001, keep_alive, now)


# -- the head and keep-alive deadlines ------------------------------------------------------


def test_the_first_head_is_due_timeout_header_after_accept(core: HTTP1Core) -> None:
    assert core.deadline() == T0 + HEADER
    assert core.expire().startswith(b"HTTP/1.1 408 ")  # no answer yet: the client may wait


def test_a_dribbled_head_keeps_the_deadline_of_its_first_byte(core: HTTP1Core) -> None:
    assert core.feed(b"GET / HTTP/1.1\r\n", T0 + 1) is READ
    assert core.deadline() == T0 + 1 + HEADER
    for second in range(2, 9):  # slowloris: a header line now and then
        assert core.feed(b"X-Slow: %d\r\n" % second, T0 + second) is READ
        assert core.deadline() == T0 + 1 + HEADER
    assert core.expire().startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_closes_silently(core: HTTP1Core) -> None:
    assert core.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0 + 1) is SERVE
    _, want = serve_one(core, T0 + 2)
    assert want is READ
    assert core.deadline() == T0 + 2 + KEEP_ALIVE
    assert core.idle
    assert core.expire() == b""


def test_a_head_begun_during_the_response_is_timed_from_the_response(core: HTTP1Core) -> None:
    core.feed(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n", T0)
    _, want = serve_one(core, T0 + 3)
    assert want is READ
    assert core.deadline() == T0 + 3 + HEADER
    assert not core.idle
    assert core.expire().startswith(b"HTTP/1.1 408 ")


def test_no_deadline_runs_while_an_exchange_is_in_flight(core: HTTP1Core) -> None:
    core.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    core.begin()
    assert core.deadline() is None
    assert core.feed(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", T0 + 1) is READ  # it waits
    assert not core.idle


def test_pipelined_requests_go_one_at_a_time_in_order(core: HTTP1Core) -> None:
    core.feed(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    first, want = serve_one(core, T0)
    assert first.target == b"/1" and want is SERVE
    second, want = serve_one(core, T0)
    assert second.target == b"/2" and want is READ


def test_connection_close_ends_the_connection(core: HTTP1Core) -> None:
    core.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    assert serve_one(core, T0, keep_alive=False)[1] is CLOSE


def test_the_end_of_input_between_requests_closes(core: HTTP1Core) -> None:
    core.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    serve_one(core, T0)
    assert core.feed(b"", T0 + 1) is CLOSE
    assert core.take_refusal() == b""


# -- when a request goes to the app, and the body's time budget ------------------------------


def test_a_small_body_is_awaited_before_a_sync_app_runs(core: HTTP1Core) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    assert core.feed(head + b"x" * 10, T0) is READ
    assert core.deadline() == T0 + IO  # the grace period
    assert core.feed(b"y" * 990, T0 + 1) is SERVE


def test_a_dribbled_body_runs_out_of_budget(core: HTTP1Core) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    core.feed(head + b"x" * 100, T0)
    assert core.deadline() == pytest.approx(T0 + IO)
    # 100 more bytes 29 s later: the budget is the grace plus a second per RATE bytes
    core.feed(b"x" * 100, T0 + 29)
    assert core.deadline() == pytest.approx(T0 + IO + 200 / RATE)


def test_expect_continue_or_a_large_body_goes_to_the_app_at_once(core: HTTP1Core) -> None:
    expect = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n"
    assert core.feed(expect, T0) is SERVE
    large = HTTP1Core(wsgi_settings(), T0)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (DISPATCH_BODY_BYTES * 4)
    assert large.feed(head + b"x" * (DISPATCH_BODY_BYTES - 1), T0) is READ
    assert large.feed(b"x", T0) is SERVE


def test_an_asgi_app_gets_its_request_before_the_body() -> None:
    core = HTTP1Core(HTTPSettings(config(), asgi=object()), T0)  # type: ignore[arg-type]
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    assert core.feed(head, T0) is SERVE
    assert core.begin()[1] is Route.ASGI


# -- refusals and upgrades ---------------------------------------------------------------------


def test_a_bad_request_is_refused_and_closed(core: HTTP1Core) -> None:
    assert core.feed(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", T0) is CLOSE
    assert core.take_refusal().startswith(b"HTTP/1.1 400 ")
    assert core.take_refusal() == b""  # once


def test_a_bad_body_during_an_exchange_is_left_to_the_exchange(core: HTTP1Core) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    assert core.feed(head + b"Expect: 100-continue\r\n\r\n5\r\nhello\r\n", T0) is SERVE
    core.begin()
    assert not core.receive_body(b"not-hex\r\n")
    assert core.take_refusal() == b""  # the app's response, if any, is the answer


def test_an_upgrade_answered_as_plain_http_goes_on_as_http(core: HTTP1Core) -> None:
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo/1\r\n\r\n"
    core.feed(upgrade + b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    request, route = core.begin()
    assert route is Route.WSGI
    assert core.finish(request, 200, 0, 0.0, True, T0) is SERVE
    assert core.begin()[0].target == b"/after"


def test_a_websocket_upgrade_goes_to_the_websocket_handler() -> None:
    core = HTTP1Core(wsgi_settings(ws=True), T0)
    core.feed(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        T0,
    )
    request, route = core.begin()
    assert core.is_websocket_upgrade(request)
    assert route is Route.WEBSOCKET


def test_without_an_upgrade_the_wsgi_app_answers_beside_a_websocket_handler() -> None:
    core = HTTP1Core(wsgi_settings(ws=True), T0)
    core.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0)
    assert core.begin()[1] is Route.WSGI
