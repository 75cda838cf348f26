"""The C boundary: the extensions take their tables from Python, and hold up to misuse.

``_speedups.c`` keeps none of Python's rules: ``connection.py`` and ``response.py`` hand over
their tables at import, and the C code declines what they say Python decides. These tests
check that what C holds is Python's, that a change to a table changes what C does, and
that both extensions keep their state per module (PEP 489). The rest are the faults a
reading of the C found, each shown on the old build: a crash, non-canonical strings, a leak.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

from tests.protocols.c_paths import C_PATHS_ONLY
from threadloom.interfaces import wsgi
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import connection, response, speedups
from threadloom.protocols.http1.request import Request

pytestmark = C_PATHS_ONLY

CLEAN = b"GET /a?b HTTP/1.1\r\nHost: h\r\nX-New: 1\r\n\r\n"


def response_py_tables() -> dict[str, Any]:
    """What response.py hands to ``bind_response`` at import."""
    return {
        "tchar": response._TCHAR,
        "value_ok": response._VALUE_OK,
        "kinds": response._KINDS,
        "length": response._LENGTH,
        "noted": response._NOTED,
        "own": response._DATE_OR_SERVER,
        "no_body": response._NO_BODY_STATUS,
        "server": response.SERVER,
        "after_whole": response._AFTER_WHOLE,
    }


def _speedups() -> ModuleType:
    from threadloom.protocols.http1 import _speedups

    return _speedups


def fresh_instance(name: str) -> ModuleType:
    """A second instance of an extension module, with state of its own (PEP 489)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(data: bytes) -> Any:
    limits = connection.DEFAULT_LIMITS
    return _speedups().parse_request(
        data, 0, limits.max_header_size, limits.max_headers, limits.max_body_size
    )


@contextmanager
def response_tables(**changes: Any) -> Iterator[None]:
    """Bind response.py's tables with ``changes``; bind the real ones again after."""
    _speedups().bind_response(**{**response_py_tables(), **changes})
    try:
        yield
    finally:
        _speedups().bind_response(**response_py_tables())


def plain_request(version: str = "1.1", keep_alive: bool = True) -> Request:
    request = Request()
    request.method, request.http_version, request.keep_alive = "GET", version, keep_alive
    return request


# -- the tables are Python's ----------------------------------------------------------------


def test_c_holds_pythons_tables() -> None:
    """What C uses, rebuilt from its own copies, equals each table where Python keeps it."""
    tables = _speedups().tables()
    assert tables["request_bound"] and tables["response_bound"]
    assert tables["watched"] == set(connection._WATCHED)
    assert tables["kinds"] == response._KINDS  # the field codes, from response.py's table
    assert tables["length"] == response._LENGTH
    assert tables["noted"] == set(response._NOTED)
    assert tables["own"] == response._DATE_OR_SERVER
    assert tables["no_body"] == set(response._NO_BODY_STATUS)
    assert tables["after_whole"] == response._AFTER_WHOLE
    assert tables["server_line"] == b"Server: " + response.SERVER + b"\r\n"
    assert tables["tchar"] == bytes(sorted(set(response._TCHAR)))
    assert tables["value_ok"] == bytes(sorted(set(response._VALUE_OK)))


@pytest.mark.parametrize("name", sorted(response._KINDS))
def test_field_codes_are_response_pys(name: bytes) -> None:
    """For each named field, C notes the same kind bit as _scan_headers, or declines."""
    value = b"5" if response._KINDS[name] == response._LENGTH else b"x"
    fields = [(name.title(), value)]
    scanned = _speedups().scan_headers(fields)
    python: list[bytes] = []
    length, seen, close = _python_scan(python, fields)
    if scanned is None:
        assert response._KINDS[name] not in (*response._NOTED, response._LENGTH)
    else:
        assert (scanned[1], scanned[2], False) == (length, seen, close)
        assert [scanned[0]] == python


def _python_scan(lines: list[bytes], headers: Any) -> tuple[int | None, int, bool]:
    saved = response.scan_headers
    response.scan_headers = None
    try:
        return response._scan_headers(lines, headers, 200)
    finally:
        response.scan_headers = saved


