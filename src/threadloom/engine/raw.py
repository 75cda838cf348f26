"""Raw connections: the handler owns its socket for the connection's whole life.

There is no protocol to pump, so the session asks to SERVE as soon as it starts and closes
when the handler returns. A handler that raises is logged with its traceback and only its
connection is closed; the server goes on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from threadloom.engine.preface import Preface
from threadloom.engine.session import AsyncRuntime, Want, run_blocking
from threadloom.interfaces.raw import SocketHandler, socket_handler
from threadloom.loading import LoadedApp

log = logging.getLogger("threadloom.app")
STREAM_LIMIT = 64 * 1024


class RawSession:
    """A connection handed whole to a sync handler."""

    __slots__ = ("addr", "call", "name", "preface", "sock")

    def __init__(
        self,
        call: SocketHandler,
        sock: socket.socket,
        addr: Any,
        name: str,
        preface: Preface | None = None,
    ) -> None:
        self.call = call
        self.sock = sock
        self.addr = addr
        self.name = name
        self.preface = preface  # PROXY header and TLS, read on this thread before the handler

    def start(self) -> Want:
        return Want.SERVE

    def feed(self, data: bytes) -> Want:
        return Want.CLOSE

    def serve(self) -> Want:
        self.sock.settimeout(None)  # the tutorial's handlers expect a plain blocking socket
        conn: Any = self.sock
        if self.preface is not None:
            opened = self.preface.open_blocking(self.sock, self.addr)
            if opened is None:
                return Want.CLOSE
            conn, self.addr = opened
        try:
            self.call(conn, self.addr)
        except Exception:
            log.exception(
                "handler %s raised while serving %s; connection closed", self.name, self.addr
            )
        finally:
            if conn is not self.sock:
                conn.close()  # the TLS socket over a duplicate descriptor
        return Want.CLOSE

    def flush(self) -> Want:
        return Want.CLOSE  # a raw handler writes to its socket itself: never WRITE

    def deadline(self) -> float | None:
        return None

    def expire(self) -> Want:
        return Want.CLOSE

    def overloaded(self) -> None:
        """Nothing to say in a raw protocol: the model just closes the connection."""

    @property
    def idle(self) -> bool:
        return False

    def close(self) -> None:
        self.sock.close()


class RawService:
    """Serves raw handlers: sync ones through :class:`RawSession`, async ones with streams."""

    def __init__(self, loaded: LoadedApp, preface: Preface | None = None) -> None:
        self.loaded = loaded
        self.preface = preface if preface is not None and preface.active else None
        self.needs_loop = loaded.kind == "raw.streams"
        self.description = {
            "raw.socket": "raw socket handler",
            "raw.handler_class": "socketserver handler class",
            "raw.streams": "raw asyncio streams handler",
        }[loaded.kind]
        self._call = None if self.needs_loop else socket_handler(loaded)

    def session(self, sock: socket.socket, addr: Any) -> RawSession:
        assert self._call is not None, "async handlers run only on an event loop"
        return RawSession(self._call, sock, addr, self.loaded.name, self.preface)

    async def startup(self) -> None:
        """Raw handlers have no lifespan."""

    async def shutdown(self) -> None:
        """Raw handlers have no lifespan."""

    def lend(self, exchanges: Any) -> None:
        """Raw handlers own their socket: one exchange per connection, nothing to lend."""

    def going_away(self) -> None:
        """A raw handler owns its socket; it learns of shutdown when the socket closes."""

    async def serve_async(self, sock: socket.socket, addr: Any, runtime: AsyncRuntime) -> None:
        if not self.needs_loop:
            await runtime.run_sync(run_blocking, self.session(sock, addr), sock)
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        if self.preface is None:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        else:
            clients: list[Any] = []

            def made(client: Any) -> asyncio.StreamReaderProtocol:
                clients.append(client)
                return protocol

            opened = await self.preface.connect_async(sock, addr, made)
            if opened is None:
                return
            transport = opened[0]
            writer = _PeerWriter(transport, protocol, reader, loop, clients[0])
        try:
            await self.loaded.app(reader, writer)
        except Exception:
            log.exception(
                "handler %s raised while serving %s; connection closed", self.loaded.name, addr
            )
        finally:
            transport.close()


class _PeerWriter(asyncio.StreamWriter):
    """A StreamWriter whose ``peername`` is the client a PROXY header named."""

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
        peer: Any,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)  # type: ignore[arg-type]
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return super().get_extra_info(name, default)
