"""The ``Date`` header, formatted at most once a second (per-request formatting costs ~15%)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate


class DateCache:
    """``header_value()`` returns today's IMF-fixdate, recomputed when the second changes."""

    __slots__ = ("_clock", "_ends", "_second", "_value")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""
        self._ends: dict[bytes, tuple[bytes, bytes]] = {}

    def header_value(self) -> bytes:
        now = self._clock()
        if not self._second <= now < self._second + 1:  # a new second (or the clock went back)
            self._refresh(int(now))
        return self._value

    def head_end(self, server_header: bytes, connection: bytes) -> bytes:
        """How most heads end: the ``Date`` and ``Server`` lines, ``connection`` (a whole
        ``Connection`` line, or nothing) and the blank line; built once a second."""
        now = self._clock()
        if not self._second <= now < self._second + 1:  # a new second (or the clock went back)
            self._refresh(int(now))
        entry = self._ends.get(connection)  # a server has one Server value: keyed by the rest
        if entry is not None and entry[0] is server_header:
            return entry[1]
        end = b"Date: %s\r\nServer: %s\r\n%s\r\n" % (self._value, server_header, connection)
        if len(self._ends) < 16:
            self._ends[connection] = (server_header, end)
        return end

    def _refresh(self, second: int) -> None:
        self._second = second
        self._value = formatdate(second, usegmt=True).encode("ascii")
        self._ends = {}


#: The cache response heads use; tests inject their own clock into a DateCache of their own.
DEFAULT_DATES = DateCache()