def test_a_name_python_starts_watching_is_left_to_python() -> None:
    """Watching one more field in connection.py makes the C parser decline it, with no C
    edit: the set it checks is the one connection.py hands it."""
    assert parse(CLEAN) is not None
    speedups.bind_request(connection._WATCHED | {b"x-new"})
    try:
        assert parse(CLEAN) is None
        assert parse(CLEAN.replace(b"X-New", b"X-Old")) is not None
    finally:
        speedups.bind_request(connection._WATCHED)
    assert parse(CLEAN) is not None


def test_a_new_field_kind_is_left_to_python() -> None:
    """A kind response.py adds (or stops passing through) is declined by C at once."""
    fields = [("X-Frame", "a"), ("Server", "mine")]
    assert _speedups().scan_headers(fields) is not None
    with response_tables(kinds={**response._KINDS, b"x-frame": 6}):
        assert _speedups().scan_headers(fields) is None
    with response_tables(noted=frozenset({response._DATE})):
        assert _speedups().scan_headers(fields) is None
    assert _speedups().scan_headers(fields) is not None


def test_server_value_and_connection_rule_come_from_python() -> None:
    render = _speedups().render_whole
    line = response.status_line(200, None)
    after = tuple((b"Connection: x-%d\r\n" % i, bool(i & 1)) for i in range(4))
    with response_tables(server=b"elsewhere/2", after_whole=after):
        for keep_alive in (False, True):
            for version, http10 in (("1.1", 0), ("1.0", 1)):
                data, kept = render(plain_request(version, keep_alive), 200, line, [], b"hi")
                assert b"\r\nServer: elsewhere/2\r\n" in data
                assert after[2 * keep_alive + http10][0] in data
                assert kept is after[2 * keep_alive + http10][1]
    with response_tables(no_body=frozenset({200})):
        assert render(plain_request(), 200, line, [], b"hi") is None
    data, kept = render(plain_request(), 200, line, [], b"hi")
    assert b"\r\nServer: threadloom\r\n" in data and kept is True


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_keep_alive_after_a_whole_response_is_decided_once(version: str, keep_alive: bool) -> None:
    """full_response, fast or not, keeps the connection as _after_whole says."""
    request = plain_request(version, keep_alive)
    fast = response.full_response(request, 200, [], b"x")
    kept = response.full_response_parts(request, 200, [], b"x")[2]
    assert fast[1] is kept is response._after_whole(keep_alive, version == "1.0")[1]
    assert response._after_whole(keep_alive, version == "1.0")[0] in fast[0]
    assert b"\r\nServer: threadloom\r\n" in response.error_response(503)


def test_each_module_instance_has_its_own_state() -> None:
    """Multi-phase init: a second instance starts unbound, so it declines everything."""
    other = fresh_instance("threadloom.protocols.http1._speedups")
    assert other is not _speedups()
    assert not other.tables()["request_bound"]
    assert other.parse_request(CLEAN, 0, 8192, 100, 10) is None
    assert other.scan_headers([("X-A", "b")]) is None
    line = response.status_line(200, None)
    assert other.render_whole(plain_request(), 200, line, [], b"") is None
    assert parse(CLEAN) is not None  # the one in use is untouched
    environs = fresh_instance("threadloom.interfaces._wsgi")
    assert environs.ExchangeCore is not wsgi._c_core
    with pytest.raises(RuntimeError, match="bind_environ"):
        environs.environ({}, plain_request(), None, None)


# -- what a reading of the C found ------------------------------------------------------------

RUN_APP = """
import re
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import Request

class Sink:
    can_sendfile = False
    data = b""
    def send(self, data):
        self.data += data

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    {change}
    return [b"hi"]

runner = WSGIRunner(app, server_name="h", server_port="80", url_scheme="http", multithread=True)
request = Request()
request.method, request.keep_alive = "GET", True
sink = Sink()
try:
    outcome = runner.run(request, None, sink, ("127.0.0.1", 1))
    print(outcome.status, outcome.keep_alive, sink.data.split(b"\\r\\n")[0])
except Exception as exc:
    print("raised", type(exc).__name__, re.sub("0x[0-9a-f]+", "0x-", str(exc)))
"""


