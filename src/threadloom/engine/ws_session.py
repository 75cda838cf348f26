"""One WebSocket conversation above the RFC 6455 core: messages, keep-alive and the end.

Theory of operation
-------------------
:class:`WSSession` is sans-I/O, like the core it drives: it never reads a socket, sleeps or
reads the clock. The two adapters, ``engine/ws.py`` (a thread that may block) and
``engine/ws_aio.py`` (the event loop), move bytes, run one timer and run the handler; every
rule of the conversation lives here, once:

* **messages**: the core's events become a queue of whole messages (the core assembles
  fragments and applies the size limit); a Pong ends the wait for our Ping.
* **keep-alive**: after ``ping_interval`` seconds without a byte from the peer a Ping goes
  out; a peer that has not answered it one interval later is closed with 1011.
* **the close handshake**: a Close we send first (the handler's, shutdown's) waits
  ``close_timeout`` for the peer's answer; messages that arrive meanwhile are dropped.
* **the ending**: :attr:`ending` is the ``(code, reason)`` the handler sees, decided by
  :meth:`_end_from_core` and the constants below for every way a conversation ends: the
  peer's Close (1005 when it carried no code), the code the core failed the connection with
  and its reason (1002, 1007, 1009), our own Close when we sent one first, a lost or stalled
  peer (1006), a keep-alive timeout (1011) or shutdown (1001).

The adapter's obligations:

1. Feed every byte read to :meth:`receive` (``b""`` at EOF) and send what it returns at
   once (Pongs, the Close echo), before the handler sees the messages.
2. Send what :meth:`send_message`, :meth:`ping`, :meth:`close` and :meth:`tick` return, in
   order; calls must not overlap (one lock or one owner per session).
3. Call :meth:`tick` once :meth:`deadline` passes (re-read it after every call).
4. Report a dead or stalled transport with :meth:`lost`.
5. Once :attr:`done`, send what is left and close the TCP connection; the handler's next
   ``recv`` raises the ending (:meth:`next_message`).
"""

from __future__ import annotations

import collections

from threadloom.interfaces.websocket import ConnectionClosed, closed_error
from threadloom.protocols.websocket import (
    CloseCode,
    Message,
    Pong,
    WebSocketConnection,
)

#: How long a closing side waits for the peer's Close before giving up on it.
CLOSE_TIMEOUT = 5.0

#: The endings that are not a Close frame's own code and reason.
LOST = (int(CloseCode.ABNORMAL), "connection lost")
STALLED = (int(CloseCode.ABNORMAL), "the peer stopped reading")
PING_TIMEOUT = (int(CloseCode.INTERNAL_ERROR), "keepalive ping timeout")
GOING_AWAY = (int(CloseCode.GOING_AWAY), "server shutting down")
HANDLER_FAILED = (int(CloseCode.INTERNAL_ERROR), "handler failed")
HANDLER_DONE = (int(CloseCode.NORMAL), "")


class WSSession:
    """One WebSocket conversation's rules, driven by an adapter (module docstring)."""

    __slots__ = (
        "_close_by",
        "_interval",
        "_last_heard",
        "_ping_sent_at",
        "_sent",
        "close_timeout",
        "conn",
        "ending",
        "messages",
    )

    def __init__(
        self,
        conn: WebSocketConnection,
        now: float,
        ping_interval: float = 0.0,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.messages: collections.deque[str | bytes] = collections.deque()
        #: The (code, reason) the conversation ended with; None while it goes on.
        self.ending: tuple[int, str] | None = None
        self.close_timeout = close_timeout
        self._interval = ping_interval
        self._last_heard = now
        self._ping_sent_at: float | None = None
        self._sent: tuple[int, str] | None = None  # the Close we sent first
        self._close_by: float | None = None  # when we stop waiting for the peer's Close

    @property
    def done(self) -> bool:
        """True once the conversation is over: hang up after sending what is left."""
        return self.ending is not None

    # -- bytes in -------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> bytes:
        """Feed bytes read (``b""`` = EOF); returns what must be sent at once."""
        conn = self.conn
        self._last_heard = now
        closing = self._sent is not None
        for event in conn.receive_data(data):
            kind = type(event)
            if kind is Message:
                if not closing:
                    self.messages.append(event.data)  # type: ignore[union-attr]
            elif kind is Pong:
                self._ping_sent_at = None
        if conn.closed and self.ending is None:
            self._end_from_core()
        return conn.data_to_send()

    def _end_from_core(self) -> None:
        """The core is closed: by the peer's Close, a violation, or EOF."""
        conn = self.conn
        if self._sent is not None:  # we closed first: the peer's answer only completes it
            self.ending = self._sent
        elif conn.close_code is None or conn.close_code == CloseCode.ABNORMAL:
            self.ending = LOST
        else:
            self.ending = (int(conn.close_code), conn.close_reason)

    def next_message(self) -> str | bytes | None:
        """The oldest unread message; None if none yet; raises the ending once it is over."""
        if self.messages:
            return self.messages.popleft()
        if self.ending is not None:
            raise closed_error(*self.ending)
        return None

    # -- the handler's sends ----------------------------------------------------------------

    def check_open(self) -> None:
        """Raise the ending (or the Close we sent) if the handler may no longer send."""
        ending = self.ending or self._sent
        if ending is not None:
            raise closed_error(*ending)

    def send_message(self, data: str | bytes) -> bytes:
        """The frame for one message; raises ConnectionClosed once closing or closed."""
        self.check_open()
        return self.conn.send_message(data)

    def ping(self, payload: bytes = b"") -> bytes:
        self.check_open()
        return self.conn.send_ping(payload)

    def close(self, code: int, reason: str, now: float) -> bytes:
        """Our Close (``b""`` if one was sent or the conversation is over); its answer is
        awaited ``close_timeout`` seconds, and the handler sees ``(code, reason)``."""
        if self.ending is not None or self.conn.close_sent:
            return b""
        frame = self.conn.send_close(code, reason)  # raises for a code that may not be sent
        self._sent = (code, reason)
        self._close_by = now + self.close_timeout
        self.messages.clear()
        return frame

    def going_away(self, now: float) -> bytes:
        """The server is stopping: Close with 1001."""
        return self.close(*GOING_AWAY, now)

    def finish(self, failed: bool, now: float) -> bytes:
        """The handler returned (or raised, ``failed``) without closing: close for it."""
        return self.close(*(HANDLER_FAILED if failed else HANDLER_DONE), now)

    def lost(self, why: tuple[int, str] = LOST) -> ConnectionClosed:
        """The transport is gone or the peer stopped reading; returns the ending to raise."""
        if self.ending is None:
            self.ending = why
        return closed_error(*self.ending)

    # -- time ---------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`tick` must run next; None while only bytes can move the session."""
        if self.ending is not None:
            return None
        if self._close_by is not None:
            return self._close_by
        if not self._interval:
            return None
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self._interval
        return self._last_heard + self._interval

    def tick(self, now: float) -> bytes:
        """Time has passed: ping a silent peer, give up on one that does not answer, or
        stop waiting for the answer to our Close. Returns what to send."""
        due = self.deadline()
        if due is None or now < due:
            return b""
        if self._close_by is not None:
            self.ending = self._sent
            return b""
        if self._ping_sent_at is None:
            self._ping_sent_at = now
            return self.conn.send_ping(b"")
        frame = self.conn.send_close(*PING_TIMEOUT)
        self._sent = self.ending = PING_TIMEOUT
        return frame
