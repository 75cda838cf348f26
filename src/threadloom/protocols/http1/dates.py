"""The ``Date`` header, formatted at most once a second (per-request formatting costs ~15%)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate


class DateCache:
    """``header_value()`` returns today's IMF-fixdate, recomputed when the second changes."""

    __slots__ = ("_clock", "_second", "_value")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def header_value(self) -> bytes:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode("ascii")
        return self._value


#: The cache response heads use; tests inject their own clock into a DateCache of their own.
DEFAULT_DATES = DateCache()
