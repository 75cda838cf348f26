"""Pick the service for an app: the join between an interface and the engine.

The engine sits below the models in the import layers, so it never asks which model runs it:
the server asks the model class and passes in what a service needs (``multithread``), and a
service says what it needs of the model (``needs_loop``), which the server checks.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
from typing import Any

from threadloom.config import Config
from threadloom.engine.http import HTTPSession
from threadloom.engine.http1_core import ASGIApp, HTTPSettings
from threadloom.engine.http_aio import HTTPProtocol
from threadloom.engine.preface import Preface
from threadloom.engine.raw import RawService
from threadloom.engine.session import AsyncRuntime, ExchangeRunner, Service, Session
from threadloom.engine.ws import WSSettings
from threadloom.errors import ConfigError
from threadloom.interfaces.asgi import scope_template
from threadloom.interfaces.lifespan import Lifespan
from threadloom.interfaces.websocket import WSGIWithWebSocket
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.loading import LoadedApp


class HTTPService:
    """What WSGI and ASGI services share: the asyncio side of an HTTP connection."""

    needs_loop = False
    description = "HTTP app"
    settings: HTTPSettings
    preface: Preface  # PROXY header and TLS handshake, before HTTP

    def session(self, sock: socket.socket, addr: Any) -> Session:
        """A thread model's session: HTTP, behind PROXY and TLS when configured."""
        if self.preface.active:
            return self.preface.session(sock, addr, self._http_session)
        return HTTPSession(self.settings, sock, addr)

    def _http_session(self, sock: Any, addr: Any) -> HTTPSession:
        return HTTPSession(self.settings, sock, addr)

    async def serve_async(self, sock: socket.socket, addr: Any, runtime: AsyncRuntime) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def protocol(client: Any) -> HTTPProtocol:
            made = HTTPProtocol(self.settings, runtime, loop, done)
            made.addr = client if client is not addr else None  # None: the transport's peer
            return made

        opened = await self.preface.connect_async(sock, addr, protocol)
        if opened is None:
            return
        transport = opened[0]
        try:
            await done
        finally:
            transport.close()

    async def startup(self) -> None:
        """Nothing to do before serving (ASGI overrides this with lifespan)."""

    async def shutdown(self) -> None:
        """Nothing to do after draining (ASGI overrides this with lifespan)."""

    def lend(self, exchanges: ExchangeRunner | None) -> None:
        self.settings.exchanges = exchanges

    def going_away(self) -> None:
        if self.settings.ws is not None:
            self.settings.ws.going_away()
        for connection in list(self.settings.h2_connections):
            connection.going_away()


class WSGIService(HTTPService):
    """A WSGI app over HTTP/1.1: blocking sessions, or the asyncio protocol + thread pool."""

    description = "WSGI app"

    def __init__(
        self,
        loaded: LoadedApp,
        config: Config,
        server_address: Any,
        preface: Preface,
        multithread: bool,
    ) -> None:
        self.preface = preface
        name, port = _name_and_port(server_address)
        runner = WSGIRunner(
            loaded.app,
            server_name=name,
            server_port=port,
            url_scheme=preface.scheme,
            multithread=multithread,
            proxies=preface.proxies,
            request_ids=config.request_id,
        )
        handler = getattr(loaded.app, "websocket_handler", None)
        ws = None
        if isinstance(loaded.app, WSGIWithWebSocket):
            self.needs_loop = inspect.iscoroutinefunction(handler)
            if self.needs_loop:
                self.description = "WSGI app with an async websocket_handler"
            ws = WSSettings(config, handler, is_async=self.needs_loop)
        self.settings = HTTPSettings(config, runner=runner, ws=ws)


class ASGIService(HTTPService):
    """An ASGI 3 app over HTTP/1.1 on the event loop, with its lifespan."""

    needs_loop = True
    description = "ASGI app"

    def __init__(
        self, loaded: LoadedApp, config: Config, server_address: Any, preface: Preface
    ) -> None:
        self.preface = preface
        self.lifespan = Lifespan(loaded.app)
        template = scope_template(server_address, preface.scheme, "", self.lifespan.state)
        asgi = ASGIApp(loaded.app, template, preface.proxies, config.request_id)
        self.settings = HTTPSettings(config, asgi=asgi, ws=WSSettings(config))

    def session(self, sock: socket.socket, addr: Any) -> Session:
        raise ConfigError("ASGI apps run only under a model that runs coroutines")

    async def startup(self) -> None:
        await self.lifespan.startup()

    async def shutdown(self) -> None:
        await self.lifespan.shutdown()


class WebSocketService(HTTPService):
    """A bare WebSocket handler: sync under any model, async under asyncio."""

    description = "WebSocket handler"

    def __init__(self, loaded: LoadedApp, config: Config, preface: Preface) -> None:
        self.preface = preface
        self.needs_loop = loaded.kind == "websocket.async"
        ws = WSSettings(config, loaded.app, is_async=self.needs_loop)
        self.settings = HTTPSettings(config, ws=ws)


def _name_and_port(server_address: Any) -> tuple[str, str]:
    if isinstance(server_address, tuple):
        return str(server_address[0]), str(server_address[1])
    return "localhost", "0"


def build_service(
    loaded: LoadedApp,
    config: Config,
    server_address: Any = None,
    tls: ssl.SSLContext | None = None,
    *,
    multithread: bool,
) -> Service:
    """The service that serves ``loaded`` under ``config``, or ConfigError if none can.

    ``tls`` (built by :mod:`threadloom.net.tls`) makes every connection a TLS one.
    ``multithread``: the model may call a sync app from several threads at once (the server
    asks the model class). A service whose ``needs_loop`` is true runs only under a model
    that runs coroutines; the caller checks that.
    """
    preface = Preface(config, tls)
    if loaded.interface == "raw":
        return RawService(loaded, preface)
    if loaded.interface == "wsgi":
        return WSGIService(loaded, config, server_address, preface, multithread)
    if loaded.interface == "asgi":
        return ASGIService(loaded, config, server_address, preface)
    if loaded.interface == "websocket":
        return WebSocketService(loaded, config, preface)
    raise ConfigError(f"the {loaded.interface} interface is not available in this version")
