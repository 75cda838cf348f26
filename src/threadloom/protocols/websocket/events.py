"""What the WebSocket core reports: the connection's state and the events it parses.

Plain data, no behaviour: the driver matches on these (``match event: case Message(data):``)
and hands them to the interface. ``Event`` is the union ``receive_data`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["CloseReceived", "ConnectionState", "Event", "Message", "Ping", "Pong"]


class ConnectionState(Enum):
    """OPEN; CLOSING (our Close sent, theirs awaited); CLOSED (close the socket)."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class Message:
    """A complete message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(slots=True)
class Ping:
    """The peer pinged; the Pong is already queued (while the connection is open)."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """The peer answered a ping (or sent an unsolicited pong)."""

    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's Close; ``code`` is 1005 when its frame carried none."""

    code: int
    reason: str


Event = Message | Ping | Pong | CloseReceived
