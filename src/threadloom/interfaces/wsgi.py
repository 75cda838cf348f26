"""WSGI (PEP 3333): the environ, ``start_response``, ``write()`` and the response iterable.

Theory of operation
-------------------
:class:`WSGIRunner` is built once per server. For each request the engine calls it with the
parsed :class:`~threadloom.protocols.http1.Request`, a file-like ``wsgi.input`` and a
:class:`ResponseSink` (the engine's way to put bytes on the wire, blocking until they are
accepted). The runner

1. builds the environ from a template of the per-server constants,
2. calls the app; ``start_response`` only records status and headers (PEP 3333: nothing is
   sent before the first non-empty body chunk),
3. frames the response with the HTTP core (which refuses CR/LF in header names or values:
   such a response becomes a 500 and never reaches the wire) and sends it through the sink,
4. closes the iterable, whatever happened.

It returns an :class:`Outcome` saying whether the connection may be kept alive. It never
touches a socket: the same runner serves the blocking models and the asyncio bridge.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import unquote_to_bytes

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
    error_response,
    full_response,
    full_response_parts,
    response_head,
    status_line,
)
from threadloom.protocols.http1.speedups import ACTIVE as SPEEDUPS_ACTIVE
from threadloom.protocols.http1.speedups import render_whole
from threadloom.protocols.http2.response import response_headers

log = logging.getLogger("threadloom.app")
_c_environ: Callable[..., dict[str, Any]] | None = None
_c_core: type | None = None
if SPEEDUPS_ACTIVE:  # off without a compiler at install time, or THREADLOOM_PURE_PYTHON=1
    try:
        from threadloom.interfaces import _wsgi
    except ImportError:
        pass
    else:
        _c_environ, _c_core = _wsgi.environ, _wsgi.ExchangeCore

#: A tuple: isinstance with an ``X | Y`` union is several times slower.
_SEQUENCES = (list, tuple)
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ResponseSink(Protocol):
    """Where a response's bytes go; provided by the engine for each connection."""

    def send(self, data: bytes) -> None:
        """Send all of ``data``, blocking while the peer is slow; raises OSError if it is gone."""
        ...

    #: True when :meth:`sendfile` can be used (a plain socket, not TLS).
    can_sendfile: bool

    def send_whole(self, head: bytes, body: bytes) -> None:
        """A whole response as its head and a large body, sent without joining them."""
        ...

    def sendfile(self, file: IO[bytes], count: int) -> int:
        """Send up to ``count`` bytes of ``file`` from its current position, zero-copy."""
        ...


class StreamSink(Protocol):
    """Where an HTTP/2 stream's response goes (``engine/h2``, ``engine/h2_aio``); every call
    raises OSError once the stream is reset or the connection lost."""

    def respond(self, headers: list[tuple[bytes, bytes]], body: bytes, end: bool) -> None:
        """The response's header list, and its first body bytes (all of them if ``end``)."""
        ...

    def send(self, data: bytes, end: bool) -> None:
        """More of the body (``end``: the last of it)."""
        ...

    def reset(self) -> None:
        """The app failed after the response began: reset the stream."""
        ...


