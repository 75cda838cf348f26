"""Replay tests/corpus/http1 against ServerConnection: whole, and one byte at a time."""

from __future__ import annotations

import pytest

from tests.corpus.http1.loader import load_cases
from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1 import Request, ServerConnection

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
