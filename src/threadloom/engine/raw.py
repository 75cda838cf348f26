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

from threadloom.engine.session import AsyncRuntime, Want, run_blocking
from threadloom.interfaces.raw import SocketHandler, socket_handler
from threadloom.loading import LoadedApp

log = logging.getLogger("threadloom.app")
STREAM_LIMIT = 64 * 1024


class RawSession:
    """A connection handed whole to a sync handler."""

    __slots__ = ("addr", "call", "name", "sock")

    def __init__(self, call: SocketHandler, sock: socket.socket, addr: Any, name: str) -> None:
        self.call = call
        self.sock = sock
        self.addr = addr
        self.name = name

    def start(self) -> Want:
        return Want.SERVE

    def feed(self, data: bytes) -> Want:
        return Want.CLOSE

    def serve(self) -> Want:
        self.sock.settimeout(None)  # the tutorial's handlers expect a plain blocking socket
        try:
            self.call(self.sock, self.addr)
        except Exception:
            log.exception(
                "handler %s raised while serving %s; connection closed", self.name, self.addr
            )
        return Want.CLOSE

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

    def __init__(self, loaded: LoadedApp) -> None:
        self.loaded = loaded
        self.needs_loop = loaded.kind == "raw.streams"
        self.description = {
            "raw.socket": "raw socket handler",
            "raw.handler_class": "socketserver handler class",
            "raw.streams": "raw asyncio streams handler",
        }[loaded.kind]
        self._call = None if self.needs_loop else socket_handler(loaded)

    def session(self, sock: socket.socket, addr: Any) -> RawSession:
        assert self._call is not None, "async handlers run only under the asyncio model"
        return RawSession(self._call, sock, addr, self.loaded.name)

    async def startup(self) -> None:
        """Raw handlers have no lifespan."""

    async def shutdown(self) -> None:
        """Raw handlers have no lifespan."""

    async def serve_async(self, sock: socket.socket, addr: Any, runtime: AsyncRuntime) -> None:
        if not self.needs_loop:
            await runtime.run_sync(run_blocking, self.session(sock, addr), sock)
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            await self.loaded.app(reader, writer)
        except Exception:
            log.exception(
                "handler %s raised while serving %s; connection closed", self.loaded.name, addr
            )
        finally:
            transport.close()
