"""TLS for the thread models: OpenSSL over memory buffers, so models keep reading raw bytes.

Theory of operation
-------------------
The models' contract stays as it is (read raw bytes, ``feed`` them, wait for readability on
the socket itself): a :class:`TLSSession` wraps the protocol's session, and OpenSSL works on
two memory buffers (``ssl.MemoryBIO``) instead of the socket. Nothing decrypted can then hide
inside OpenSSL where ``epoll`` cannot see it: every ``feed`` decrypts all it can and hands
all the plaintext on at once.

* Handshake: ``feed`` only stores the client's bytes and asks to SERVE; the handshake runs in
  ``serve``, on a thread that may block (a pool worker, or the connection's own thread), so
  the pool's I/O thread never spends a private-key operation or waits to write. Its
  deadline is ``--timeout-header`` from accept; a failure costs that connection only and is
  logged as one line at debug level (port scanners and plain-HTTP clients are routine).
* After it, the inner session (HTTP, WebSocket) gets a :class:`TLSStream` as its socket:
  ``recv`` and ``send`` have non-blocking socket semantics over plaintext, ``sendfile``
  copies through the encryption, and ``fileno`` is the raw socket's, so the engine's poll
  helpers work unchanged.
* Threads: a WebSocket may be written by any thread while its handler reads. One lock
  covers every use of the OpenSSL object *and* the writing of what it produced, so records
  reach the wire in the order they were sealed.
* While the I/O thread drives the session (``feed``, ``expire``, ``overloaded``), the stream
  is in ``nowait`` mode: what cannot be written at once waits in a backlog, and the session
  asks to SERVE so a worker flushes it. Elsewhere sends wait for the peer up to
  ``--timeout-io``, like plain sockets do (a WebSocket's, a raw handler's).
* Responses go through the inner session's outbox, which sends with
  :meth:`TLSStream.send_some`: it seals the next piece only once the records sealed before
  are all on the wire, and never waits. So a slow reader holds one piece of ciphertext
  (at most ``SEND_PIECE`` and a record's overhead) and no thread: when the records of a
  response's end still wait, the session answers WRITE and the connection's owner flushes
  them (:meth:`TLSSession.flush`) under the same ``--min-send-rate`` rule as plain sockets.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from threadloom.engine.outbox import SendBudget
from threadloom.engine.session import Session, Want
from threadloom.engine.sockio import reset_on_close, send_all
from threadloom.stats import STATS

log = logging.getLogger("threadloom.tls")

READ_CHUNK = 65536
#: Plaintext sealed per step when sending a large buffer, to bound the ciphertext held.
SEAL_CHUNK = 256 * 1024
#: Plaintext sealed per step for the outbox: what a slow reader's connection holds at most
#: in ciphertext (and a record's overhead) while the rest waits, unsealed, in the outbox.
SEND_PIECE = 64 * 1024


class TLSStream:
    """A server-side TLS connection over a non-blocking socket (see the module docstring)."""

    __slots__ = (
        "_backlog",
        "_in",
        "_lock",
        "_out",
        "budget",
        "eof",
        "nowait",
        "sock",
        "ssl",
        "timeout_io",
    )

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        timeout_io: float,
        min_send_rate: int = 0,
    ) -> None:
        self.sock = sock
        # Non-blocking for life, as a plain HTTP session's socket: every wait here is a
        # poll with a deadline. (Accepted sockets come blocking: a send to a slow reader
        # then waited as long as the reader liked, whatever --timeout-io said.)
        sock.setblocking(False)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self._in, self._out, server_side=True)
        self._lock = threading.Lock()
        self._backlog: bytes | memoryview = b""
        self.timeout_io = timeout_io
        #: the slow-read rule while sealed records wait for the reader (see send_some)
        self.budget = SendBudget(timeout_io, min_send_rate)
        #: Set while the I/O thread drives the session: sends never wait, they queue.
        self.nowait = False
        #: The peer ended the TLS session (close_notify) or the TCP connection.
        self.eof = False

    # -- what the session wrapper calls -------------------------------------------------------

    def put(self, raw: bytes) -> None:
        """Store ciphertext (``b""``: EOF) for the handshake to consume."""
        with self._lock:
            self._write_in(raw)

    def handshake(self) -> bool:
        """Advance the handshake; True once complete. Raises ssl.SSLError or OSError."""
        with self._lock:
            try:
                self.ssl.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except (ssl.SSLError, OSError):
                self._flush(wait=False)  # the alert, so the client learns why (best effort)
                raise
            self._flush(wait=True)
        return done

    def decrypt(self, raw: bytes) -> bytes:
        """Feed ciphertext (``b""``: EOF); all the plaintext it completes, never blocking long."""
        with self._lock:
            if self.eof:
                return b""
            self._write_in(raw)
            plain = self._read_all()
            if self._out.pending:  # a reply OpenSSL owes the peer (a key update, an alert)
                try:
                    self._flush(wait=not self.nowait)
                except OSError:  # the peer is gone: what it sent is still worth handing on
                    self.eof = True
        return plain

    def early_data(self) -> bytes:
        """Plaintext that came with the client's last handshake flight."""
        with self._lock:
            return self._read_all()

    @property
    def backlog(self) -> bool:
        """Ciphertext is waiting for the socket to accept it."""
        return bool(self._backlog)

    def flush(self) -> None:
        """Write any backlog, waiting up to ``timeout_io``."""
        with self._lock:
            self._flush(wait=True)

    # -- the socket look-alike the inner session uses -------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        """The raw socket stays non-blocking for life: nothing to change."""

    def settimeout(self, value: float | None) -> None:
        """Sends wait on their own (``timeout_io``): nothing to change."""

    def pending(self) -> int:
        """Decrypted bytes held back: always 0, every read hands over all it decrypts."""
        return 0

    def recv(self, size: int) -> bytes:
        """Plaintext from one raw read of at most ``size`` bytes (so at most ``size`` back).

        Raises BlockingIOError when nothing is readable or only part of a record arrived;
        ``b""`` is EOF.
        """
        with self._lock:
            if self.eof:
                return b""
            self._write_in(self.sock.recv(size))
            plain = self._read_all()
            if self._out.pending:
                self._flush(wait=True)
        if not plain and not self.eof:
            raise BlockingIOError("a partial TLS record: wait for the rest")
        return plain

    def send(self, data: bytes | memoryview) -> int:
        """Seal all of ``data`` and write it (see ``nowait``); returns ``len(data)``."""
        view = memoryview(data)
        with self._lock:
            for start in range(0, len(view), SEAL_CHUNK):
                self.ssl.write(view[start : start + SEAL_CHUNK])
                self._flush(wait=not self.nowait)
        return len(view)

    def sendall(self, data: bytes) -> None:
        self.send(data)

    def send_some(self, data: bytes | memoryview) -> int:
        """Non-blocking socket semantics, for the outbox: seal at most ``SEND_PIECE`` of
        ``data`` once the records sealed before are all written, and return how much was
        sealed; BlockingIOError while they still wait. Never waits."""
        with self._lock:
            self._flush(wait=False)
            if self._backlog:
                raise BlockingIOError("the records sealed before still wait for the reader")
            piece = memoryview(data)[:SEND_PIECE]
            self.ssl.write(piece)
            self._flush(wait=False)
        return len(piece)

    def flush_some(self) -> bool:
        """Write what the socket takes of the sealed records; True once none waits."""
        with self._lock:
            self._flush(wait=False)
            return not self._backlog

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def sendfile(self, file: IO[bytes], offset: int = 0, count: int | None = None) -> int:
        """Copy a file through the encryption (no zero-copy under TLS)."""
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            want = READ_CHUNK if count is None else min(READ_CHUNK, count - sent)
            chunk = file.read(want)
            if not chunk:
                break
            self.send(chunk)
            sent += len(chunk)
        return sent

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        """Say close_notify when it costs nothing (some clients want it), then close."""
        if self._lock.acquire(blocking=False):
            try:
                self.ssl.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
            try:
                self._flush(wait=False)
            except OSError:
                pass
            finally:
                self._lock.release()
        self.sock.close()

    # -- TLS details for the app --------------------------------------------------------------

    def version(self) -> str | None:
        return self.ssl.version()

    def selected_alpn_protocol(self) -> str | None:
        return self.ssl.selected_alpn_protocol()

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self.ssl.getpeercert(binary_form)

    # -- internals (under the lock) ----------------------------------------------------------

    def _write_in(self, raw: bytes) -> None:
        if raw:
            self._in.write(raw)
        else:
            self._in.write_eof()

    def _read_all(self) -> bytes:
        parts = []
        while True:
            try:
                chunk = self.ssl.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            except ssl.SSLError as exc:
                log.debug("TLS error from %s: %s", _peer(self.sock), _reason(exc))
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _flush(self, wait: bool) -> None:
        data: bytes | memoryview = self._out.read()
        backlog = self._backlog
        if backlog:
            data, self._backlog = (bytes(backlog) + data if data else backlog), b""
        if not data:
            return
        if wait:
            send_all(self.sock, bytes(data), self.timeout_io)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        now = time.monotonic()
        if not backlog and sent < len(data):
            self.budget.behind(now)  # the reader has just fallen behind
        elif backlog:
            self.budget.took(sent, now)
        self._backlog = memoryview(data)[sent:] if sent < len(data) else b""


