"""The sans-I/O HTTP/2 server core (RFC 9113): bytes in, requests out; responses to frames.

Like ``protocols/http1`` it imports no socket, selector, thread or event loop. Framing,
HPACK, stream states and flow-control arithmetic are a library's, behind a seam of our own
(BENCHMARKS.md, "Choosing the HTTP/2 core"): ``connection`` on ``h2`` (pure Python, always
installed) and ``ngh2_connection`` on ``ngh2`` (libnghttp2; the ``http2-fast`` extra).
Both turn their library's events into :class:`~threadloom.protocols.http1.Request` objects
the interfaces already know and add the rules the library leaves to its user (every frame
a peer makes us reset counted, a GOAWAY where the library would send none, ...); the rules
both need, such as the stream limit answered with ``REFUSED_STREAM``, are the engine's;
:func:`new_connection` picks one: ``THREADLOOM_H2_CORE=h2|ngh2``, by default ngh2 where it
is installed, else h2. ``response`` builds a response's header list.
"""

import functools
import os
from typing import Protocol

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
from threadloom.protocols.http2.connection import Event as Event
from threadloom.protocols.http2.response import response_headers

#: the one place the core is chosen: ``h2``, ``ngh2``, or unset for the default
CORE_ENV = "THREADLOOM_H2_CORE"
CORES = ("h2", "ngh2")


class H2Seam(Protocol):
    """What the engine (``engine/h2_core.py``) uses of a connection, either core's."""

    limits: H2Limits
    control_frames: int
    provoked_resets: int
    closed: bool

    def receive(self, data: bytes) -> list[Event]: ...
    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool
    ) -> None: ...
    def window(self, stream_id: int) -> int: ...
    def peer_window(self, stream_id: int) -> int: ...
    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None: ...
    def end(self, stream_id: int) -> None: ...
    def reset(self, stream_id: int, code: int) -> None: ...
    def consumed(self, stream_id: int, flow: int) -> None: ...
    def going_away(self, code: int = ...) -> None: ...
    def stream_open(self, stream_id: int) -> bool: ...
    def data_to_send(self) -> bytes: ...


@functools.cache
def ngh2_installed() -> bool:
    try:
        import ngh2  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def core_name() -> str:
    """The core new connections get: ``THREADLOOM_H2_CORE`` (``h2`` or ``ngh2``) if set,
    else ``ngh2`` where it is installed (the ``http2-fast`` extra), else ``h2``.

    ngh2 is 2.5-3.4x faster end to end (BENCHMARKS.md); both pass the same tests, the
    frame-level conformance and attack suites included, which judge each core by RFC 9113
    (RELIABILITY.md): where the RFC allows either, ngh2 answers a malformed request with a
    stream error and h2 with a connection error. ``THREADLOOM_H2_CORE=h2`` keeps the pure
    Python core where ngh2 is installed."""
    name = os.environ.get(CORE_ENV, "").strip().lower()
    if not name:
        return "ngh2" if ngh2_installed() else "h2"
    if name not in CORES:
        raise ValueError(f"{CORE_ENV}={name!r}: the HTTP/2 core is one of {', '.join(CORES)}")
    return name


def new_connection(limits: H2Limits) -> H2Seam:
    """A server connection on the chosen core (:func:`core_name`)."""
    if core_name() == "ngh2":
        try:
            from threadloom.protocols.http2.ngh2_connection import (  # noqa: PLC0415
                Ngh2Connection,
            )
        except ImportError as exc:
            raise ImportError(
                f"{CORE_ENV}=ngh2 needs the ngh2 package: pip install 'threadloom[http2-fast]'"
            ) from exc
        return Ngh2Connection(limits)
    return H2Connection(limits)


__all__ = [
    "CORES",
    "CORE_ENV",
    "PREFACE",
    "Closed",
    "DataIn",
    "ErrorCodes",
    "FrameSeen",
    "H2Connection",
    "H2Limits",
    "H2Seam",
    "Opened",
    "Reset",
    "WindowOpened",
    "core_name",
    "looks_like_preface",
    "new_connection",
    "ngh2_installed",
    "response_headers",
]
