"""The access log, in the common log format, cheap enough for the hot path.

The timestamp is formatted at most once a second, and request fields are escaped so control
characters and terminal escapes sent by a client can never reach an operator's terminal raw
(uvicorn CVE-2020-7694).
"""

from __future__ import annotations

import logging
import re
import time

log = logging.getLogger("threadloom.access")

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def escape(raw: bytes) -> str:
    """Printable ASCII stays; anything else becomes ``\\xNN``. Linear, never backtracks."""
    if _UNSAFE.search(raw) is None:
        return raw.decode("ascii")
    return _UNSAFE.sub(lambda m: b"\\x%02x" % m[0][0], raw).decode("ascii")


class AccessLog:
    """Writes one line per request when the ``threadloom.access`` logger is enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._second = -1
        self._stamp = ""

    def active(self) -> bool:
        """Whether a line would be written (checked before building anything)."""
        return self.enabled and log.isEnabledFor(logging.INFO)

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
            self._second = second
        return self._stamp

    def write(
        self, client: object, method: str, target: bytes, version: str, status: int, size: int
    ) -> None:
        """``host - - [time] "METHOD target HTTP/x" status size``."""
        host = client[0] if isinstance(client, tuple) else "-"
        log.info(
            '%s - - [%s] "%s %s HTTP/%s" %d %s',
            host,
            self._now(),
            escape(method.encode()),
            escape(target),
            version,
            status,
            size or "-",
        )
