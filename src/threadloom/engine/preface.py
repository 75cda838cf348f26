"""What comes before the protocol on a connection: a PROXY header, then a TLS handshake.

Theory of operation
-------------------
Order on the wire: the PROXY header (plain bytes, even in front of TLS: the balancer
forwards the client's encrypted bytes untouched), then the TLS handshake, then the protocol
(HTTP, WebSocket, or a raw handler's bytes). :class:`Preface` is built once per server and
opens each connection in that order, for every kind of driver:

* thread models, HTTP: :meth:`Preface.session` wraps the protocol's session in a
  :class:`ProxySession` (which parses the header from the bytes the model feeds it, and may
  read past its end: the rest goes to what follows) and/or a
  :class:`~threadloom.engine.tls.TLSSession`. Models see only the engine contract.
* raw sync handlers, which own a blocking socket: :meth:`Preface.open_blocking` reads the
  header exactly (peeking first, so not one byte of the handler's is consumed) and does a
  blocking handshake, on the handler's thread, within ``--timeout-header``.
* asyncio: :meth:`Preface.connect_async` reads the header exactly the same way without
  blocking the loop, then lets asyncio do the handshake (``ssl_handshake_timeout``).

PROXY is all or nothing on a server: with ``--proxy-protocol`` every connection must start
with a header (the spec forbids guessing), and only peers in ``--forwarded-allow-ips`` may
send one; a connection from any other peer is closed at once, so no client can claim
another's address by talking to the port directly. The header's source address then
replaces the peer's everywhere (the app, logs, X-Forwarded-* trust).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from threadloom import portable
from threadloom.config import Config
from threadloom.engine.session import Session, Want
from threadloom.engine.sockio import wait_readable
from threadloom.engine.tls import TLSSession, blocking_handshake
from threadloom.protocols.forwarded import TrustedProxies
from threadloom.protocols.proxy import ProxyHeader, ProxyHeaderParser, ProxyProtocolError

log = logging.getLogger("threadloom.proxy")
tls_log = logging.getLogger("threadloom.tls")

#: Enough to see a v1 line or a v2 header with ordinary extensions in one peek.
PEEK_SIZE = 1024
_NOWAIT = portable.MSG_DONTWAIT  # (0 on Windows: _read_available asks first)
MakeSession = Callable[[Any, Any], Session]


class Preface:
    """Opens connections for one server (see the module docstring)."""

    def __init__(self, config: Config, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.proxy_protocol = config.proxy_protocol
        self.proxies = TrustedProxies(config.forwarded_allow_ips)
        self.timeout = config.timeout_header
        self.timeout_io = config.timeout_io
        self.min_send_rate = config.min_send_rate
        #: Whether connections need any of this (else drivers skip it entirely).
        self.active = tls is not None or config.proxy_protocol
        self.scheme = "https" if tls is not None else "http"

    # -- thread models ------------------------------------------------------------------------

    def session(self, sock: socket.socket, addr: Any, make: MakeSession) -> Session:
        """The session for a new connection: ``make``'s, behind PROXY and TLS as configured."""
        after = self._after_proxy(make)
        if self.proxy_protocol:
            return ProxySession(after, sock, addr, self)
        return after(sock, addr)

    def _after_proxy(self, make: MakeSession) -> MakeSession:
        context = self.tls
        if context is None:
            return make
        timeout_io, min_send_rate = self.timeout_io, self.min_send_rate
        return lambda sock, addr: TLSSession(make, sock, addr, context, timeout_io, min_send_rate)

    def refuses(self, addr: Any) -> bool:
        """With --proxy-protocol, a peer that may not send a header is closed (logged)."""
        if self.proxies.trusts_client(addr):
            return False
        log.info(
            "closed a connection from %s: it may not send PROXY headers (--forwarded-allow-ips)",
            _host(addr),
        )
        return True

    # -- raw handlers that own a blocking socket ------------------------------------------------

    def open_blocking(self, sock: socket.socket, addr: Any) -> tuple[Any, Any] | None:
        """PROXY header and TLS handshake on the calling thread: (socket to use, client address),
        or None when the connection must be closed."""
        deadline = time.monotonic() + self.timeout
        if self.proxy_protocol:
            if self.refuses(addr):
                return None
            try:
                header = read_header_blocking(sock, deadline)
            except (ProxyProtocolError, OSError) as exc:
                log.info("closed a connection from %s: %s", _host(addr), exc)
                return None
            addr = header.source or addr
        if self.tls is None:
            return sock, addr
        tls = blocking_handshake(sock, self.tls, deadline - time.monotonic())
        return None if tls is None else (tls, addr)

    # -- asyncio --------------------------------------------------------------------------------

    async def client_async(self, sock: socket.socket, addr: Any) -> Any:
        """The client address after the PROXY header (read without blocking the loop);
        None when the connection must be closed."""
        if not self.proxy_protocol:
            return addr
        if self.refuses(addr):
            return None
        try:
            header = await read_header_async(sock, self.timeout)
        except (ProxyProtocolError, OSError) as exc:
            log.info("closed a connection from %s: %s", _host(addr), exc or "timed out")
            return None
        return header.source or addr

    async def connect_async(
        self, sock: socket.socket, addr: Any, factory: Callable[[Any], asyncio.Protocol]
    ) -> tuple[asyncio.Transport, asyncio.Protocol] | None:
        """PROXY, then ``connect_accepted_socket`` (TLS included): the transport and protocol
        made by ``factory(client_address)``, or None if the connection ended in the preface.
        """
        began = time.monotonic()
        client = await self.client_async(sock, addr)
        if client is None:
            sock.close()
            return None
        loop = asyncio.get_running_loop()
        if self.tls is None:
            transport, protocol = await loop.connect_accepted_socket(lambda: factory(client), sock)
            return transport, protocol
        left = max(self.timeout - (time.monotonic() - began), 0.001)
        try:
            transport, protocol = await loop.connect_accepted_socket(
                lambda: factory(client), sock, ssl=self.tls, ssl_handshake_timeout=left
            )
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            tls_log.debug("TLS handshake with %s failed: %s", _host(client), reason)
            return None
        return transport, protocol


