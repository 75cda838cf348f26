"""The sans-I/O HTTP/1.1 server core: bytes in, requests out; responses framed to bytes.

It imports no socket, selector, thread or event loop: the engine drives it from blocking
threads and from asyncio alike. ``connection`` parses (on httptools/llhttp), ``request``
holds what it produces, ``response`` frames what the app answers, ``dates`` caches ``Date``.
"""

from threadloom.protocols.http1.connection import DEFAULT_LIMITS, ServerConnection
from threadloom.protocols.http1.dates import DEFAULT_DATES, DateCache
from threadloom.protocols.http1.limits import HTTPLimits
from threadloom.protocols.http1.request import Request, RequestBody
from threadloom.protocols.http1.response import (
    CONTINUE,
    JOIN_MAX,
    ResponseFramer,
    error_response,
    full_response,
    full_response_parts,
    response_head,
    status_line,
    whole_head,
)

__all__ = [
    "CONTINUE",
    "DEFAULT_DATES",
    "DEFAULT_LIMITS",
    "JOIN_MAX",
    "DateCache",
    "HTTPLimits",
    "Request",
    "RequestBody",
    "ResponseFramer",
    "ServerConnection",
    "error_response",
    "full_response",
    "full_response_parts",
    "response_head",
    "status_line",
    "whole_head",
]
