"""The built-in client's connections: closed-loop HTTP, WebSocket and raw-TCP users.

Each user is one connection with at most one request in flight: send, wait for the whole
answer, record the latency, send the next. Every user of one load adds to one :class:`Tally`,
which knows the measured window (figures count only inside it) and the end of the load (a
little later when unanswered connections are being watched; see ``loadgen.run_load``).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import cast

import httptools

from threadloom.bench import wsframes

WS_MESSAGE = b"x" * 32
RAW_MESSAGE = b"hello from threadloom bench\n"


@dataclass
class Tally:
    """What every user of one run adds to; read once the run is over."""

    stop_at: float  # end of the measured window
    timeout: float
    end_at: float = float("inf")  # end of the load (later, while starved connections are watched)
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("connect", "read", "write", "timeout", "status"), 0)
    )
    answered: set[int] = field(default_factory=set)  # connections answered in the window
    ever: set[int] = field(default_factory=set)  # connections answered at all
    live: set[User] = field(default_factory=set)

    def record(self, user: User, sent_at: float, now: float, status: int = 200) -> None:
        """One complete answer; its figures count only inside the measured window."""
        self.ever.add(user.slot)
        if now > self.stop_at:
            return
        self.latencies.append(now - sent_at)
        self.answered.add(user.slot)
        if status >= 400:
            self.errors["status"] += 1


class User(asyncio.Protocol):
    """One connection of a closed-loop client: at most one request in flight."""

    def __init__(self, tally: Tally, slot: int, limit: int | None = None) -> None:
        self.tally = tally
        self.slot = slot
        self.limit = limit  # requests to make on this connection (None: until stopped)
        self.sent_at = 0.0  # 0 when nothing is in flight
        self.timed_out = False
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.tally.live.add(self)
        self.begin()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.live.discard(self)
        if self.sent_at and time.perf_counter() < self.tally.stop_at:
            self.tally.errors["read"] += 1
        if not self.closed.done():
            self.closed.set_result(None)

    def begin(self) -> None:
        """Start the exchange on a new connection."""
        self.send_next()

    def send_next(self) -> None:
        """Send the next request, or close if the run or this connection's quota is over."""
        assert self.transport is not None
        if self.limit is not None:
            if self.limit == 0:
                self.sent_at = 0.0
                return
            self.limit -= 1
        if time.perf_counter() >= self.tally.end_at:
            self.sent_at = 0.0
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.timed_out = False
        self.write_request()

    def write_request(self) -> None:
        """Write one request (subclasses)."""
        raise NotImplementedError

    def answered(self, status: int = 200) -> None:
        """The answer to the request in flight is complete."""
        self.tally.record(self, self.sent_at, time.perf_counter(), status)
        self.send_next()

    def fail(self) -> None:
        """The peer sent something this client cannot read: count it and drop the connection."""
        self.tally.errors["read"] += 1
        self.sent_at = 0.0
        if self.transport is not None:
            self.transport.abort()


class HttpUser(User):
    """Keep-alive GETs; responses are parsed with httptools, chunked or not."""

    def __init__(self, tally: Tally, slot: int, request: bytes, limit: int | None = None) -> None:
        super().__init__(tally, slot, limit)
        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0

    def write_request(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.parser.should_keep_alive():
            self.answered(self.status)
            return
        # The server closes after this answer: count it, hang up, and let the user reconnect.
        self.tally.record(self, self.sent_at, time.perf_counter(), self.status)
        self.sent_at = 0.0
        assert self.transport is not None
        self.transport.close()


class WsUser(User):
    """WebSocket echo: handshake, then one 32-byte text message in flight at a time."""

    def __init__(self, tally: Tally, slot: int, host: str, path: str) -> None:
        super().__init__(tally, slot)
        self.key = wsframes.new_key()
        self.handshake = wsframes.handshake_request(host, path, self.key)
        self.frame = wsframes.encode(wsframes.OP_TEXT, WS_MESSAGE, os.urandom(4))
        self.buffer = bytearray()
        self.upgraded = False

    def begin(self) -> None:
        assert self.transport is not None
        self.transport.write(self.handshake)

    def write_request(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and not self._finish_handshake():
            return
        for fin, opcode, payload in wsframes.decode(self.buffer):
            if opcode == wsframes.OP_PING:
                assert self.transport is not None
                self.transport.write(wsframes.encode(wsframes.OP_PONG, payload, os.urandom(4)))
            elif opcode == wsframes.OP_CLOSE:
                self.fail()
                return
            elif fin and opcode in (wsframes.OP_TEXT, wsframes.OP_BINARY, wsframes.OP_CONT):
                self.answered(200 if payload == WS_MESSAGE else 500)

    def _finish_handshake(self) -> bool:
        """Check the 101 answer once it is complete; frames may follow it at once."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        del self.buffer[: end + 4]
        if (
            not head.startswith(b"http/1.1 101")
            or wsframes.accept_key(self.key).lower() not in head
        ):
            self.fail()
            return False
        self.upgraded = True
        self.send_next()
        return True


class RawUser(User):
    """The tutorial's exchange: connect, send a line, wait for the first reply, hang up.

    One exchange per connection, timed from the connect to the first reply bytes, so a handler
    that echoes in a loop and one that replies and closes are measured alike.
    """

    def __init__(self, tally: Tally, slot: int) -> None:
        super().__init__(tally, slot, limit=1)

    def write_request(self) -> None:
        assert self.transport is not None
        self.transport.write(RAW_MESSAGE)

    def data_received(self, data: bytes) -> None:
        if self.sent_at:
            self.answered()
            assert self.transport is not None
            self.transport.close()
