"""The access log: common, combined or JSON lines, cheap enough for the hot path.

Nothing is built unless a line will be written (:meth:`AccessLog.active` is checked first).
Timestamps are formatted at most once a second. Request fields are escaped so control
characters and terminal escapes sent by a client can never reach an operator's terminal raw
(uvicorn CVE-2020-7694): ``\\xNN`` in the text formats, JSON's own escapes (ASCII only) in
``json``.

Formats (``--access-log-format``):

* ``common``: ``host - - [time] "METHOD target HTTP/x" status size``
* ``combined``: common, then ``"referer" "user-agent"`` (Apache's and nginx's default)
* ``json``: one object per line with ``time`` (ISO 8601, UTC, milliseconds), ``remote``,
  ``method``, ``path`` (the request target, query included), ``protocol``, ``status``,
  ``size``, ``duration_ms``, ``request_id``, ``worker`` (the process id), ``user_agent`` and
  ``referer``. The line is the log record's whole message; the CLI gives it a handler that
  writes nothing else. ``request_id`` is the id the server gave the request (``--request-id``)
  or, when ids are off, the X-Request-ID the client or proxy sent, if sane; else null.

``remote`` is the client as the app sees it: after the PROXY header and a trusted proxy's
X-Forwarded-For.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

from threadloom.protocols.forwarded import sane_request_id
from threadloom.protocols.http1 import Request

log = logging.getLogger("threadloom.access")
#: HTTP/2's version as access logs write it (nginx, Apache): ``HTTP/2.0``.
_VERSIONS = {"2": "2.0"}

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def escape(raw: bytes) -> str:
    """Printable ASCII stays; anything else becomes ``\\xNN``. Linear, never backtracks."""
    if _UNSAFE.search(raw) is None:
        return raw.decode("ascii")
    return _UNSAFE.sub(lambda m: b"\\x%02x" % m[0][0], raw).decode("ascii")


def _header(request: Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return value
    return None


def _host(client: Any) -> str:
    if isinstance(client, str):
        return client or "-"
    return str(client[0]) if isinstance(client, tuple) else "-"


class AccessLog:
    """Writes one line per request when the ``threadloom.access`` logger is enabled."""

    def __init__(self, enabled: bool, format: str = "common") -> None:
        self.enabled = enabled
        self.format = format
        self._second = -1
        self._stamp = ""
        self._iso = ""

    def active(self) -> bool:
        """Whether a line would be written (checked before building anything)."""
        return self.enabled and log.isEnabledFor(logging.INFO)

    def _tick(self) -> float:
        now = time.time()
        second = int(now)
        if second != self._second:
            stamp = time.gmtime(second)
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", stamp)
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", stamp)
            self._second = second
        return now

    def write(
        self,
        request: Request,
        client: Any,
        status: int,
        size: int,
        duration: float = 0.0,
        request_id: str | None = None,
    ) -> None:
        """One line for one exchange; ``client`` is an address tuple or the remote as text."""
        if self.format == "json":
            self._json(request, client, status, size, duration, request_id)
            return
        self._tick()
        line = '%s - - [%s] "%s %s HTTP/%s" %d %s'
        args: tuple[Any, ...] = (
            _host(client),
            self._stamp,
            escape(request.method.encode()),
            escape(request.target),
            _VERSIONS.get(request.http_version, request.http_version),
            status,
            size or "-",
        )
        if self.format == "combined":
            line += ' "%s" "%s"'
            referer = _header(request, b"referer")
            agent = _header(request, b"user-agent")
            args += (
                "-" if referer is None else escape(referer),
                "-" if agent is None else escape(agent),
            )
        log.info(line, *args)

    def _json(
        self,
        request: Request,
        client: Any,
        status: int,
        size: int,
        duration: float,
        request_id: str | None,
    ) -> None:
        now = self._tick()
        if request_id is None:  # ids are off (--request-id): the client's or proxy's, if sane
            given = _header(request, b"x-request-id")
            text = None if given is None else given.decode("latin-1")
            request_id = text if text is not None and sane_request_id(text) else None
        agent = _header(request, b"user-agent")
        referer = _header(request, b"referer")
        record = {
            "time": f"{self._iso}.{int(now * 1000) % 1000:03d}Z",
            "remote": _host(client),
            "method": request.method,
            "path": request.target.decode("latin-1"),
            "protocol": "HTTP/" + _VERSIONS.get(request.http_version, request.http_version),
            "status": status,
            "size": size,
            "duration_ms": round(duration * 1000, 3),
            "request_id": request_id,
            "worker": os.getpid(),
            "user_agent": None if agent is None else agent.decode("latin-1"),
            "referer": None if referer is None else referer.decode("latin-1"),
        }
        log.info(json.dumps(record, separators=(",", ":")))
