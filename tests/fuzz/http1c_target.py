"""Fuzz target for the C request parser (``_speedups.c``'s ``parse_request``) against llhttp.

``one_input(data)``: the first byte of ``data`` chooses the limits and how many bytes of junk
come before the request (``parse_request`` starts at an offset); the rest is what a peer
sends. Whatever the bytes:

* ``parse_request`` returns None or ``(request, end)`` with the request's bytes inside the
  buffer, and raises nothing;
* what it accepts, the Python path (llhttp and ``ServerConnection``'s checks, the C path
  off) parses from the same bytes into the same request, complete (or, when C says its
  Content-Length body is not all here, with the same part of it) and without an error:
  the C code never decides what Python would refuse, and never reads what is not there.

``make asan`` runs it under AddressSanitizer for a minute (the C reads raw bytes at computed
offsets); ``python tests/fuzz/runner.py http1c`` replays the seeds. Without the extension
(not built, or ``THREADLOOM_PURE_PYTHON=1``) there is nothing to compare and it does nothing.
"""

from __future__ import annotations

from tests.fuzz import http1_target
from threadloom.errors import RemoteProtocolError
from threadloom.protocols.http1 import HTTPLimits, Request, ServerConnection, connection
from threadloom.protocols.http1.speedups import parse_request

SMALL = HTTPLimits(max_header_size=256, max_headers=4, max_body_size=16)
LIMITS = HTTPLimits()


def describe(request: Request) -> tuple[object, ...]:
    """Everything a request holds once parsed, its whole body included."""
    body = request.body
    return (
        request.method,
        request.target,
        request.path,
        request.query,
        request.http_version,
        request.headers,
        request.keep_alive,
        request.content_length,
        request.chunked,
        request.expect_continue,
        request.upgrade,
        b"".join(body.chunks),
        body.buffered,
        body.received,
        body.complete,
        body.truncated,
    )


def python_parse(data: bytes, limits: HTTPLimits, eof: bool = True) -> list[tuple[object, ...]]:
    """The requests the Python path parses from ``data`` (and EOF if ``eof``), the C path off."""
    saved = connection.parse_request
    connection.parse_request = None
    try:
        conn = ServerConnection(limits)
        conn.receive_data(data)
        if eof:
            conn.receive_data(b"")
    finally:
        connection.parse_request = saved
    return [describe(request) for request in conn.requests]


def one_input(data: bytes) -> None:
    """The fuzz target (module docstring)."""
    if not data or parse_request is None:
        return
    control, payload = data[0], data[1:]
    limits = SMALL if control & 0x80 else LIMITS
    pos = min(control & 0x07, len(payload))
    parsed = parse_request(
        payload, pos, limits.max_header_size, limits.max_headers, limits.max_body_size
    )
    if parsed is None:
        return
    request, end = parsed
    assert pos < end <= len(payload), (pos, end, len(payload))
    try:
        # a body not all here (C then says so) is compared as far as it goes, before EOF
        python = python_parse(payload[pos:end], limits, eof=request.body.complete)
    except RemoteProtocolError as exc:  # C accepted what Python refuses
        raise AssertionError(f"C accepted, Python refused ({exc.status}: {exc})") from exc
    assert python == [describe(request)], (python, describe(request))


def seeds() -> list[bytes]:
    """The request corpus and the HTTP/1.1 target's seeds, each from offset 0 under both
    limits, and after three bytes of junk."""
    cases = {data[1:] for data in http1_target.seeds()}
    return [bytes([control]) + case for case in sorted(cases) for control in (0, 0x80, 3)]