class FileWrapper:
    """``wsgi.file_wrapper``: an iterable over a file, which the engine may ``sendfile``."""

    def __init__(self, filelike: IO[bytes], block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(self.block_size):
            yield chunk

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class Outcome(Protocol):
    """What happened to one exchange, for keep-alive decisions and the access log."""

    status: int
    sent: int
    keep_alive: bool
    #: The client a trusted proxy named (X-Forwarded-For), if any; and the request id.
    remote: str | None
    request_id: str | None


class WSGIRunner:
    """Calls one WSGI app; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        server_name: str,
        server_port: str,
        url_scheme: str,
        multithread: bool,
        multiprocess: bool = False,
        proxies: TrustedProxies | None = None,
        request_ids: bool = False,
    ) -> None:
        self.app = app
        #: Peers whose X-Forwarded-* count; whether requests get an X-Request-ID.
        self.proxies = proxies
        self.request_ids = request_ids
        self.template: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def environ(self, request: Request, body: BinaryIO | Any, client: Any) -> dict[str, Any]:
        """The PEP 3333 environ for ``request`` (header names with ``_`` are dropped)."""
        if _c_environ is not None:  # the same, in C (interfaces/_wsgi.c)
            return _c_environ(self.template, request, body, client)
        return self.environ_py(request, body, client)

    def environ_py(self, request: Request, body: BinaryIO | Any, client: Any) -> dict[str, Any]:
        """:meth:`environ` in Python: the reference the C version is tested against."""
        env = self.template.copy()
        env["REQUEST_METHOD"] = request.method
        path = request.path
        env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        env["QUERY_STRING"] = request.query.decode("latin-1")
        env["RAW_URI"] = env["REQUEST_URI"] = request.target.decode("latin-1")
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or (
            "HTTP/" + request.http_version
        )
        env["wsgi.input"] = body
        if isinstance(client, tuple):
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = client[0], str(client[1])
        else:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = "127.0.0.1", "0"
        keys = _ENV_KEYS
        for name, value in request.headers:
            key = keys.get(name)
            if key is None:
                key = _env_key(name)
            if not key:
                continue  # X_Forwarded_For would otherwise pose as X-Forwarded-For
            text = value.decode("latin-1")
            if key in env:
                text = env[key] + (";" if key == "HTTP_COOKIE" else ",") + text
            env[key] = text
        return env

    def run(self, request: Request, body: Any, sink: ResponseSink, client: Any) -> Outcome:
        """Run the app for one request and send its response through ``sink``.

        A trusted proxy's X-Forwarded-For/-Proto/-Host set ``REMOTE_ADDR`` (``REMOTE_PORT``
        ``0``), ``wsgi.url_scheme`` and ``HTTP_HOST``. With request ids on, the app finds the
        id in ``HTTP_X_REQUEST_ID`` (the client's when sane, else a new one) and the
        response carries it as ``X-Request-ID`` unless the app set that header itself.
        """
        if _c_environ is not None:
            env = _c_environ(self.template, request, body, client)
        else:
            env = self.environ_py(request, body, client)
        remote = None
        if self.proxies is not None and self.proxies.trusts_client(client):
            remote = _forward(env, self.proxies)
        request_id = _identify(env) if self.request_ids else None
        return self._respond(env, _Exchange(request, sink, request_id, remote))

    #: Calling the runner runs it (``run`` is the cheaper spelling on the hot path: a
    #: method call, where calling an instance goes through ``type.__call__``).
    __call__ = run

    def run_h2(self, request: Request, body: Any, sink: StreamSink, client: Any) -> Outcome:
        """:meth:`run` for an HTTP/2 stream: the same environ (``SERVER_PROTOCOL``
        ``HTTP/2``) and app conventions; the response goes out as a header list and body
        pieces (``sink``), which the engine frames."""
        env = self.environ(request, body, client)
        remote = None
        if self.proxies is not None and self.proxies.trusts_client(client):
            remote = _forward(env, self.proxies)
        request_id = _identify(env) if self.request_ids else None
        return self._respond(env, _H2Exchange(request, sink, request_id, remote))  # type: ignore[arg-type]

    def _respond(self, env: dict[str, Any], exchange: _Exchange | _H2Exchange) -> Outcome:
        try:
            result = self.app(env, exchange.start_response)
        except Exception:
            return exchange.fail("app raised before returning a response")
        try:
            if type(result) is list and len(result) == 1 and exchange.framer is None:
                exchange.send_whole(result[0])  # the common case, without the generic loop
                return exchange  # send_whole settled keep_alive
            exchange.send_result(result)
        except OSError:
            exchange.keep_alive = False  # the peer went away: nothing more to say to it
        except Exception:
            return exchange.fail("app raised while producing its response")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("the response iterable's close() raised")
        return exchange.outcome()


def _forward(env: dict[str, Any], proxies: TrustedProxies) -> str | None:
    """Apply a trusted peer's X-Forwarded-* to ``env``; the client it named, if any."""
    xff = env.get("HTTP_X_FORWARDED_FOR")
    proto = env.get("HTTP_X_FORWARDED_PROTO")
    host = env.get("HTTP_X_FORWARDED_HOST")
    if xff is None and proto is None and host is None:
        return None
    client, scheme, new_host = resolve(proxies, xff, proto, host)
    if client is not None:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = client, "0"
    if scheme is not None:
        env["wsgi.url_scheme"] = scheme
    if new_host is not None:
        env["HTTP_HOST"] = new_host
    return client


def _identify(env: dict[str, Any]) -> str:
    """The request's id: the client's X-Request-ID when sane, else a new one (in ``env``)."""
    given = env.get("HTTP_X_REQUEST_ID")
    if given is not None and sane_request_id(given):
        return str(given)
    env["HTTP_X_REQUEST_ID"] = request_id = new_request_id()
    return request_id


#: Header name -> environ key ("" to drop it), filled as names are met; bounded, because
#: clients choose the names.
_ENV_KEYS: dict[bytes, str] = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_ENV_KEYS_MAX = 1024


def _env_key(name: bytes) -> str:
    """``HTTP_`` + the name upper-cased with ``-`` as ``_``; "" for a name with ``_``.

    The C environ calls this too, for each name its cache lacks: the rule lives here only.
    """
    key = "" if b"_" in name else "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if len(_ENV_KEYS) < _ENV_KEYS_MAX:
        _ENV_KEYS[name] = key
    return key


if _c_environ is not None:  # the C environ reads the same cache and calls _env_key on a miss
    _wsgi.bind_environ(_ENV_KEYS, _env_key)


#: "200 OK" -> (200, "OK", b"HTTP/1.1 200 OK\r\n"): apps send a handful of distinct status
#: lines, over and over. The line is None when the HTTP core refuses the reason phrase (it
#: says why when the response is framed).
_STATUSES: dict[str, tuple[int, str, bytes | None]] = {}


def _parse_status(status: Any) -> tuple[int, str, bytes | None]:
    if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
        raise LocalProtocolError(f"bad status {status!r}: expected '200 OK'")
    code, reason = int(status[:3]), status[4:]
    try:
        line: bytes | None = status_line(code, reason or None)
    except LocalProtocolError:
        line = None
    parsed = code, reason, line
    if len(_STATUSES) < 256:
        _STATUSES[status] = parsed
    return parsed


if _c_core is not None:  # ExchangeCore's start_response reads the same cache
    _wsgi.bind_exchange(_STATUSES, render_whole, JOIN_MAX)


class _ExchangeState:
    """An exchange's state, in pure Python: what ``_wsgi.ExchangeCore`` holds in C.

    The two hot entry points go straight to the Python versions, which ExchangeCore also
    falls back on for anything but the plain case.
    """

    __slots__ = (
        "framer",
        "headers",
        "keep_alive",
        "keep_alive_whole",
        "line",
        "reason",
        "remote",
        "request",
        "request_id",
        "sent",
        "sink",
        "status",
    )

    def __init__(
        self, request: Request, sink: ResponseSink, request_id: str | None, remote: str | None
    ) -> None:
        self.request = request
        self.sink = sink
        self.request_id = request_id
        self.remote = remote
        self.status = 0
        self.reason = ""
        self.line: bytes | None = None
        self.headers: list[tuple[str, str]] | None = None
        self.framer: ResponseFramer | None = None
        self.keep_alive_whole: bool | None = None
        self.sent = 0
        self.keep_alive = request.keep_alive  # until outcome(): no error has ruled it out

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        return self._start_response(status, headers, exc_info)

    def send_whole(self, body: bytes) -> None:
        self._send_whole(body)

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        raise NotImplementedError  # _Exchange's

    def _send_whole(self, body: bytes) -> None:
        raise NotImplementedError  # _Exchange's


#: The exchange's state and hot entry points: in C when the extension is in use.
if TYPE_CHECKING or _c_core is None:
    _ExchangeBase = _ExchangeState
else:
    _ExchangeBase = _c_core


class _Exchange(_ExchangeBase):
    """Per-request response state: start_response, write() and sending the result.

    It is its own :class:`Outcome` once :meth:`outcome` (or :meth:`fail`) has settled
    ``keep_alive``: one object per request instead of two. Its state and the plain case of
    ``start_response`` and ``send_whole`` live in the base class (C, or
    :class:`_ExchangeState`); the methods here decide everything else.
    """

    __slots__ = ()

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.framer is not None:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.headers is not None:
            raise LocalProtocolError("start_response called twice without exc_info")
        parsed = _STATUSES.get(status) if type(status) is str else None
        if parsed is None:
            parsed = _parse_status(status)
        self.status, self.reason, self.line = parsed
        self.headers = list(headers)
        if self.request_id is not None:
            for name, _ in self.headers:
                if len(name) == 12 and name.lower() == "x-request-id":
                    break  # the app answers with an id of its own
            else:
                self.headers.append(("X-Request-ID", self.request_id))
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: send ``data`` now."""
        if self.framer is None:
            self._send_head(data)
        elif data:
            self._send(self.framer.body(data))

    def _send_head(self, first: bytes) -> None:
        if self.headers is None:
            raise LocalProtocolError("the app sent a body before calling start_response")
        head, self.framer = response_head(
            self.request, self.status, self.headers, reason=self.reason or None
        )
        self._send(head + self.framer.body(first) if first else head)

    def _send_whole(self, body: bytes) -> None:
        """The common case, a body known in full: one buffer, Content-Length, no framer.

        Settles ``keep_alive`` (the exchange is then its own outcome).
        """
        if self.headers is None:
            raise LocalProtocolError("the app returned before calling start_response")
        if type(body) is bytes and len(body) >= JOIN_MAX:  # never copied to be framed
            head, body, keep_alive = full_response_parts(
                self.request, self.status, self.headers, body, reason=self.reason or None
            )
            self.keep_alive_whole = keep_alive
            self.keep_alive = self.keep_alive and keep_alive
            self.sink.send_whole(head, body)
            self.sent += len(head) + len(body)
            return
        data, keep_alive = full_response(
            self.request, self.status, self.headers, body, reason=self.reason or None
        )
        self.keep_alive_whole = keep_alive
        self.keep_alive = self.keep_alive and keep_alive
        self.sink.send(data)
        self.sent += len(data)

    def _send(self, data: bytes) -> None:
        self.sink.send(data)
        self.sent += len(data)

    def send_result(self, result: Iterable[bytes]) -> None:
        if isinstance(result, FileWrapper) and self._sendfile(result):
            return
        if isinstance(result, _SEQUENCES) and len(result) == 1 and self.framer is None:
            self.send_whole(result[0])
            return
        for chunk in result:
            if self.framer is None:
                if chunk:
                    self._send_head(chunk)
            elif chunk:
                self._send(self.framer.body(chunk))
        if self.framer is None:
            self.send_whole(b"")
            return
        tail = self.framer.end()
        if tail:
            self._send(tail)

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Zero-copy a real file when the app gave its Content-Length and the sink can."""
        length = next((v for n, v in self.headers or () if n.lower() == "content-length"), "")
        if not (self.sink.can_sendfile and length.isdigit() and self.request.method != "HEAD"):
            return False
        try:
            wrapper.filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        self._send_head(b"")
        sent = self.sink.sendfile(wrapper.filelike, int(length))
        self.sent += sent
        if sent < int(length):
            self.keep_alive = False  # the file was shorter than promised: the framing is broken
        return True

    def fail(self, what: str) -> Outcome:
        """Log the app's exception; answer 500 if nothing was sent yet, else give up the line."""
        log.exception("%s %s: %s", self.request.method, self.request.target.decode("latin-1"), what)
        if self.framer is None:
            try:
                self._send(error_response(500))
            except OSError:
                pass
            self.status = 500
        self.keep_alive = False
        return self

    def outcome(self) -> Outcome:
        """Settle ``keep_alive`` now that the response is sent; the exchange is its outcome."""
        if self.keep_alive_whole is not None:
            self.keep_alive = self.keep_alive and self.keep_alive_whole
        else:
            self.keep_alive = self.keep_alive and self.framer is not None and self.framer.keep_alive
        return self


#: ``framer`` of an HTTP/2 exchange whose head has gone out (it frames nothing itself).
_HEAD_SENT: Any = object()


class _H2Exchange(_ExchangeState):
    """An HTTP/2 stream's response state: the same ``start_response`` rules as
    :class:`_Exchange` (the same function), a header list instead of a framed head, and
    a stream reset where HTTP/1.1 would close the connection."""

    __slots__ = ()

    _start_response = _Exchange._start_response
    sink: StreamSink  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: send ``data`` now."""
        if self.framer is None:
            self._head(data, end=False)
        elif data:
            self._data(data, end=False)

    def _head(self, body: bytes, end: bool, length: int | None = None) -> None:
        if self.headers is None:
            raise LocalProtocolError("the app sent a body before calling start_response")
        headers = response_headers(self.status, self.headers, length)
        if self.request.method == "HEAD":
            body = b""
        self.framer = _HEAD_SENT
        self.sink.respond(headers, body, end)
        self.sent += len(body)

    def _data(self, data: bytes, end: bool) -> None:
        if self.request.method == "HEAD":
            data = b""
        self.sink.send(data, end)
        self.sent += len(data)

    def _send_whole(self, body: bytes) -> None:
        if self.headers is None:
            raise LocalProtocolError("the app returned before calling start_response")
        self._head(body, end=True, length=len(body))

    def send_result(self, result: Iterable[bytes]) -> None:
        if isinstance(result, _SEQUENCES) and len(result) == 1 and self.framer is None:
            self.send_whole(result[0])
            return
        for chunk in result:
            if chunk:
                self.write(chunk)
        if self.framer is None:
            self.send_whole(b"")
        else:
            self._data(b"", end=True)

    def fail(self, what: str) -> Outcome:
        """Log the app's exception; 500 if nothing was sent yet, else reset the stream."""
        log.exception("%s %s: %s", self.request.method, self.request.target.decode("latin-1"), what)
        try:
            if self.framer is None:
                self.headers = [("content-type", "text/plain; charset=utf-8")]
                self.status = 500
                self._head(b"Internal Server Error\n", end=True, length=22)
            else:
                self.sink.reset()
        except OSError:
            pass
        self.status = 500
        return self

    def outcome(self) -> Outcome:
        return self
