"""Pick the service for an app: the join between an interface and the engine."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from threadloom.config import Config
from threadloom.engine.http import ASGIApp, HTTPSession, HTTPSettings
from threadloom.engine.http_aio import HTTPProtocol
from threadloom.engine.raw import RawService
from threadloom.engine.session import AsyncRuntime, Service
from threadloom.errors import ConfigError
from threadloom.interfaces.asgi import scope_template
from threadloom.interfaces.lifespan import Lifespan
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.loading import LoadedApp


class HTTPService:
    """What WSGI and ASGI services share: the asyncio side of an HTTP connection."""

    needs_loop = False
    description = "HTTP app"
    settings: HTTPSettings

    async def serve_async(self, sock: socket.socket, addr: Any, runtime: AsyncRuntime) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.connect_accepted_socket(
            lambda: HTTPProtocol(self.settings, runtime, loop, done), sock
        )
        try:
            await done
        finally:
            transport.close()

    async def startup(self) -> None:
        """Nothing to do before serving (ASGI overrides this with lifespan)."""

    async def shutdown(self) -> None:
        """Nothing to do after draining (ASGI overrides this with lifespan)."""


class WSGIService(HTTPService):
    """A WSGI app over HTTP/1.1: blocking sessions, or the asyncio protocol + thread pool."""

    description = "WSGI app"

    def __init__(self, loaded: LoadedApp, config: Config, server_address: Any) -> None:
        name, port = _name_and_port(server_address)
        runner = WSGIRunner(
            loaded.app,
            server_name=name,
            server_port=port,
            url_scheme="http",
            multithread=config.model != "single",
        )
        self.settings = HTTPSettings(config, runner=runner)

    def session(self, sock: socket.socket, addr: Any) -> HTTPSession:
        return HTTPSession(self.settings, sock, addr)


class ASGIService(HTTPService):
    """An ASGI 3 app over HTTP/1.1 on the event loop, with its lifespan."""

    needs_loop = True
    description = "ASGI app"

    def __init__(self, loaded: LoadedApp, config: Config, server_address: Any) -> None:
        self.lifespan = Lifespan(loaded.app)
        template = scope_template(server_address, "http", "", self.lifespan.state)
        self.settings = HTTPSettings(config, asgi=ASGIApp(loaded.app, template))

    def session(self, sock: socket.socket, addr: Any) -> HTTPSession:
        raise ConfigError("ASGI apps run only under --model asyncio")

    async def startup(self) -> None:
        await self.lifespan.startup()

    async def shutdown(self) -> None:
        await self.lifespan.shutdown()


def _name_and_port(server_address: Any) -> tuple[str, str]:
    if isinstance(server_address, tuple):
        return str(server_address[0]), str(server_address[1])
    return "localhost", "0"


def build_service(loaded: LoadedApp, config: Config, server_address: Any = None) -> Service:
    """The service that serves ``loaded`` under ``config``, or ConfigError if none can."""
    if loaded.interface == "raw":
        return RawService(loaded)
    if loaded.interface == "wsgi":
        return WSGIService(loaded, config, server_address)
    if loaded.interface == "asgi":
        return ASGIService(loaded, config, server_address)
    raise ConfigError(f"the {loaded.interface} interface is not available in this version")