MEMBERS = ["request", "headers", "line", "status", "sink", "sent", "keep_alive"]


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("change", ["del exchange.{}", "exchange.{} = object()"])
def test_changing_an_exchange_member_does_not_crash(member: str, change: str) -> None:
    """An app can reach the exchange (``start_response.__self__``) and delete or replace its
    state; the old T_OBJECT members let a deleted one reach C as NULL (a crash). Now either
    answers as pure Python does, whose slots the members mirror."""
    change = "exchange = start_response.__self__; " + change.format(member)
    code = RUN_APP.format(change=change)
    runs = {}
    for pure in ("", "1"):
        env = {**os.environ, "THREADLOOM_PURE_PYTHON": pure}
        argv = [sys.executable, "-c", code]
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, (pure, run.returncode, run.stderr[-2000:])
        runs[pure] = run.stdout
    assert runs[""] == runs["1"]
    assert runs[""].strip()


def test_environ_keys_are_canonical_strings() -> None:
    """The old C built keys with PyUnicode_New(n, 255): ``'HTTP_X_FOO'.isascii()`` was False
    on the C path only, which ``==`` cannot see. Compare type, isascii() and value."""
    runner = WSGIRunner(lambda e, s: [], server_name="h", server_port="80", url_scheme="http",
                        multithread=True)  # fmt: skip
    request = plain_request()
    request.path, request.query, request.target = b"/a", b"q", b"/a?q"
    names = [b"x-canonical-probe", b"accept", b"x-z"]
    request.headers = [(name, b"v") for name in names]

    def describe(env: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (type(k), k.isascii(), k, type(v), v.isascii() if isinstance(v, str) else None)
            for k, v in env.items()
            if k != "wsgi.input"
            for v in [env[k]]
            if not callable(v) and not hasattr(v, "write")
        )

    saved = dict(wsgi._ENV_KEYS)
    try:
        for name in names:  # C makes these keys first
            wsgi._ENV_KEYS.pop(name, None)
        fast = runner.environ(request, None, ("127.0.0.1", 1))
        wsgi._ENV_KEYS.clear()
        wsgi._ENV_KEYS.update(saved)
        for name in names:
            wsgi._ENV_KEYS.pop(name, None)
        slow = runner.environ_py(request, None, ("127.0.0.1", 1))
    finally:
        wsgi._ENV_KEYS.clear()
        wsgi._ENV_KEYS.update(saved)
    assert "HTTP_X_CANONICAL_PROBE" in fast
    assert describe(fast) == describe(slow)
    assert all(key.isascii() for key in fast if key.startswith("HTTP_"))


LEAK_PROBE = """
import sys
import _testcapi
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import Request

runner = WSGIRunner(lambda e, s: [], server_name="h", server_port="80", url_scheme="http",
                    multithread=True)
request = Request()
request.method, request.path, request.query = "GET", b"/a%20b", b"q=1"
request.target, request.http_version = b"/a%20b?q=1", "1.1"
request.headers = [(b"host", b"a"), (b"x-a", b"b")]
protocol = runner.environ(request, None, None)["SERVER_PROTOCOL"]
assert protocol is sys.intern("HTTP/1.1")  # the C path's interned value
failures = 0
before = sys.getrefcount(protocol)
for start in range(80):  # each allocation in turn fails once
    _testcapi.set_nomemory(start, start + 1)
    try:
        runner.environ(request, None, ("10.0.0.1", 5))
    except MemoryError:
        failures += 1
    finally:
        _testcapi.remove_mem_hooks()
print(failures, sys.getrefcount(protocol) - before)
"""


def test_environ_releases_everything_when_it_fails() -> None:
    """The old environ leaked SERVER_PROTOCOL's reference on each failure before storing it
    (and called the C API with MemoryError set after RAW_URI failed). Each allocation in
    turn fails once: the failures leave no reference behind."""
    if importlib.util.find_spec("_testcapi") is None:
        pytest.skip("this Python has no _testcapi (set_nomemory)")
    argv = [sys.executable, "-c", textwrap.dedent(LEAK_PROBE)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    failures, leaked = map(int, run.stdout.split())
    assert failures > 3  # the probe did reach the failure paths
    assert leaked == 0
