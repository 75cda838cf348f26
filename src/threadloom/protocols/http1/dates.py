"""The ``Date`` header, formatted at most once a second (per-request formatting costs ~15%)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate


class DateCache:
    """``header_value()`` returns today's IMF-fixdate, recomputed when the second changes."""

    __slots__ = ("_clock", "_fields", "_second", "_value")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""
        self._fields: dict[bytes, tuple[bytes, bytes]] = {}

    def header_value(self) -> bytes:
        now = self._clock()
        if not self._second <= now < self._second + 1:  # a new second (or the clock went back)
            self._refresh(int(now))
        return self._value

    def fields(self, server_header: bytes, end: bytes = b"") -> bytes:
        """The ``Date`` and ``Server`` field lines, then ``end``: how most heads end."""
        now = self._clock()
        if not self._second <= now < self._second + 1:  # a new second (or the clock went back)
            self._refresh(int(now))
        entry = self._fields.get(end)  # a server has one Server value: keyed by end alone
        if entry is not None and entry[0] is server_header:
            return entry[1]
        lines = b"Date: %s\r\nServer: %s\r\n%s" % (self._value, server_header, end)
        if len(self._fields) < 16:
            self._fields[end] = (server_header, lines)
        return lines

    def _refresh(self, second: int) -> None:
        self._second = second
        self._value = formatdate(second, usegmt=True).encode("ascii")
        self._fields = {}


#: The cache response heads use; tests inject their own clock into a DateCache of their own.
DEFAULT_DATES = DateCache()
