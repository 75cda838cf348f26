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
        self._fields: dict[bytes, bytes] = {}

    def header_value(self) -> bytes:
        second = int(self._clock())
        if second != self._second:
            self._refresh(second)
        return self._value

    def fields(self, server_header: bytes) -> bytes:
        """The ``Date`` and ``Server`` field lines together, as most responses end."""
        second = int(self._clock())
        if second != self._second:
            self._refresh(second)
        lines = self._fields.get(server_header)
        if lines is None:
            lines = b"Date: %s\r\nServer: %s\r\n" % (self._value, server_header)
            if len(self._fields) < 8:
                self._fields[server_header] = lines
        return lines

    def _refresh(self, second: int) -> None:
        self._second = second
        self._value = formatdate(second, usegmt=True).encode("ascii")
        self._fields = {}


#: The cache response heads use; tests inject their own clock into a DateCache of their own.
DEFAULT_DATES = DateCache()
