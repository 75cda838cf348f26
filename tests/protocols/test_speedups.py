"""The C fast paths (``_speedups.c``, ``interfaces/_wsgi.c``) against the Python they skip.

The contract (``_speedups.c``): for any input the C code either does exactly what the Python
code does, or declines (None) and lets the Python code run. So every test here runs the same
input through both paths and compares everything observable: the parsed requests, the error
and its status, the response bytes and the exception raised.
"""

from __future__ import annotations

import collections
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.corpus.http1.loader import load_cases
from tests.fuzz.http1c_target import describe
from tests.protocols.c_paths import C_PATHS_ONLY
from threadloom.errors import LocalProtocolError, RemoteProtocolError
from threadloom.interfaces import wsgi
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import (
    DEFAULT_DATES,
    ServerConnection,
    connection,
    full_response,
    response,
    speedups,
)
from threadloom.protocols.http1.limits import HTTPLimits
from threadloom.protocols.http1.request import Request, RequestBody

pytestmark = C_PATHS_ONLY
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CASES = load_cases("invalid") + load_cases("valid")


def test_extension_is_in_use() -> None:
    """CI builds it: a silent fallback to pure Python would make these tests vacuous."""
    assert speedups.ACTIVE
    assert connection.parse_request is not None
    assert response.scan_headers is not None
    assert response.render_whole is not None
    assert wsgi._c_environ is not None


@contextmanager
def pure_python() -> Iterator[None]:
    saved = connection.parse_request, response.scan_headers, response.render_whole
    connection.parse_request = response.scan_headers = response.render_whole = None
    try:
        yield
    finally:
        connection.parse_request, response.scan_headers, response.render_whole = saved


def outcome(pieces: list[bytes], limits: HTTPLimits) -> tuple[Any, ...]:
    """Feed the pieces, then EOF; the requests, the error status, and the end state."""
    conn = ServerConnection(limits)
    error = None
    try:
        for piece in [*pieces, b""]:
            conn.receive_data(piece)
    except RemoteProtocolError as exc:
        error = exc.status
    requests = [describe(r) for r in conn.requests]
    return requests, error, conn.upgraded, conn.trailing_data, conn.peer_closed


def both(pieces: list[bytes], limits: HTTPLimits = connection.DEFAULT_LIMITS) -> Any:
    fast = outcome(pieces, limits)
    with pure_python():
        slow = outcome(pieces, limits)
    assert fast == slow
    return fast


@pytest.mark.parametrize(("name", "raw", "status"), CASES, ids=[c[0] for c in CASES])
def test_corpus_same_either_way(name: str, raw: bytes, status: int | None) -> None:
    both([raw])
    both([raw, raw])  # the second copy arrives between messages, or after an error
    both([raw + raw])  # pipelined in one read


def test_keep_alive_rules() -> None:
    for version in (b"1.0", b"1.1"):
        for connection_field in (b"", b"Connection: close\r\n", b"Connection: Keep-Alive\r\n"):
            raw = b"GET / HTTP/%s\r\nHost: a\r\n%s\r\n" % (version, connection_field)
            requests, error, *_ = both([raw + raw])
            assert error is None and requests


def test_limits_are_the_same() -> None:
    head = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 10 + b"\r\n"
    for size in (60, 100, 150, 180, 200, len(head), 4096):
        for count in (5, 10, 11, 12):
            limits = HTTPLimits(max_header_size=size, max_headers=count, max_body_size=10)
            both([head], limits)
            both([head.replace(b"\r\n\r\n", b"\r\nContent-Length: 11\r\n\r\n") + b"x" * 11], limits)


def test_one_byte_names_do_not_change_shared_bytes() -> None:
    """One-byte bytes objects are process-wide singletons: lower-casing one in place would
    turn every b"U" into b"u" (found by the WebSocket property tests through a mask byte)."""
    requests, error, *_ = both([b"GET / HTTP/1.1\r\nHost: a\r\nU: 1\r\nZ: 2\r\n\r\n"])
    assert error is None
    assert requests[0][5] == [(b"host", b"a"), (b"u", b"1"), (b"z", b"2")]
    assert bytes([85]) == b"U" and b"Z".lower() == b"z"


