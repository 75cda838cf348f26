"""HTTP/2 for the thread-based models: :class:`H2Core` driven by a reader, streams on workers.

Theory of operation
-------------------
An :class:`H2Session` is what an :class:`~threadloom.engine.http.HTTPSession` becomes once
a client opens with the HTTP/2 preface. Its rules are :mod:`threadloom.engine.h2_core`'s;
this module moves bytes and runs exchanges, and it is where HTTP/2 differs from HTTP/1.1
for a model: **several exchanges of one connection run at once, on several threads, while
the connection's owner keeps reading it.**

* The owner (the pool's I/O thread, or the connection's thread) calls ``feed``: frames go
  to the core, body bytes to their stream, and each request that is ready goes to the
  model through ``settings.exchanges`` (:class:`~threadloom.engine.session.ExchangeRunner`:
  the pool's work queue, a new thread under ``threads``). Under ``single`` there is none:
  ``feed`` answers SERVE and ``serve`` runs the ready streams one after another.
* A worker runs the app. It reads the body through :class:`StreamBody` (waiting on the
  session's condition for the owner to bring more; the window is given back as it takes)
  and answers through :class:`StreamSink` (HEADERS and DATA framed by the core, cut to the
  peer's windows).
* One writer per connection: everything the core frames is appended to the connection's
  :class:`~threadloom.engine.outbox.Outbox` under the session's lock, in order, and sent as
  far as the socket takes it at once. What it does not take is flushed by the owner: under
  ``pool`` the worker asks the I/O thread (``flush_later``) and is free; a model without
  an I/O thread has the worker wait for the socket itself, as HTTP/1.1 does there.
* One lock (``lock``) guards the core, the outbox and every stream's state; ``changed``
  (its condition) wakes workers waiting for body bytes or for a window to open. Under
  ``single`` nobody else would bring them: the waiting thread reads the socket itself.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from typing import Any

from threadloom.engine.body import EMPTY_INPUT, BodyReader
from threadloom.engine.h2_core import H2Core, H2Stream
from threadloom.engine.http1_core import HTTPSettings
from threadloom.engine.outbox import STREAM_QUEUE_MAX, Outbox
from threadloom.engine.session import CLOSE, READ, READ_SIZE, SERVE, WRITE, Want
from threadloom.engine.sockio import reset_on_close, wait_readable, wait_writable
from threadloom.engine.ws import BlockingLink, WSSettings, h2_handshake, run_sync_handler
from threadloom.interfaces.static import StaticFiles, send_over_stream
from threadloom.protocols.http1 import RequestBody
from threadloom.protocols.http2 import response_headers
from threadloom.protocols.websocket import HandshakeError, WebSocketConnection
from threadloom.stats import STATS

log = logging.getLogger("threadloom.http")


class StreamGone(OSError):
    """The stream was reset or the connection lost: the app's write fails like a socket's."""


class H2Session:
    """One HTTP/2 connection under a thread model (see the module docstring)."""

    def __init__(
        self, settings: HTTPSettings, sock: socket.socket, addr: Any, outbox: Outbox
    ) -> None:
        self.settings = settings
        self.sock = sock
        #: the socket the model watches (under TLS, ``sock`` is the TLSStream over it)
        self.raw: socket.socket = getattr(sock, "sock", sock)
        self.addr = addr
        self.outbox = outbox
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.waiting = 0  # threads in changed.wait(): a read wakes them only if any
        # RFC 8441 for a sync WebSocket handler beside the WSGI app (async ones need a loop)
        websockets = settings.ws is not None and not settings.ws.is_async
        self.core = H2Core(settings, time.monotonic(), addr, websockets=websockets)
        self.inline: list[H2Stream] = []  # ready streams, for a model without a runner
        self.lost = False
        with self.lock:
            self._write_out()  # our SETTINGS

    # -- the owner's side (the engine contract, through HTTPSession) ----------------------------

    def feed(self, data: bytes) -> Want:
        with self.lock:
            alive = self.core.feed(data, time.monotonic())
            ready = self.core.take_ready()
            self._write_out()
            if self.waiting:
                self.changed.notify_all()
        if not alive:
            self._lose()
        for stream in ready:
            self._dispatch(stream)
        return self._want()

    def serve(self) -> Want:
        """Only without a runner (``single``): the ready streams, one after another."""
        while self.inline:
            self._run(self.inline.pop(0))
        return self._want()

    def flush(self) -> Want:
        with self.lock:
            try:
                done = self.outbox.flush_all()
            except OSError:
                self.outbox.clear()
                done = True
                self.lost = True
            self.changed.notify_all()
        if not done:
            return WRITE
        return self._want()

    def deadline(self) -> float | None:
        with self.lock:
            if self.outbox.unsent:
                return self.outbox.unsent_deadline()
            return self.core.deadline()

    def expire(self) -> Want:
        with self.lock:
            if self.outbox.unsent:
                log.info("%s reads its responses too slowly (--min-send-rate): dropped", self.addr)
                STATS.slow_reader()
                self.outbox.clear()
                reset_on_close(self.raw)
            else:
                self.core.expire(time.monotonic())
                self._write_out()
        self._lose()
        return CLOSE

    def _drop(self) -> None:
        """A worker found the reader too slow: drop the connection, and wake its owner
        (asleep waiting for bytes, with no deadline while streams run) with the end of
        input, so that it closes it now."""
        self.expire()
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def overloaded(self) -> None:
        """Nothing to do: a stream the model could not take was refused on its own."""

    @property
    def idle(self) -> bool:
        return self.core.idle and not self.outbox.unsent

    def going_away(self) -> None:
        """The server is stopping: GOAWAY now; the streams in flight finish."""
        with self.lock:
            self.core.going_away()
            self._write_out()

    def _lose(self) -> None:
        """The connection ends: wake every worker that waits on it, so it gives up."""
        with self.lock:
            self.lost = True
            self.core._lose_all()
            self.changed.notify_all()

    def close(self) -> None:
        self._lose()

    def _want(self) -> Want:
        with self.lock:
            if self.outbox.unsent and not self.lost:
                return WRITE
            if self.lost or self.core.done:
                return CLOSE
            return SERVE if self.inline else READ

    # -- running exchanges ------------------------------------------------------------------------

    def _dispatch(self, stream: H2Stream) -> None:
        runner = self.settings.exchanges
        if runner is None:
            self.inline.append(stream)
        elif not runner.submit(functools.partial(self._run, stream)):
            with self.lock:  # (the model logged the overload episode)
                now = time.monotonic()
                self.core.overloaded(stream, now)
                self.core.finish(stream, 503, 0, 0.0, now)
                self._write_out()

    def _run(self, stream: H2Stream) -> None:
        """One exchange, on a thread that may block."""
        if stream.request.method == "CONNECT":
            self._run_websocket(stream)
            return
        static = self.settings.static
        if static is not None and static.claims(stream.request):
            self._run_static(stream, static)
            return
        runner = self.settings.runner
        assert runner is not None, "HTTP/2 is offered only to HTTP apps"
        request = stream.request
        body = request.body
        reader = (
            EMPTY_INPUT
            if body.complete and not body.buffered
            else BodyReader(request, StreamBody(self, stream))
        )
        began = time.perf_counter()
        sink = StreamSink(self, stream)
        try:
            outcome = runner.run_h2(request, reader, sink, self.addr)
        except Exception:
            log.exception("HTTP/2 stream failed unexpectedly")
            with self.lock:
                self.core.fail(stream)
                self.core.finish(stream, 500, 0, 0.0, time.monotonic())
                self._write_out()
            return
        with self.lock:
            self.core.finish(
                stream,
                outcome.status,
                outcome.sent,
                time.perf_counter() - began,
                time.monotonic(),
                outcome.remote,
                outcome.request_id,
            )
            STATS.h2_request()
            self._write_out()
        self.hand_over()

    def _run_websocket(self, stream: H2Stream) -> None:
        """An extended CONNECT (RFC 8441): the sync WebSocket handler over this stream, on
        this thread, as over an HTTP/1.1 Upgrade; any other CONNECT is not served (501)."""
        request, ws = stream.request, self.settings.ws
        began = time.perf_counter()
        if ws is None or ws.is_async or request.upgrade != b"websocket":
            self._answer(stream, 501, began)
            return
        try:
            fields, conn = h2_handshake(request, ws)
        except HandshakeError as exc:
            log.info("refused a WebSocket handshake from %s: %s", self.addr, exc)
            self._answer(stream, exc.status, began, exc.extra_headers)
            return
        with self.lock:
            headers = response_headers(200, fields)
            opened = self.core.respond(stream, headers, b"", False, time.monotonic())
            self._write_out()
        self.hand_over()
        link = StreamLink(self, stream, conn, request, ws)
        if opened:
            run_sync_handler(ws, link, b"")
        with self.lock:
            self.core.send_body(stream, b"", True, time.monotonic())
            self.core.finish(stream, 200, link.sent, time.perf_counter() - began, time.monotonic())
            STATS.h2_request()
            self._write_out()
        self.hand_over()

    def _run_static(self, stream: H2Stream, static: StaticFiles) -> None:
        """A ``--static`` file over HTTP/2, on this thread (answered before any app)."""
        began = time.perf_counter()
        answer = static.answer(stream.request)
        try:
            sent = send_over_stream(answer, StreamSink(self, stream))
        except OSError:
            sent = 0  # the stream was reset, or the connection lost
        with self.lock:
            elapsed = time.perf_counter() - began
            self.core.finish(stream, answer.status, sent, elapsed, time.monotonic())
            STATS.h2_request()
            self._write_out()
        self.hand_over()

    def _answer(self, stream: H2Stream, status: int, began: float, extra: Any = ()) -> None:
        """A whole small answer to a stream (a refusal)."""
        with self.lock:
            headers = response_headers(status, list(extra), 0)
            self.core.respond(stream, headers, b"", True, time.monotonic())
            self.core.finish(stream, status, 0, time.perf_counter() - began, time.monotonic())
            self._write_out()
        self.hand_over()

    # -- writing: one writer per connection -------------------------------------------------------

    def _write_out(self) -> None:
        """Append what the core framed to the outbox, in order (the lock is held)."""
        data = self.core.output()
        if not data or self.lost:
            return
        try:
            self.outbox.send(data)
        except OSError:
            self.outbox.clear()
            self.lost = True

    def hand_over(self) -> None:
        """After a worker wrote: what the socket did not take goes to the owner (pool), or
        this thread waits for the socket (models without an I/O thread)."""
        if not self.outbox.unsent:
            return
        runner = self.settings.exchanges
        if runner is not None and runner.flush_later(self.raw):
            return
        self._drain()

    def _drain(self) -> None:
        """Wait until the outbox is empty, flushing as the socket takes more."""
        while True:
            with self.lock:
                if self.lost or not self.outbox.unsent:
                    return
                try:
                    if self.outbox.flush_all():
                        return
                except OSError:
                    self.outbox.clear()
                    self.lost = True
                    return
                left = self.outbox.unsent_deadline() - time.monotonic()
            if left <= 0 or not wait_writable(self.raw, left):
                self._drop()
                return

    def wait_for(self, stream: H2Stream, ready: Any) -> None:
        """Wait (the lock held) until ``ready()`` or the stream is gone; StreamGone if it
        goes, or if ``ready()`` is not so within --timeout-io (a body that stalls, a peer
        that dribbles its window open: CVE-2019-9511): the stream is then reset."""
        if not self.wait_until(stream, ready, self.settings.timeout_io):
            self.core.fail(stream)
            self._write_out()
            raise StreamGone("the stream made no progress for --timeout-io")

    def wait_for_room(self, stream: H2Stream) -> None:
        """A streamed response (or a WebSocket's sends) waits while too much of it is
        queued, for the peer's window or for the socket (the lock is taken here)."""
        with self.lock:
            self.wait_for(
                stream,
                lambda: (
                    self.core.queued(stream) <= STREAM_QUEUE_MAX
                    and self.outbox.waiting <= STREAM_QUEUE_MAX
                ),
            )

    def wait_until(self, stream: H2Stream, ready: Any, timeout: float | None) -> bool:
        """Wait (the lock held) until ``ready()`` (True) or ``timeout`` passes (False);
        StreamGone once the stream or the connection is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            if stream.reset or self.lost:
                raise StreamGone("the stream was reset or the connection lost")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self.settings.exchanges is None:
                self._read_here(left)  # this thread is the connection's owner (single)
            else:
                self.waiting += 1
                try:
                    self.changed.wait(left)
                finally:
                    self.waiting -= 1
        if stream.reset or self.lost:
            raise StreamGone("the stream was reset or the connection lost")
        return True

    def _read_here(self, timeout: float | None) -> None:
        """Without a runner the thread running an exchange also owns the connection: it
        reads and feeds the next bytes itself (the lock held on entry and on return);
        requests that become ready meanwhile wait their turn in ``inline``."""
        self.lock.release()
        try:
            if not wait_readable(self.raw, timeout):
                return
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return  # (TLS: not a whole record yet)
            except OSError:
                data = b""
            self.feed(data)
        finally:
            self.lock.acquire()


class StreamSink:
    """Where a WSGI app's response for one stream goes (``interfaces.wsgi`` calls it)."""

    __slots__ = ("session", "stream")

    def __init__(self, session: H2Session, stream: H2Stream) -> None:
        self.session = session
        self.stream = stream

    def respond(self, headers: list[tuple[bytes, bytes]], body: bytes, end: bool) -> None:
        session = self.session
        with session.lock:
            ok = session.core.respond(self.stream, headers, body, end, time.monotonic())
            session._write_out()
        if not ok:
            raise StreamGone("the stream was reset")
        self._after_write(end)

    def send(self, data: bytes, end: bool) -> None:
        session = self.session
        with session.lock:
            ok = session.core.send_body(self.stream, data, end, time.monotonic())
            session._write_out()
        if not ok:
            raise StreamGone("the stream was reset")
        self._after_write(end)

    def _after_write(self, end: bool) -> None:
        """A streamed response waits while too much of it is queued (for the peer's
        window or for the socket); a whole one never waits here."""
        session, stream = self.session, self.stream
        session.hand_over()
        if end:
            return
        session.wait_for_room(stream)

    def reset(self) -> None:
        """The app failed after its response began: the stream is reset."""
        session = self.session
        with session.lock:
            session.core.fail(self.stream)
            session._write_out()
        session.hand_over()


class StreamBody:
    """``wsgi.input``'s source for one stream: the owner brings the bytes, the app takes."""

    __slots__ = ("session", "stream")

    def __init__(self, session: H2Session, stream: H2Stream) -> None:
        self.session = session
        self.stream = stream

    def receive_more(self, body: RequestBody) -> bool:
        session, stream = self.session, self.stream
        with session.lock:
            session.core.continue_(stream)
            session._write_out()
            try:
                session.wait_for(stream, lambda: body.buffered or body.complete or body.truncated)
            except StreamGone:
                return False
            return bool(body.buffered)

    def send(self, data: bytes) -> None:
        """``100 Continue`` (the reader's HTTP/1.1 bytes are not sent: HTTP/2 frames it)."""
        session = self.session
        with session.lock:
            session.core.continue_(self.stream)
            session._write_out()

    def take(self, body: RequestBody, size: int) -> bytes:
        session = self.session
        with session.lock:
            data = session.core.take_body(self.stream, size)
            session._write_out()
        session.hand_over()
        return data


class StreamLink(BlockingLink):
    """A sync WebSocket handler's link over an HTTP/2 stream (RFC 8441): the same
    :class:`WSSession` and rules as over a socket, the stream's body as its input (the
    window given back as it reads) and DATA frames as its output."""

    def __init__(
        self,
        session: H2Session,
        stream: H2Stream,
        conn: WebSocketConnection,
        request: Any,
        settings: WSSettings,
    ) -> None:
        self._h2 = session
        self._stream = stream
        self.sent = 0
        super().__init__(session.raw, conn, request, session.addr, settings)

    def _read(self, wait: float | None) -> bytes | None:
        """The stream's body bytes within ``wait`` (b"": the stream ended), or None."""
        session, stream = self._h2, self._stream
        body = stream.request.body
        with session.lock:
            try:
                came = session.wait_until(stream, lambda: body.buffered or body.complete, wait)
            except StreamGone:
                came, body.complete = True, True
            data = session.core.take_body(stream, -1) if came else None
            session._write_out()
        session.hand_over()
        return data

    def _send_all(self, data: bytes) -> None:
        session, stream = self._h2, self._stream
        with session.lock:
            ok = session.core.send_body(stream, data, False, time.monotonic())
            session._write_out()
        if not ok:
            raise StreamGone("the stream was reset")
        self.sent += len(data)
        session.hand_over()
        session.wait_for_room(stream)
