"""ASGI 3 (spec 2.4) for HTTP: the scope, and the rules a response's messages must follow.

Theory of operation
-------------------
The engine owns the connection and the app's task; this module owns the meaning of the
messages. :func:`http_scope` builds a request's scope from a per-server template.
:class:`ResponseState` checks what the app sends (``http.response.start`` once, then
``http.response.body`` until ``more_body`` is false), frames it with the HTTP core, and
returns the bytes the engine must write. Header names or values with CR, LF or NUL are refused
by the core before anything reaches the wire; a misuse of the protocol raises
:class:`~threadloom.errors.LocalProtocolError`, which the engine turns into a 500 (nothing
sent yet) or a closed connection (something sent).

Every http scope lists the ``http.response.pathsend`` extension (:data:`PATHSEND`): in
place of body messages the app may name a file, which the server opens when the message
arrives (:func:`open_pathsend`) and sends itself; the app never reads it. Such a response
is a whole body of the file's size, framed by the same rule as a body in memory
(:func:`~threadloom.protocols.http1.whole_head`: an app's Content-Length must be that size).
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any
from urllib.parse import unquote

from threadloom.errors import LocalProtocolError
from threadloom.protocols.forwarded import (
    TrustedProxies,
    new_request_id,
    resolve,
    sane_request_id,
)
from threadloom.protocols.http1 import (
    JOIN_MAX,
    Request,
    ResponseFramer,
    full_response,
    full_response_parts,
    response_head,
    whole_head,
)

Message = dict[str, Any]

app_log = logging.getLogger("threadloom.app")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
_BYTES_LIKE = (bytes, bytearray, memoryview)
#: The extension by which an app hands the server a file to send (every http scope has it).
PATHSEND = "http.response.pathsend"
#: Every http scope's ``extensions``: one dict for all requests, as the template's keys are.
#: A fresh one per request cost 1.2% of an ASGI hello world's instructions (about 850 of
#: 68,000, benchmarks/instructions.py). An app that changes it in place, rather than pass
#: on a copy as Starlette's middleware does, changes it for the requests after (one that
#: takes the offer away has them served as if it had not been made: slower, not wrong).
_EXTENSIONS: dict[str, Any] = {PATHSEND: {}}
#: Binary mode where the platform has text mode (Windows); a new descriptor is never
#: inherited by child processes (PEP 446).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)


class UnsendableFile(LocalProtocolError):
    """An ``http.response.pathsend`` names nothing the server can send (no str path, a
    missing or unreadable file, not a regular file). The app's mistake, and its message
    says it whole, so the engine logs it as one line rather than a traceback."""


def scope_template(
    server: Any, scheme: str, root_path: str, state: dict[str, Any] | None
) -> dict[str, Any]:
    """The keys every request scope of one server shares."""
    if isinstance(server, tuple):
        server_pair: tuple[str, int] | None = (str(server[0]), int(server[1]))
    else:
        server_pair = None
    template: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "scheme": scheme,
        "root_path": root_path,
        "server": server_pair,
    }
    if state is not None:
        template["state"] = state
    return template


def http_scope(template: dict[str, Any], request: Request, client: Any) -> dict[str, Any]:
    """The ``http`` scope of one request (``state`` is a shallow copy, as the spec asks)."""
    scope = template.copy()
    if "state" in scope:
        scope["state"] = scope["state"].copy()
    raw_path = request.path
    scope["http_version"] = request.http_version
    scope["method"] = request.method
    path = raw_path.decode("latin-1")
    scope["path"] = unquote(path, errors="replace") if "%" in path else path
    scope["raw_path"] = raw_path
    scope["query_string"] = request.query
    scope["headers"] = request.headers
    scope["client"] = (client[0], client[1]) if isinstance(client, tuple) else None
    scope["extensions"] = _EXTENSIONS
    return scope


def check_pathsend_order(status: int, complete: bool, started: bool) -> None:
    """A pathsend comes after ``http.response.start`` in place of any body message (the
    file is the whole body); LocalProtocolError otherwise. ``started``: a body has begun."""
    if not status:
        raise LocalProtocolError(f"{PATHSEND} sent before http.response.start")
    if complete:
        raise LocalProtocolError(f"{PATHSEND} sent after the response completed")
    if started:
        raise LocalProtocolError(f"{PATHSEND} sent after http.response.body")


def open_pathsend(message: Message) -> tuple[int, int]:
    """Open the file an ``http.response.pathsend`` names: its descriptor (the caller's to
    close) and size. Raises :class:`UnsendableFile`.

    The spec asks for an absolute path. A relative one is opened from the working
    directory, as the app's own ``open()`` would: Starlette's FileResponse passes on the
    path it was given, and FastAPI's docs give it a relative one, so refusing it would
    break an app that works when it reads the file itself.
    """
    path = message.get("path")
    if not isinstance(path, str):
        raise UnsendableFile(f"{PATHSEND} needs a str path, not {type(path).__name__}")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:  # (ValueError: a NUL in the path)
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise UnsendableFile(f"{PATHSEND}: cannot open {path!r}: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsendableFile(f"{PATHSEND}: {path!r} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def start_status(message: Message, status_so_far: int) -> int:
    """The status of an ``http.response.start``, checked: the one rule for both protocols
    (``status_so_far``: the response's status until now, 0 before a start)."""
    if status_so_far:
        raise LocalProtocolError("http.response.start sent twice")
    status = message.get("status")
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise LocalProtocolError(f"bad status {status!r} in http.response.start")
    return status


class ResponseState:
    """Validates and frames one response's messages (see the module docstring)."""

    __slots__ = (
        "_headers",
        "complete",
        "framer",
        "keep_alive",
        "request",
        "request_id",
        "started",
        "status",
        "tail",
    )

    def __init__(self, request: Request) -> None:
        self.request = request
        #: Sent back as X-Request-ID unless the app sets its own (see forward_and_identify).
        self.request_id: str | None = None
        self.framer: ResponseFramer | None = None  # only for a response in several pieces
        self.status = 0
        self.started = False  # the head has been handed to the engine
        self.complete = False
        #: May the connection serve another request? Set once the response is complete.
        self.keep_alive = False
        self._headers: Any = ()
        #: A large whole body, to write after what :meth:`body` returned (never joined).
        self.tail = b""

    def start(self, message: Message) -> bytes:
        """``http.response.start``: returns the head, unless the first body can join it."""
        self.status = start_status(message, self.status)
        self._headers = message.get("headers") or ()
        return b""

    def body(self, message: Message) -> bytes:
        """``http.response.body``: the bytes to write (head included the first time).

        A response whose first body message is also its last (the common case) is framed in
        one call with no framer; its Content-Length, if the app gave one, must then match.
        """
        if not self.status:
            raise LocalProtocolError("http.response.body sent before http.response.start")
        if self.complete:
            raise LocalProtocolError("http.response.body sent after the response completed")
        data = message.get("body", b"")
        if type(data) is not bytes:
            if not isinstance(data, _BYTES_LIKE):
                raise LocalProtocolError("http.response.body needs bytes")
            data = bytes(data)
        more = bool(message.get("more_body", False))
        headers = self._headers
        if self.request_id is not None and not self.started:
            headers = self._with_request_id()
        if not (more or self.started):
            if len(data) >= JOIN_MAX:  # many readers of one large body: no copy each
                out, self.tail, self.keep_alive = full_response_parts(
                    self.request, self.status, headers, data
                )
            else:
                out, self.keep_alive = full_response(self.request, self.status, headers, data)
            self.started = self.complete = True  # (not if the app's head was refused)
            return out
        out = b""
        if self.framer is None:  # the first of several pieces
            out, self.framer = response_head(self.request, self.status, headers)
            self.started = True
        if data:
            out += self.framer.body(data)
        if not more:
            self.complete = True
            out += self.framer.end()
            self.keep_alive = self.framer.keep_alive
        return out

    def pathsend(self, message: Message) -> tuple[bytes, int | None, int]:
        """``http.response.pathsend``: the head, then the open file's descriptor and how
        many of its bytes follow it (``None, 0`` when none do: a HEAD, a 204 or 304, an
        empty file; the descriptor is then closed already). The response is complete; the
        caller owns the descriptor and must close it whatever happens."""
        check_pathsend_order(self.status, self.complete, self.started)
        fd, size = open_pathsend(message)
        try:
            headers = self._headers if self.request_id is None else self._with_request_id()
            head, with_body, self.keep_alive = whole_head(self.request, self.status, headers, size)
        except BaseException:
            os.close(fd)
            raise
        self.started = self.complete = True
        if not (with_body and size):
            os.close(fd)
            return head, None, 0
        return head, fd, size

    def _with_request_id(self) -> Any:
        """The app's fields, and our X-Request-ID unless the app gave its own."""
        headers = self._headers
        if self.request_id is None or _has_request_id(headers):
            return headers
        return [*headers, (b"x-request-id", self.request_id.encode("ascii"))]


def log_app_end(
    request: Request,
    error: BaseException | None,
    disconnected: type[BaseException],
    complete: bool,
    gone: bool,
) -> None:
    """Log, once, an app call that ended without its response (HTTP/1.1 and HTTP/2 alike).

    ``disconnected`` is the error the engine raised in the app because the client left
    (not the app's fault: not logged); ``gone``: the client or stream is gone. A refused
    pathsend (:class:`UnsendableFile`) says everything in one line; any other error gets
    its traceback.
    """
    where = f"{request.method} {request.target.decode('latin-1')}"
    if isinstance(error, UnsendableFile):
        app_log.error("%s: %s", where, error)
    elif error is not None and not isinstance(error, disconnected):
        app_log.error("%s: app raised", where, exc_info=(type(error), error, error.__traceback__))
    elif not complete and not gone:
        app_log.error("%s: app returned without completing its response", where)


def _has_request_id(headers: Any) -> bool:
    for name, _ in headers:  # noqa: SIM110 - a plain loop: no generator on the hot path
        if len(name) == 12 and name.lower() == b"x-request-id":
            return True
    return False


def forward_and_identify(
    scope: dict[str, Any], proxies: TrustedProxies | None, request_ids: bool
) -> str | None:
    """Apply a trusted proxy's X-Forwarded-* to ``scope``; return its request id, if on.

    A trusted peer (see :mod:`threadloom.protocols.forwarded`) sets ``client`` (port 0),
    ``scheme`` and the ``host`` header. The request id is the client's sane X-Request-ID
    or a new one, which then appears in ``scope["headers"]`` as ``x-request-id`` (so the app
    reads it where it reads the client's), and the response carries it back.
    """
    client = scope["client"]
    trusted = proxies is not None and (
        client is None or proxies.known.get(client[0]) or proxies.trusts(client[0])
    )
    if not (trusted or request_ids):
        return None
    xff: list[bytes] = []
    proto = host = given = None
    for name, value in scope["headers"]:
        if not name.startswith(b"x-"):
            continue
        if name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-host":
            host = value
        elif name == b"x-request-id":
            given = value
    if trusted and (xff or proto or host):
        assert proxies is not None
        _forward(scope, proxies, b",".join(xff) if xff else None, proto, host)
    return _identify(scope, given) if request_ids else None


def _forward(
    scope: dict[str, Any],
    proxies: TrustedProxies,
    xff: bytes | None,
    proto: bytes | None,
    host: bytes | None,
) -> None:
    client, scheme, new_host = resolve(
        proxies,
        None if xff is None else xff.decode("latin-1"),
        None if proto is None else proto.decode("latin-1"),
        None if host is None else host.decode("latin-1"),
    )
    if client is not None:
        scope["client"] = (client, 0)
    if scheme is not None:
        if scope["type"] == "websocket":
            scheme = "wss" if scheme == "https" else "ws"
        scope["scheme"] = scheme
    if new_host is not None:
        raw = new_host.encode("ascii")
        scope["headers"] = [(n, raw if n == b"host" else v) for n, v in scope["headers"]]


def _identify(scope: dict[str, Any], given: bytes | None) -> str:
    if given is not None:
        text = given.decode("latin-1")
        if sane_request_id(text):
            return text
    request_id = new_request_id()
    headers = scope["headers"]
    if given is not None:  # an insane one: the app must not see it beside ours
        headers = [(n, v) for n, v in headers if n != b"x-request-id"]
    scope["headers"] = [*headers, (b"x-request-id", request_id.encode("ascii"))]
    return request_id