# -- generated requests: mostly valid, with the kinds of damage the corpus is made of --------

METHODS = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
                           b"get", b"CONNECT", b"PRI", b"TRACE"])  # fmt: skip
TARGETS = st.sampled_from([b"/", b"/a/b?c=d&e", b"/%7e?x=%zz", b"*", b"http://h/p?q", b"/a#f",
                           b"/\x7f", b"/\xc3\xa9", b"/a b", b"/{}|^`", b"/?a?b"])  # fmt: skip
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"])
NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"Transfer-Encoding",
                         b"Connection", b"Expect", b"Upgrade", b"X-A", b"U", b"a_b", b"X A",
                         b"X:", b"", b"\xff", b"Cookie"])  # fmt: skip
VALUES = st.sampled_from([b"a", b"", b" a ", b"\ta\t", b"0", b"5", b"05", b"-1", b"1,1",
                          b"99999999999999999999", b"chunked", b"close", b"Keep-Alive",
                          b"upgrade", b"100-continue", b"websocket", b"a\x00b", b"\x80",
                          b"a\rb", b"a\nb", b"x" * 300])  # fmt: skip
EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\n "])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = b"%s %s %s" % (draw(METHODS), draw(TARGETS), draw(VERSIONS))
    fields = draw(st.lists(st.tuples(NAMES, VALUES, EOLS), max_size=6))
    head = line + draw(EOLS) + b"".join(n + b":" + v + e for n, v, e in fields) + b"\r\n"
    return head + draw(st.binary(max_size=12))