class ProxySession:
    """Parses the PROXY header from fed bytes, then is the session that follows."""

    __slots__ = ("_deadline", "addr", "inner", "make", "parser", "preface", "sock")

    def __init__(self, make: MakeSession, sock: socket.socket, addr: Any, preface: Preface):
        self.make = make
        self.sock = sock
        self.addr = addr
        self.preface = preface
        self.parser = ProxyHeaderParser()
        self.inner: Session | None = None
        self._deadline = time.monotonic() + preface.timeout

    def start(self) -> Want:
        return Want.CLOSE if self.preface.refuses(self.addr) else Want.READ

    def feed(self, data: bytes) -> Want:
        if self.inner is not None:
            return self.inner.feed(data)
        if not data and not self.parser.started:
            log.debug("%s closed the connection before any byte (a health check?)", self.addr)
            return Want.CLOSE
        try:
            header = self.parser.receive_data(data)
        except ProxyProtocolError as exc:
            log.info("closed a connection from %s: %s", _host(self.addr), exc)
            return Want.CLOSE
        if header is None:
            return Want.READ
        self.inner = inner = self.make(self.sock, header.source or self.addr)
        want = inner.start()
        rest = self.parser.trailing_data
        if rest and want is Want.READ:
            want = inner.feed(rest)
        return want

    def serve(self) -> Want:
        return Want.CLOSE if self.inner is None else self.inner.serve()

    def flush(self) -> Want:
        return Want.CLOSE if self.inner is None else self.inner.flush()

    def deadline(self) -> float | None:
        return self._deadline if self.inner is None else self.inner.deadline()

    def expire(self) -> Want:
        if self.inner is None:
            log.info("closed a connection from %s: no PROXY header in time", _host(self.addr))
            return Want.CLOSE
        return self.inner.expire()

    def overloaded(self) -> None:
        if self.inner is not None:
            self.inner.overloaded()

    @property
    def idle(self) -> bool:
        return self.inner is not None and self.inner.idle

    def close(self) -> None:
        if self.inner is None:
            self.sock.close()
        else:
            self.inner.close()


def read_header_blocking(sock: socket.socket, deadline: float) -> ProxyHeader:
    """Read exactly one PROXY header from ``sock`` by ``deadline`` (monotonic)."""
    parser = ProxyHeaderParser()
    while True:
        header = _read_available(sock, parser)
        if header is not None:
            return header
        if not wait_readable(sock, deadline - time.monotonic()):
            raise ProxyProtocolError("no PROXY header within --timeout-header")


async def read_header_async(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Read exactly one PROXY header from ``sock`` within ``timeout``, on the running loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    parser = ProxyHeaderParser()
    while True:
        header = _read_available(sock, parser)
        if header is not None:
            return header
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), _resolve, readable)
        try:
            await asyncio.wait_for(readable, deadline - loop.time())
        except TimeoutError:
            raise ProxyProtocolError("no PROXY header within --timeout-header") from None
        finally:
            loop.remove_reader(sock.fileno())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _read_available(sock: socket.socket, parser: ProxyHeaderParser) -> ProxyHeader | None:
    """Take what is readable now and belongs to the header, never a byte more."""
    while True:
        if not _NOWAIT and not wait_readable(sock, 0):
            return None  # (without MSG_DONTWAIT a recv on a blocking socket would wait)
        try:
            peeked = sock.recv(PEEK_SIZE, socket.MSG_PEEK | _NOWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        if not peeked:
            return parser.receive_data(b"")  # raises: EOF inside the header
        header = parser.receive_data(sock.recv(parser.wanted(peeked), _NOWAIT))
        if header is not None:
            return header


def _host(addr: Any) -> Any:
    return addr[0] if isinstance(addr, tuple) else addr