class TLSSession:
    """Runs the handshake, then hands every call to the inner session (module docstring)."""

    __slots__ = ("addr", "after_records", "flush_only", "handshaken", "inner", "stream")

    def __init__(
        self,
        make: Callable[[Any, Any], Session],
        sock: socket.socket,
        addr: Any,
        context: ssl.SSLContext,
        timeout_io: float,
        min_send_rate: int = 0,
    ) -> None:
        self.stream = TLSStream(sock, context, timeout_io, min_send_rate)
        self.addr = addr
        self.handshaken = False
        self.flush_only = False  # SERVE was asked only to write a backlog, not to serve
        #: what the inner session wanted, while the records of its response's end wait
        self.after_records: Want | None = None
        # Made now, so its header deadline (from accept) also bounds the handshake.
        self.inner = make(self.stream, addr)

    def start(self) -> Want:
        return Want.READ

    def feed(self, data: bytes) -> Want:
        stream = self.stream
        if not self.handshaken:
            if not data:
                log.debug("%s closed the connection during the TLS handshake", self.addr)
                return Want.CLOSE
            stream.put(data)
            return Want.SERVE
        stream.nowait = True
        try:
            plain = stream.decrypt(data)
            want = self.inner.feed(plain) if plain or stream.eof else Want.READ
        finally:
            stream.nowait = False
        if want is Want.READ and stream.backlog:
            self.flush_only = True
            return Want.SERVE
        return want

    def serve(self) -> Want:
        if not self.handshaken:
            return self._handshake()
        if self.flush_only:
            self.flush_only = False
            want = Want.READ
        else:
            want = self.inner.serve()
        return self._after_records(want)

    def _after_records(self, want: Want) -> Want:
        """``want``, once the sealed records are all written; else WRITE until they are
        (the inner session's outbox is empty by then: its last piece was sealed)."""
        if want is Want.WRITE or not self.stream.backlog:
            return want
        try:
            if self.stream.flush_some():
                return want
        except OSError:
            return Want.CLOSE
        self.after_records = want
        return Want.WRITE

    def _handshake(self) -> Want:
        try:
            if not self.stream.handshake():
                return Want.READ
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", self.addr, _reason(exc))
            return Want.CLOSE
        self.handshaken = True
        plain = self.stream.early_data()
        if not plain:
            return Want.READ
        want = self.inner.feed(plain)
        return self.serve() if want is Want.SERVE else want

    def flush(self) -> Want:
        after = self.after_records
        if after is None:
            return self._after_records(self.inner.flush())
        try:
            if not self.stream.flush_some():
                return Want.WRITE
        except OSError:
            return Want.CLOSE
        self.after_records = None
        return after

    def deadline(self) -> float | None:
        if self.after_records is not None:
            return self.stream.budget.deadline()
        return self.inner.deadline()

    def expire(self) -> Want:
        if self.after_records is not None:
            log.info("%s reads its response too slowly (--min-send-rate): dropped", self.addr)
            STATS.slow_reader()
            reset_on_close(self.stream.sock)
            return Want.CLOSE
        if not self.handshaken:
            log.debug("TLS handshake with %s timed out (--timeout-header)", self.addr)
            return Want.CLOSE
        self.stream.nowait = True
        try:
            return self.inner.expire()
        finally:
            self.stream.nowait = False

    def overloaded(self) -> None:
        if self.handshaken:  # before it there is no way to say anything
            self.stream.nowait = True
            self.inner.overloaded()

    @property
    def idle(self) -> bool:
        return self.handshaken and self.after_records is None and self.inner.idle

    def close(self) -> None:
        self.inner.close()


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return "?"


def _reason(exc: BaseException) -> str:
    """A short reason: OpenSSL's (``WRONG_VERSION_NUMBER``, ``HTTP_REQUEST``) when it has one."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)


def blocking_handshake(
    sock: socket.socket, context: ssl.SSLContext, timeout: float
) -> ssl.SSLSocket | None:
    """TLS for a raw handler, which owns a blocking socket: handshake within ``timeout``.

    The handler gets an ``SSLSocket`` over a duplicate descriptor, so the model's own socket
    object stays usable: shutting it down on stop still wakes the handler. None on failure.
    """
    tls = context.wrap_socket(sock.dup(), server_side=True, do_handshake_on_connect=False)
    tls.settimeout(max(timeout, 0.001))
    try:
        tls.do_handshake()
    except (ssl.SSLError, OSError) as exc:
        log.debug("TLS handshake with %s failed: %s", _peer(sock), _reason(exc))
        tls.close()
        return None
    tls.settimeout(None)
    return tls