@st.composite
def clean_requests(draw: st.DrawFn) -> bytes:
    """What the C path should accept, mostly: for the comparison to bite where it matters."""
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"DELETE"]))
    target = draw(st.sampled_from([b"/", b"/a/b?c=d&e", b"/%7e?x=%zz", b"/?a?b"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    names = st.sampled_from([b"Host", b"X-A", b"U", b"Accept", b"Connection", b"Content-Length"])
    values = st.sampled_from([b"a", b"", b" a ", b"\ta b\t", b"0", b"3", b"close", b"keep-alive"])
    fields = draw(st.lists(st.tuples(names, values), max_size=5))
    if draw(st.booleans()):
        fields.insert(0, (b"Host", b"example.com"))
    head = b"%s %s %s\r\n" % (method, target, version)
    head += b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    return head + draw(st.sampled_from([b"", b"abc", b"abcdef"]))


@SETTINGS
@given(
    raws=st.lists(clean_requests() | requests(), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
    small=st.booleans(),
)
def test_generated_requests_same_either_way(
    raws: list[bytes], cuts: list[int], small: bool
) -> None:
    stream = b"".join(raws)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    limits = HTTPLimits(max_header_size=120, max_headers=4, max_body_size=4) if small else None
    both(pieces, limits or connection.DEFAULT_LIMITS)


# -- response heads ------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(["Content-Type", b"content-type", "Content-Length",
                               b"CONTENT-LENGTH", "Date", "Server", "Connection",
                               "Transfer-Encoding", "X-Bad Name", "", "é", b"\xff", 3])  # fmt: skip
FIELD_VALUES = st.sampled_from(["text/plain", b" 13 ", "13", "0", "-1", "1e3", "close",
                                "chunked", "a\r\nb", "a\x00", "\ta\t", "é", "€", b"\x80",
                                b"x" * 300, None])  # fmt: skip
CLEAN_NAMES = st.sampled_from(["Content-Type", b"X-A", "Content-Length", "ETag", "U"])
CLEAN_VALUES = st.sampled_from(["text/plain", b"13", "0", " 13 ", "\ta", "", "x" * 300])
STATUSES = st.sampled_from([200, 204, 304, 101, 404, 500])


def render(status: int, headers: Any, body: Any, request: Request) -> tuple[str, Any]:
    try:
        data, keep_alive = full_response(request, status, headers, body)
    except LocalProtocolError as exc:
        return "error", str(exc)
    return "ok", (re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", data), keep_alive)  # a clock


@SETTINGS
@given(
    status=STATUSES,
    fields=st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6)
    | st.lists(st.tuples(CLEAN_NAMES, CLEAN_VALUES), max_size=4),
    as_tuple=st.booleans(),
    body=st.sampled_from([b"", b"x" * 13, bytearray(b"abc")]),
    method=st.sampled_from(["GET", "HEAD"]),
    version=st.sampled_from(["1.1", "1.0"]),
    keep_alive=st.booleans(),
)
def test_response_heads_same_either_way(
    status: int,
    fields: list[tuple[Any, Any]],
    as_tuple: bool,
    body: Any,
    method: str,
    version: str,
    keep_alive: bool,
) -> None:
    headers: Any = tuple(fields) if as_tuple else fields
    request = Request()
    request.method, request.http_version, request.keep_alive = method, version, keep_alive
    fast = render(status, headers, body, request)
    with pure_python():
        slow = render(status, headers, body, request)
    assert fast == slow


def test_pure_python_switch() -> None:
    """``THREADLOOM_PURE_PYTHON=1`` turns the C paths off (to rule them out when debugging)."""
    code = "from threadloom.protocols.http1.speedups import *; print(ACTIVE, parse_request)"
    env = {**os.environ, "THREADLOOM_PURE_PYTHON": "1"}
    argv = [sys.executable, "-c", code]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["False", "None"], out.stderr


def test_fast_requests_have_every_slot_set() -> None:
    """The C path builds requests without ``__init__``: every slot must still be set."""
    conn = ServerConnection()
    conn.receive_data(b"POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
    request = conn.requests.popleft()
    for obj, cls in ((request, Request), (request.body, RequestBody)):
        for slot in cls.__slots__:
            getattr(obj, slot)  # AttributeError if unset
    assert request.body.take() == b"hi"
    assert type(request) is Request and type(request.body) is RequestBody


def test_binding_refuses_classes_it_does_not_know() -> None:
    """A slot added to Request without teaching _speedups.c about it fails at import."""
    from threadloom.protocols.http1 import _speedups

    class Wider(Request):
        __slots__ = ("extra",)

    class Fewer:
        __slots__ = ("chunks",)

    with pytest.raises(TypeError, match="slots"):
        _speedups.bind_types(Wider, RequestBody, collections.deque)
    with pytest.raises(AttributeError):
        _speedups.bind_types(Request, Fewer, collections.deque)


# -- the WSGI environ (interfaces/_wsgi.c) ---------------------------------------------------

PATHS = st.sampled_from([b"/", b"/a%20b", b"/%zz%4", b"/%41%", b"/p%C3%A9", b"/\xe9", b"/a%2Fb"])
HEADER_NAMES = st.sampled_from([b"host", b"cookie", b"x-a", b"x_a", b"content-type",
                                b"content-length", b"accept", b"x-forwarded-for"])  # fmt: skip
HEADER_VALUES = st.sampled_from([b"", b"a", b"\xe9\xff", b"a, b", b" x "])
CLIENTS = st.sampled_from([("127.0.0.1", 5555), ("::1", 80, 0, 0), None, "unix-peer"])


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "M-SEARCH"]),
    path=PATHS,
    query=st.sampled_from([b"", b"a=1&b=%20", b"\xe9"]),
    version=st.sampled_from(["1.1", "1.0", "2.0"]),
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    client=CLIENTS,
)
def test_environ_same_either_way(
    method: str,
    path: bytes,
    query: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    client: Any,
) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    runner = WSGIRunner(app, server_name="h", server_port="80", url_scheme="http", multithread=True)
    request = Request()
    request.method, request.path, request.query, request.http_version = method, path, query, version
    request.target = path + (b"?" + query if query else b"")
    request.headers = headers
    body = object()
    saved = dict(wsgi._ENV_KEYS)  # each path makes the keys it has not met itself
    try:
        fast = runner.environ(request, body, client)
        wsgi._ENV_KEYS.clear()
        wsgi._ENV_KEYS.update(saved)
        slow = runner.environ_py(request, body, client)
    finally:
        wsgi._ENV_KEYS.clear()
        wsgi._ENV_KEYS.update(saved)
    assert strings(fast) == strings(slow)  # == alone cannot see a non-canonical str
    assert fast["wsgi.input"] is body


