"""The sans-I/O HTTP/2 server core (RFC 9113): bytes in, requests out; responses to frames.

Like ``protocols/http1`` it imports no socket, selector, thread or event loop. Framing,
HPACK, stream states and flow-control arithmetic are the ``h2`` library's (chosen by
measurement: BENCHMARKS.md, "Choosing the HTTP/2 core"); this package is the seam in front
of it: ``connection`` turns h2's events into :class:`~threadloom.protocols.http1.Request`
objects the interfaces already know, adds the rules h2 leaves to its user (the stream limit
answered with ``REFUSED_STREAM``, every frame a peer makes us reset, header names and
values checked on the way out), and ``response`` builds a response's header list.
"""

from threadloom.protocols.http2.connection import (
    PREFACE,
    Closed,
    DataIn,
    ErrorCodes,
    FrameSeen,
    H2Connection,
    H2Limits,
    Opened,
    Reset,
    WindowOpened,
    looks_like_preface,
)
from threadloom.protocols.http2.response import response_headers

__all__ = [
    "PREFACE",
    "Closed",
    "DataIn",
    "ErrorCodes",
    "FrameSeen",
    "H2Connection",
    "H2Limits",
    "Opened",
    "Reset",
    "WindowOpened",
    "looks_like_preface",
    "response_headers",
]
