"""The sans-I/O HTTP/1.1 server core: bytes in, requests out; responses framed to bytes.

It imports no socket, selector, thread or event loop: the engine drives it from blocking
threads and from asyncio alike.
"""

from threadloom.protocols.http1.connection import Request, RequestBody, ServerConnection
from threadloom.protocols.http1.dates import DEFAULT_DATES, DateCache
from threadloom.protocols.http1.limits import HTTPLimits
from threadloom.protocols.http1.response import (
    CONTINUE,
    ResponseFramer,
    error_response,
    response_head,
)

__all__ = [
    "CONTINUE",
    "DEFAULT_DATES",
    "DateCache",
    "HTTPLimits",
    "Request",
    "RequestBody",
    "ResponseFramer",
    "ServerConnection",
    "error_response",
    "response_head",
]