def strings(env: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each key and value with its type and isascii(), which == does not compare."""
    return [
        (type(k), k.isascii(), k, type(v), v.isascii() if isinstance(v, str) else None, v)
        for k, v in sorted(env.items(), key=lambda item: item[0])
    ]


@SETTINGS
@given(second=st.integers(0, 253402300799))  # up to the end of year 9999
def test_date_line_same_as_formatdate(second: int) -> None:
    """The C fast path formats Date itself; it must say what dates.py's DateCache says."""
    from threadloom.protocols.http1 import _speedups

    assert _speedups.http_date(second) == formatdate(second, usegmt=True).encode("ascii")


def test_fast_response_date_is_the_current_one() -> None:
    """The C path reads the clock time.time() reads: its Date is one dates.py gives."""
    request = Request()
    request.method, request.http_version, request.keep_alive = "GET", "1.1", True
    for _ in range(20_000):  # some of them across a turn of the second
        before = DEFAULT_DATES.header_value()
        data, _ = full_response(request, 200, [], b"")
        after = DEFAULT_DATES.header_value()
        assert before in data or after in data, (before, after, data)


# -- the WSGI exchange (interfaces/_wsgi.c ExchangeCore) -------------------------------------


def _python_exchange() -> type:
    """wsgi._Exchange with the pure-Python state class under it instead of ExchangeCore."""
    methods = {
        name: value
        for name, value in vars(wsgi._Exchange).items()
        if name not in ("__dict__", "__weakref__", "__slots__")
    }
    return type("PythonExchange", (wsgi._ExchangeState,), {**methods, "__slots__": ()})


class _Sink:
    can_sendfile = False

    def __init__(self) -> None:
        self.data = b""

    def send(self, data: bytes) -> None:
        self.data += data

    def sendfile(self, file: Any, count: int) -> int:
        raise AssertionError("not used")


WSGI_STATUSES = st.sampled_from(
    ["200 OK", "404 Not Found", "204 No Content", "304 X", "200 ", "999 Odd", "abc",
     "200 OK\r\nX: y", "201 Créé"]
)  # fmt: skip
FIELD_NAME = st.sampled_from(
    ["Content-Type", "Content-Length", "X-A", "Date", "Connection", "X-Request-ID", "X Bad"]
)
FIELD_VALUE = st.sampled_from(["text/plain", "3", "0", "close", "a\r\nb", "é", "€"])
WSGI_FIELDS = st.lists(st.tuples(FIELD_NAME, FIELD_VALUE), max_size=4)


@SETTINGS
@given(
    status=WSGI_STATUSES,
    fields=WSGI_FIELDS | st.just([]),
    chunks=st.lists(st.sampled_from([b"", b"abc", b"x" * 20]), max_size=3),
    shape=st.sampled_from(["list", "tuple", "generator", "write", "exc_info", "twice", "none"]),
    method=st.sampled_from(["GET", "HEAD"]),
    version=st.sampled_from(["1.1", "1.0"]),
    keep_alive=st.booleans(),
    request_id=st.sampled_from([None, "abc"]),
)
def test_wsgi_exchange_same_either_way(
    status: str,
    fields: list[tuple[str, str]],
    chunks: list[bytes],
    shape: str,
    method: str,
    version: str,
    keep_alive: bool,
    request_id: str | None,
) -> None:
    """ExchangeCore's fast start_response and send_whole answer as the Python ones do."""
    if wsgi._c_core is None:
        pytest.skip("the C extension is off")

    def app(environ: Any, start_response: Any) -> Any:
        if shape == "none":
            return chunks
        write = start_response(status, list(fields))
        if shape == "twice":
            start_response(status, list(fields))
        if shape == "exc_info":
            try:
                raise ValueError("replaced")
            except ValueError:
                write = start_response("500 Oops", [("X-B", "1")], sys.exc_info())
        if shape == "write":
            for chunk in chunks:
                write(chunk)
            return []
        if shape == "generator":
            return iter(chunks)
        return tuple(chunks) if shape == "tuple" else list(chunks)

    def run() -> tuple[Any, ...]:
        request = Request()
        request.method, request.http_version, request.keep_alive = method, version, keep_alive
        runner = WSGIRunner(
            app, server_name="h", server_port="80", url_scheme="http", multithread=True
        )
        runner.request_ids = request_id is not None
        sink = _Sink()
        environ = runner.environ(request, None, ("127.0.0.1", 1))
        if request_id is not None:
            environ["HTTP_X_REQUEST_ID"] = request_id
        exchange = wsgi._Exchange(request, sink, request_id, None)
        outcome = runner._respond(environ, exchange)
        data = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", sink.data)  # a clock
        return data, outcome.status, outcome.keep_alive, outcome.sent

    assert wsgi._Exchange.__mro__[1] is wsgi._c_core
    fast = run()
    saved = wsgi._Exchange
    wsgi._Exchange = _python_exchange()  # type: ignore[misc]
    try:
        with pure_python():
            slow = run()
    finally:
        wsgi._Exchange = saved  # type: ignore[misc]
    assert fast == slow


@pytest.mark.parametrize("cut", [60, 61, 100, 65536, 100_057])
def test_a_body_that_spans_reads_is_counted_after_the_c_head(cut: int) -> None:
    """The C parser takes the head and what of a Content-Length body is here; the rest is
    counted, not parsed (a 100 KB upload is no longer fed to llhttp a slice at a time), and
    the request after it is parsed at its boundary: the same requests as the Python path."""
    body = bytes(range(256)) * 400
    first = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    stream = first + body + b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\njunk"
    fast = both([stream[:cut], stream[cut:]])
    requests, error, *_ = fast
    assert error is None and [r[1] for r in requests] == [b"/up", b"/next"]
    conn = ServerConnection()
    conn.receive_data(stream[:cut])
    if cut > len(first):  # the C parser took the head: the body is being counted
        assert conn.requests[0].body.received == cut - len(first)
        assert conn._body_left == len(body) - (cut - len(first))


def takes(conn: ServerConnection, first: bytes, rest: bytes) -> list[Any]:
    """Feed ``first`` and ``rest``; take the body in three pieces: their types and bytes."""
    conn.receive_data(first)
    conn.receive_data(rest)
    body = conn.requests[0].body
    pieces = [body.take(3), body.take(len(first)), body.take()]
    return [(type(piece), piece) for piece in pieces]


def test_a_body_that_spans_reads_is_viewed_not_copied_and_taken_as_bytes() -> None:
    """The part of an unfinished body that came with its head stays a view of that read
    (it is copied once, when taken); whatever is taken is bytes, as wsgi.input and ASGI's
    body must be, and the same bytes as the Python path takes."""
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    first = head + bytes(range(60))
    rest = bytes(range(60, 100))
    fast = takes(ServerConnection(), first, rest)
    with pure_python():
        slow = takes(ServerConnection(), first, rest)
    assert fast == slow
    assert {kind for kind, _ in fast} == {bytes}
    assert b"".join(piece for _, piece in fast) == bytes(range(100))
    conn = ServerConnection()
    conn.receive_data(first)
    (part,) = conn.requests[0].body.chunks
    assert type(part) is memoryview and part.obj is first and part == bytes(range(60))


def test_a_whole_body_is_its_own_bytes() -> None:
    """A body the read holds whole is copied out: the app keeps it, not the whole read."""
    read = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + b"GET"
    conn = ServerConnection()
    conn.receive_data(read)  # (the next request's head has begun)
    (part,) = conn.requests[0].body.chunks
    assert type(part) is bytes and part == b"hello"


def test_a_counted_body_cut_short_is_truncated() -> None:
    body_start = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
    _, error, *_ = both([body_start, b"y" * 20])
    assert error == 400  # EOF in the middle of the body, either way
    conn = ServerConnection()
    conn.receive_data(body_start)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"")
    assert conn.requests[0].body.truncated and not conn.requests[0].body.complete
