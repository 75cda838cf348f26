"""An ASGI app's HTTP request on the event loop: its ``receive`` and ``send``.

The connection is :mod:`threadloom.engine.http_aio`'s; this module sees it only as an
:class:`ASGIHost` (so the two do not import each other), and turns the app's messages into
what the connection does: body bytes taken as they arrive (``http.request``), the
response framed by :class:`~threadloom.interfaces.asgi.ResponseState` and written by the
connection's one writer, backpressure while the transport is paused, ``http.disconnect``
once the client is gone or the response is complete. An ``http.response.pathsend``'s file
goes to the same writer (``queue_file``), which has the kernel copy it (``sendfile``;
a slice read at a time under TLS) as the transport drains, as it does a ``--static`` file.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from threadloom.engine.asgi_run import start_eagerly
from threadloom.engine.http1_core import HTTPSettings
from threadloom.engine.outbox import FileSegment
from threadloom.engine.wsgi_bridge import ClientDisconnected
from threadloom.errors import LocalProtocolError
from threadloom.interfaces.asgi import (
    PATHSEND,
    Message,
    ResponseState,
    forward_and_identify,
    http_scope,
    log_app_end,
)
from threadloom.protocols.http1 import CONTINUE, Request, RequestBody, error_response


class ASGIHost(Protocol):
    """What an ASGI request needs of its connection (``http_aio.HTTPProtocol``)."""

    settings: HTTPSettings
    addr: Any
    remote: Any
    request_id: str | None
    lost: bool
    write_paused: bool
    transport: asyncio.Transport | None

    def write(self, data: bytes | memoryview) -> None: ...
    def queue_file(self, segment: FileSegment) -> None: ...
    def take(self, body: RequestBody, size: int) -> bytes: ...
    async def wait(self) -> None: ...
    async def wait_for_body(self, body: RequestBody) -> bool: ...
    async def drain(self) -> bool: ...
    def close(self) -> None: ...
    def finished(self, request: Request, status: int, sent: int, keep_alive: bool) -> None: ...


class ASGICycle:
    """One request's ``receive`` and ``send`` for an ASGI app, on the loop thread: made,
    it runs the app (one call on the hot path, not two)."""

    __slots__ = ("body_done", "proto", "request", "response", "sent")

    def __init__(self, proto: ASGIHost, request: Request) -> None:
        self.proto = proto
        self.request = request
        self.response = ResponseState(request)
        self.sent = 0
        self.body_done = False
        asgi = proto.settings.asgi
        assert asgi is not None
        scope = http_scope(asgi.template, request, proto.addr)
        if asgi.proxies is not None or asgi.request_ids:
            request_id = forward_and_identify(scope, asgi.proxies, asgi.request_ids)
            self.response.request_id = proto.request_id = request_id
            proto.remote = scope["client"][0] if scope["client"] else None
        start_eagerly(asgi.app(scope, self.receive, self.send), self.app_done)

    async def receive(self) -> Message:
        proto, body = self.proto, self.request.body
        if self.body_done:  # the whole body was delivered: what is left to say is goodbye
            while not (self.response.complete or proto.lost):
                await proto.wait()
            return {"type": "http.disconnect"}
        while True:
            if proto.lost or body.truncated:
                self.body_done = True
                return {"type": "http.disconnect"}
            if body.buffered or body.complete:
                data = proto.take(body, -1)
                more = not body.complete
                self.body_done = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.request.expect_continue and not self.response.started and not self.sent:
                proto.write(CONTINUE)
                self.request.expect_continue = False
            if not await proto.wait_for_body(body):
                proto.close()
                self.body_done = True
                return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        proto = self.proto
        if proto.lost:
            raise ClientDisconnected("the client went away")
        kind = message["type"]
        if kind == "http.response.start":
            self.response.start(message)
        elif kind == "http.response.body":
            data = self.response.body(message)
            transport = proto.transport
            if transport is None or transport.is_closing():
                await proto.drain()  # lets connection_lost run; says False
                raise ClientDisconnected("the client went away")
            if data:
                proto.write(data)
                self.sent += len(data)
                if self.response.tail:
                    proto.write(self.response.tail)
                    self.sent += len(self.response.tail)
            if proto.write_paused and not await proto.drain():
                raise ClientDisconnected("the client went away or stopped reading")
        elif kind == PATHSEND:
            await self._pathsend(message)
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} for an http scope")

    async def _pathsend(self, message: Message) -> None:
        """The head, then the file behind it in the connection's one writer. The app does
        not wait for the file to go out: the response is complete, the next request waits
        until the writer is done, and the slow-read rule bounds how long that takes."""
        proto = self.proto
        if proto.transport is None or proto.transport.is_closing():  # (as for a body)
            await proto.drain()
            raise ClientDisconnected("the client went away")
        head, fd, size = self.response.pathsend(message)
        proto.write(head)
        self.sent += len(head)
        if fd is not None:
            proto.queue_file(FileSegment(fd, 0, size))  # (it closes the descriptor)
            self.sent += size

    def app_done(self, error: BaseException | None) -> None:
        proto, request, response = self.proto, self.request, self.response
        if error is not None or not response.complete:  # (else there is nothing to say)
            log_app_end(request, error, ClientDisconnected, response.complete, proto.lost)
        if response.complete:
            proto.finished(request, response.status, self.sent, response.keep_alive)
            return
        if not response.started and not proto.lost:
            proto.write(error_response(500))
            proto.finished(request, 500, 0, False)
        else:
            proto.finished(request, response.status, self.sent, False)
