"""What the HTTP core hands the engine: a :class:`Request` head and its streaming body.

Theory of operation
-------------------
A :class:`Request` is created by :class:`~threadloom.protocols.http1.ServerConnection` when
llhttp sees the first byte of a message, filled in while its header fields arrive, and queued
on ``ServerConnection.requests`` once the head is complete. From then on only two parties
touch it: the connection appends body bytes to ``request.body`` (and sets ``complete`` or
``truncated``), and the engine/app takes them with :meth:`RequestBody.take`. Both happen on
the thread that owns the connection at that moment, so nothing here locks.

Both classes use ``__slots__``: one of each is the only allocation the parser makes per
request besides the header list, and attribute access on the hot path stays cheap.
"""

from __future__ import annotations

import collections


class RequestBody:
    """The streaming body of one request: the connection appends, the app takes.

    ``buffered`` counts bytes in ``chunks`` (what :attr:`ServerConnection.paused` weighs
    against the high-water mark); ``received`` counts every body byte so far (what
    ``max_body_size`` is enforced on). ``complete`` means the message ended properly;
    ``truncated`` means it never will (EOF, or the connection failed, before the end).
    A chunk is bytes, or a memoryview of the read its head came in (the C parser's first
    part of a body still arriving: it is copied once, when taken); :meth:`take` always
    returns bytes, as ``wsgi.input`` and ASGI's ``body`` must be.
    """

    __slots__ = ("buffered", "chunks", "complete", "received", "truncated")

    def __init__(self) -> None:
        self.chunks: collections.deque[bytes | memoryview] = collections.deque()
        self.buffered = 0
        self.received = 0
        self.complete = False
        self.truncated = False

    def take(self, n: int = -1) -> bytes:
        """Pop up to ``n`` buffered bytes (all of them if ``n`` is negative); never blocks."""
        chunks = self.chunks
        if not chunks or n == 0:
            return b""
        if n < 0 or n >= self.buffered:
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self.buffered = 0
            return data if type(data) is bytes else bytes(data)
        parts = []
        need = n
        while need:
            chunk = chunks.popleft()
            if len(chunk) > need:
                chunks.appendleft(chunk[need:])
                chunk = chunk[:need]
            parts.append(chunk)
            need -= len(chunk)
        self.buffered -= n
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return data if type(data) is bytes else bytes(data)


class Request:
    """One parsed request head, and its body as it arrives.

    ``target`` is the request-target exactly as received; ``path`` and ``query`` are its
    raw (still percent-encoded) parts, the path of an absolute-form target included.
    ``headers`` keeps the peer's order with names lower-cased and values OWS-stripped.
    """

    __slots__ = (
        "body",
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "target",
        "upgrade",
    )

    def __init__(self) -> None:
        # Created empty when a message begins; ServerConnection fills it as the head arrives.
        self.method = ""
        self.target = b""
        self.path = b""
        self.query = b""
        self.http_version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.expect_continue = False
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade: bytes | None = None
        self.body = RequestBody()

    def set_target(self, target: bytes) -> None:
        """Split the target into path and query: one ``partition`` for the common origin-form."""
        self.target = target
        if not target.startswith(b"/") or b"#" in target:
            target = _origin_form(target)
        self.path, _, self.query = target.partition(b"?")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.http_version}>"


def _origin_form(target: bytes) -> bytes:
    """The path-and-query of an absolute-form target (RFC 9112 3.2.2), without a fragment.

    Authority-form (CONNECT) and asterisk-form (``*``) targets come back unchanged.
    """
    if b"#" in target:  # llhttp accepts a fragment; it is never part of path or query
        target = target[: target.index(b"#")]
    scheme_end = target.find(b"://", 0, 16)
    if target.startswith(b"/") or scheme_end < 0:
        return target
    start = scheme_end + 3
    end = len(target)
    for sep in (b"/", b"?"):
        found = target.find(sep, start, end)
        if found >= 0:
            end = found
    target = target[end:]
    return target if target.startswith(b"/") else b"/" + target
