"""WebSocket handlers and the ASGI ``websocket`` scope: how user code meets a WebSocket.

Theory of operation
-------------------
The engine owns the socket and the RFC 6455 core; this module owns the conventions of the
code it calls:

* Bare handlers, the tutorial's ``async def handle_client(websocket, path)`` and its sync
  twin ``def echo(ws)``, receive a connection object from the engine
  (``engine/ws.py`` for threads, ``engine/ws_aio.py`` for asyncio) with the API of the
  ``websockets`` library that the tutorial uses: ``recv``, ``send``, ``close``, iteration,
  ``path``, ``request_headers``, ``remote_address``. :func:`handler_wants_path` decides
  whether ``path`` is passed as a second argument, as older ``websockets`` releases did.
* The end of a connection is told with :class:`ConnectionClosedOK` (a normal close: it ends
  iteration quietly) or :class:`ConnectionClosedError` (anything else: it propagates).
* ASGI apps get a ``websocket`` scope (:func:`websocket_scope`) and exchange the messages
  that :class:`ASGIWebSocketState` checks; misuse raises ``LocalProtocolError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from threadloom.errors import LocalProtocolError
from threadloom.interfaces.asgi import Message
from threadloom.protocols.http1 import Request

#: Close codes that mean "all went well" (RFC 6455 7.4.1): iteration ends without an error.
NORMAL_CLOSE_CODES = frozenset({1000, 1001})
#: A tuple: isinstance with an ``X | Y`` union is several times slower.
_BYTES_LIKE = (bytes, bytearray, memoryview)


class ConnectionClosed(Exception):
    """The WebSocket is closed; ``code`` and ``reason`` are what ended it."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed with 1000 or 1001: the end of a conversation, not a failure."""


class ConnectionClosedError(ConnectionClosed):
    """Closed abnormally: a protocol error, a lost peer, a timeout."""


def iterate(recv: Callable[[], str | bytes]) -> Iterator[str | bytes]:
    """``for msg in ws``: messages until a normal close; an abnormal close raises."""
    while True:
        try:
            yield recv()
        except ConnectionClosedOK:
            return


def closed_error(code: int, reason: str = "") -> ConnectionClosed:
    """The exception that reports a close with ``code``."""
    kind = ConnectionClosedOK if code in NORMAL_CLOSE_CODES else ConnectionClosedError
    return kind(code, reason)


class RequestHeaders:
    """The handshake's headers, read case-insensitively: ``ws.request_headers["Origin"]``."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received."""
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self.raw if n.lower() == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of ``name`` joined with commas, or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        """All fields as text pairs."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw]


class WSGIWithWebSocket:
    """A WSGI app and a WebSocket handler served on one port, under any model.

    Upgrade requests go to ``websocket_handler`` (sync under every model, async under
    ``asyncio``; it routes by ``ws.path`` itself), everything else to ``wsgi_app``. ASGI apps
    need none of this: their websocket routes already share the port.
    """

    def __init__(self, wsgi_app: Any, websocket_handler: Any) -> None:
        self.wsgi_app = wsgi_app
        self.websocket_handler = websocket_handler

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.wsgi_app(environ, start_response)


def handler_wants_path(handler: Any) -> bool:
    """Whether to call ``handler(ws, path)`` rather than ``handler(ws)``.

    The tutorial's ``handle_client(websocket, path)`` is the legacy ``websockets`` form; a
    handler with one parameter gets the connection only (``ws.path`` has the path).
    """
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def request_path(request: Request) -> str:
    """The request target as the handler sees it (``ws.path``): path and query, decoded."""
    return request.target.decode("latin-1")


def offered_subprotocols(request: Request) -> list[str]:
    """Sec-WebSocket-Protocol values, in the client's order."""
    found: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-protocol":
            found.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    return found


def websocket_scope(template: dict[str, Any], request: Request, client: Any) -> dict[str, Any]:
    """The ASGI ``websocket`` scope of an Upgrade request."""
    scope = template.copy()
    if "state" in scope:
        scope["state"] = scope["state"].copy()
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if template.get("scheme") == "https" else "ws"
    path = request.path.decode("latin-1")
    scope["http_version"] = request.http_version
    scope["path"] = unquote(path, errors="replace") if "%" in path else path
    scope["raw_path"] = request.path
    scope["query_string"] = request.query
    scope["headers"] = request.headers
    scope["client"] = (client[0], client[1]) if isinstance(client, tuple) else None
    scope["subprotocols"] = offered_subprotocols(request)
    return scope


class ASGIWebSocketState:
    """Where one ASGI WebSocket conversation stands, and which messages may come next."""

    __slots__ = ("accepted", "closed", "connect_sent", "subprotocols")

    def __init__(self, subprotocols: list[str]) -> None:
        self.subprotocols = subprotocols
        self.connect_sent = False
        self.accepted = False
        self.closed = False

    def accept(self, message: Message) -> tuple[str | None, list[tuple[bytes, bytes]]]:
        """``websocket.accept``: the subprotocol chosen and the extra response headers."""
        if self.accepted or self.closed:
            raise LocalProtocolError("websocket.accept sent twice or after websocket.close")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered")
        headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers") or ()]
        self.accepted = True
        return subprotocol, headers

    def outgoing(self, message: Message) -> str | bytes:
        """``websocket.send``: the text or bytes to send."""
        if not self.accepted:
            raise LocalProtocolError("websocket.send before websocket.accept")
        if self.closed:
            raise LocalProtocolError("websocket.send after websocket.close")
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            raise LocalProtocolError("websocket.send needs exactly one of text and bytes")
        if text is not None:
            if not isinstance(text, str):
                raise LocalProtocolError("websocket.send text must be str")
            return text
        if not isinstance(data, _BYTES_LIKE):
            raise LocalProtocolError("websocket.send bytes must be bytes")
        return bytes(data)

    def close(self, message: Message) -> tuple[int, str]:
        """``websocket.close``: the code and reason to close with."""
        self.closed = True
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if not isinstance(code, int) or not isinstance(reason, str):
            raise LocalProtocolError("websocket.close needs an int code and a str reason")
        return code, reason


def receive_message(data: str | bytes) -> Message:
    """The ``websocket.receive`` message for one received WebSocket message."""
    if isinstance(data, str):
        return {"type": "websocket.receive", "text": data}
    return {"type": "websocket.receive", "bytes": data}


def disconnect_message(code: int, reason: str = "") -> Message:
    """The ``websocket.disconnect`` message."""
    return {"type": "websocket.disconnect", "code": code, "reason": reason}
