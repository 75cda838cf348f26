"""Replay tests/corpus/http1 against ServerConnection: whole, and one byte at a time; each
valid case through the C parser and the pure-Python one, against its written expectation."""

from __future__ import annotations

import os

import pytest

from tests.corpus.http1.loader import ROOT, Parsed, expected_parse, load_cases
from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1 import Request, ServerConnection, connection

INVALID = load_cases("invalid")
VALID = load_cases("valid")


def feed(raw: bytes, step: int = 0) -> ServerConnection:
    """Feed ``raw`` (all at once, or ``step`` bytes at a time), then EOF."""
    conn = ServerConnection()
    if step:
        for i in range(0, len(raw), step):
            conn.receive_data(raw[i : i + step])
    else:
        conn.receive_data(raw)
    conn.receive_data(b"")
    return conn


def summary(request: Request) -> tuple[object, ...]:
    body = b"".join(request.body.chunks)
    return (request.method, request.target, request.headers, body, request.body.complete)


def test_corpus_is_there() -> None:
    assert len(INVALID) >= 90
    assert len(VALID) >= 20
    written = sorted(p.name.removesuffix(".parse.toml") for p in ROOT.glob("*/*.parse.toml"))
    assert written == [name for name, _, _ in VALID]  # one per valid case, none elsewhere


@pytest.fixture(params=["c", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Parse with the C fast path in front of llhttp (as by default), or llhttp alone."""
    if request.param == "python":
        monkeypatch.setattr(connection, "parse_request", None)
    elif connection.parse_request is None:
        pure = os.environ.get("THREADLOOM_PURE_PYTHON", "") in ("1", "true", "yes")
        if os.environ.get("THREADLOOM_REQUIRE_TOOLS") == "1" and not pure:
            pytest.fail("the C extension is not built and THREADLOOM_REQUIRE_TOOLS=1")
        pytest.skip("the C parser is off (THREADLOOM_PURE_PYTHON=1 or not built)")
    return str(request.param)


@pytest.mark.parametrize(("name", "raw", "status"), VALID, ids=[c[0] for c in VALID])
def test_valid_parsed_as_written(parser: str, name: str, raw: bytes, status: None) -> None:
    """Not only the same either way (test_speedups): what NAME.parse.toml says, from the RFC."""
    expected, trailing_data = expected_parse(name)
    conn = feed(raw)
    parsed = [
        Parsed(r.method, r.target, r.http_version, r.headers, b"".join(r.body.chunks))
        for r in conn.requests
    ]
    assert parsed == expected
    assert conn.trailing_data == trailing_data


@pytest.mark.parametrize(("name", "raw", "status"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_refused(name: str, raw: bytes, status: int) -> None:
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError) as caught:
        conn.receive_data(raw)
        conn.receive_data(b"")
    assert caught.value.status == status, caught.value
    # dead: the same error again, whatever comes next
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    # nothing after the bad bytes became a request, and no body is left waiting
    for request in conn.requests:
        assert request.body.complete or request.body.truncated


@pytest.mark.parametrize(("name", "raw", "status"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_refused_byte_by_byte(name: str, raw: bytes, status: int) -> None:
    step = 1 if len(raw) < 4096 else 997
    with pytest.raises(RemoteProtocolError) as caught:
        feed(raw, step)
    assert caught.value.status == status, caught.value


@pytest.mark.parametrize(("name", "raw", "status"), VALID, ids=[c[0] for c in VALID])
def test_valid_accepted(name: str, raw: bytes, status: None) -> None:
    conn = feed(raw)
    assert conn.requests
    for request in conn.requests:
        assert request.body.complete, request
        assert not request.body.truncated
    split = feed(raw, 1)
    assert [summary(r) for r in split.requests] == [summary(r) for r in conn.requests]
    assert split.trailing_data == conn.trailing_data


def test_invalid_first_request_hides_the_next() -> None:
    raw = {n: r for n, r, _ in INVALID}["invalid_then_valid"]
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(raw)
    assert not conn.requests


def test_smuggled_second_request_never_queued() -> None:
    raw = {n: r for n, r, _ in INVALID}["valid_then_smuggled"]
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(raw)
    assert [r.path for r in conn.requests] == [b"/upload"]
    assert conn.requests[0].body.take() == b"hello"
