"""Import ``module:attribute`` and decide how to call it (``--interface auto``).

Detection is by shape, as DESIGN.md "Interface detection" lays out: a
``socketserver.BaseRequestHandler`` subclass, then coroutine functions by their parameter
names, then plain callables (including app objects such as Flask's, whose ``__call__`` is
inspected). Anything that fits no rule, or more than one, is a ConfigError that names
``--interface``, so a user never gets a server that calls their code the wrong way.
"""

from __future__ import annotations

import importlib
import inspect
import os
import socketserver
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from threadloom.errors import ConfigError

#: kind -> interface name; a kind says exactly how the engine calls the app.
KINDS = {
    "raw.socket": "raw",  # handle(client_socket, addr)
    "raw.handler_class": "raw",  # socketserver.BaseRequestHandler subclass
    "raw.streams": "raw",  # async handle(reader, writer)
    "wsgi": "wsgi",  # app(environ, start_response)
    "asgi": "asgi",  # async app(scope, receive, send)
    "websocket.sync": "websocket",  # handler(ws)
    "websocket.async": "websocket",  # async handler(websocket[, path])
}

SOCKET_NAMES = {"sock", "socket", "client_socket", "client_sock", "conn", "connection", "client"}
ADDR_NAMES = {"addr", "address", "client_address", "client_addr", "peer", "remote"}
WS_NAMES = {"ws", "websocket"}


@dataclass(frozen=True, slots=True)
class LoadedApp:
    """The user's app and how it must be called."""

    app: Any
    kind: str
    name: str = "app"

    @property
    def interface(self) -> str:
        """``raw``, ``wsgi``, ``asgi`` or ``websocket``."""
        return KINDS[self.kind]

    @property
    def is_async(self) -> bool:
        """True when the app is a coroutine function that must run on an event loop."""
        return self.kind in ("raw.streams", "asgi", "websocket.async")


def import_app(target: str) -> Any:
    """Import ``module:attribute`` (dotted attributes allowed) from the current directory."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"APP must look like module:attribute, got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise ConfigError(f"cannot import {module_name!r}: {_describe(exc)}") from None
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {_describe(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _describe(exc: BaseException) -> str:
    """One line: the exception and where the user's code raised it."""
    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return f"{type(exc).__name__}: {exc}"
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ")  # importlib's own, never the user's
    ]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def detect(app: Any, interface: str = "auto", name: str = "app") -> LoadedApp:
    """Decide how to call ``app``; ``interface`` other than ``auto`` narrows or forces it."""
    kind = _detect_kind(app, name)
    if interface == "auto":
        if kind is None:
            raise ConfigError(
                f"cannot tell how to call {name}: pass --interface raw, wsgi, asgi or websocket"
            )
        return LoadedApp(app, kind, name)
    forced = _force(app, interface, kind)
    return LoadedApp(app, forced, name)


def _force(app: Any, interface: str, detected: str | None) -> str:
    if detected is not None and KINDS[detected] == interface:
        return detected
    is_async = _is_coroutine(app)
    if interface == "raw":
        if inspect.isclass(app) and issubclass(app, socketserver.BaseRequestHandler):
            return "raw.handler_class"
        return "raw.streams" if is_async else "raw.socket"
    if interface == "websocket":
        return "websocket.async" if is_async else "websocket.sync"
    if interface == "asgi" and is_async:
        return "asgi"
    if interface == "wsgi" and not is_async and callable(app):
        return "wsgi"
    raise ConfigError(f"--interface {interface} does not fit this app")


def _is_coroutine(app: Any) -> bool:
    call = getattr(app, "__call__", None)  # noqa: B004 - app objects define __call__
    return inspect.iscoroutinefunction(app) or (
        not inspect.isfunction(app) and inspect.iscoroutinefunction(call)
    )


def _detect_kind(app: Any, name: str) -> str | None:
    if inspect.isclass(app):
        if issubclass(app, socketserver.BaseRequestHandler):
            return "raw.handler_class"
        return None
    if not callable(app):
        raise ConfigError(f"{name} is not callable (it is a {type(app).__name__})")
    try:
        params = [
            p.name
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return None
    return _kind_from_params(params, _is_coroutine(app))


def _kind_from_params(params: list[str], is_async: bool) -> str | None:
    if is_async:
        if len(params) == 3:
            return "asgi"
        if params[:2] == ["reader", "writer"] and len(params) == 2:
            return "raw.streams"
        if params and params[0] in WS_NAMES and len(params) <= 2:
            return "websocket.async"
        return None
    if len(params) == 2:
        if params[1] == "start_response":
            return "wsgi"
        if params[0] in SOCKET_NAMES and params[1] in ADDR_NAMES:
            return "raw.socket"
        return None
    if len(params) == 1 and params[0] in WS_NAMES:
        return "websocket.sync"
    return None
