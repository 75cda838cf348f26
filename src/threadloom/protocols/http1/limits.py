"""Limits the HTTP core enforces, and the status each breach is answered with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Per-server limits; the defaults are DESIGN.md's "Defaults that protect the server"."""

    #: request line + headers, in bytes: 431 (414 when the request-target alone is over it)
    max_header_size: int = 64 * 1024
    #: header fields per request: 431
    max_headers: int = 100
    #: request body, in bytes: 413
    max_body_size: int = 1024**3
    #: unconsumed body bytes above which the connection asks its driver to stop reading
    body_high_water: int = 256 * 1024
    #: complete requests queued but not taken, above which the connection asks the same
    max_pipelined: int = 16
