"""Fuzz target for the sans-I/O HTTP/1.1 core: any bytes in, no crash, no hang, one answer.

``one_input(data)`` is what atheris calls and what the seed replay calls. The first byte of
``data`` chooses how the rest is cut into reads and which limits apply; the rest is what a
peer sends. The invariants it checks, whatever the bytes:

* the core raises nothing but :class:`RemoteProtocolError`, with a status a server may
  answer (400, 413, 414, 431, 501, 505), and stays dead after it;
* cutting the bytes differently never changes the outcome (the requests parsed, their
  bodies, whether it was refused; :func:`agree` says what may differ): a desync between
  two reads is what smuggling exploits;
* every request parsed has a well-formed head (names lower-case tokens, values without
  CR, LF or NUL), and a response framed for it parses back as exactly one response.

Run it with ``python tests/fuzz/runner.py http1`` (replays the seeds; ``--atheris`` fuzzes:
see that module and RELIABILITY.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httptools

from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1 import HTTPLimits, Request, ServerConnection, full_response

STATUSES = frozenset({400, 413, 414, 431, 501, 505})
SIZE_LIMITS = frozenset({413, 414, 431})
SMALL = HTTPLimits(max_header_size=1024, max_headers=8, max_body_size=64, max_pipelined=4)
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
Outcome = tuple[list[tuple[object, ...]], int | None]


def pieces(data: bytes, step: int) -> Iterator[bytes]:
    """``data`` in reads of ``step`` bytes (0: all at once); never an empty one (EOF)."""
    if not step:
        if data:
            yield data
        return
    for start in range(0, len(data), step):
        yield data[start : start + step]


def _check_head(request: Request) -> None:
    assert request.method and request.target, request
    for name, value in request.headers:
        assert name and set(name) <= _TOKEN, name
        assert b"\r" not in value and b"\n" not in value and b"\0" not in value, value


def _respond(request: Request) -> None:
    """Frame a response for ``request``; it must parse back as one complete response."""
    data, _ = full_response(request, 200, [(b"Content-Type", b"text/plain")], b"fuzz")
    done: list[bool] = []

    class Sink:
        def on_message_complete(self) -> None:
            done.append(True)

    parser = httptools.HttpResponseParser(Sink())
    parser.feed_data(data)
    assert done == [True] or request.method == "HEAD", data


def run(data: bytes, step: int, limits: HTTPLimits) -> Outcome:
    """Feed ``data`` in reads of ``step`` bytes, then EOF (see :func:`run_reads`)."""
    return run_reads(list(pieces(data, step)), limits)


def run_reads(reads: list[bytes], limits: HTTPLimits) -> Outcome:
    """Feed ``reads`` then EOF; what was parsed (method, target, headers, body) and the
    status of the error, if any."""
    conn = ServerConnection(limits)
    parsed: list[tuple[object, ...]] = []
    bodies: dict[int, bytearray] = {}

    def collect() -> None:
        for request in conn.requests:
            bodies.setdefault(id(request), bytearray()).extend(request.body.take())
        while conn.requests and conn.requests[0].body.complete:
            request = conn.requests.popleft()
            _check_head(request)
            _respond(request)
            body = bytes(bodies.pop(id(request), b""))
            parsed.append((request.method, request.target, request.headers, body))

    try:
        for piece in reads:
            conn.receive_data(piece)
            collect()
        conn.receive_data(b"")
        collect()
    except RemoteProtocolError as exc:
        assert exc.status in STATUSES, exc
        collect()  # requests complete before the bad bytes are still to be served
        try:
            conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        except RemoteProtocolError:
            pass
        else:
            raise AssertionError("a failed connection parsed again") from exc
        return parsed, exc.status
    return parsed, None


def one_input(data: bytes) -> None:
    """The fuzz target (module docstring)."""
    if not data:
        return
    control, payload = data[0], data[1:]
    limits = SMALL if control & 0x80 else HTTPLimits()
    whole = run(payload, 0, limits)
    assert agree(run(payload, 1 + control % 7, limits), whole)
    if len(payload) <= 2048:
        assert agree(run(payload, 1, limits), whole)


def agree(a: Outcome, b: Outcome) -> bool:
    """Whether two runs of the same bytes, cut differently, tell the same story.

    The same requests, and refused or not. The status of a refusal may differ (bytes with
    two faults are refused for whichever a read revealed first), and a size limit on chunk
    metadata and trailers is measured per read, so it may stop parsing up to one read
    earlier than in the other run (never later than twice the limit): then the requests
    parsed before it must be the first ones the other run parsed too.
    """
    if same(a) == same(b):
        return True
    for (short, status), (long, _) in ((a, b), (b, a)):
        if status in SIZE_LIMITS and long[: len(short)] == short:
            return True
    return False


def same(outcome: Outcome) -> tuple[list[tuple[object, ...]], bool]:
    """The requests parsed, and whether the connection was refused."""
    parsed, status = outcome
    return parsed, status is not None


def seeds() -> list[bytes]:
    """The request corpus (valid and invalid), each under a few controls, plus our seeds."""
    root = Path(__file__).resolve().parents[1] / "corpus" / "http1"
    raw = [p.read_bytes() for p in sorted(root.glob("*/*.http"))]
    raw += [p.read_bytes() for p in sorted((Path(__file__).parent / "seeds" / "http1").glob("*"))]
    return [bytes([control]) + case for case in raw for control in (0, 3, 0x85)]
