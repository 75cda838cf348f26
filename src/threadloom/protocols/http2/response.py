"""A response's header list for HTTP/2: the same field rules as HTTP/1.1, other framing.

A field's name and value are checked by the HTTP/1.1 rules (``protocols/http1/response``:
the token characters, no CR, LF or NUL), so an app's bad header is refused the same way
under both protocols (a 500, nothing of it on the wire). What differs is HTTP/2's own:
names go lower-case, the connection-specific fields (``Connection``, ``Keep-Alive``,
``Proxy-Connection``, ``Transfer-Encoding``, ``Upgrade``) are dropped (RFC 9113 8.2.2
forbids them), the status is the ``:status`` pseudo-header, and ``Date`` and ``Server``
are added unless the app gave them, as over HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Iterable

from threadloom.errors import LocalProtocolError
from threadloom.protocols.http1.dates import DEFAULT_DATES
from threadloom.protocols.http1.response import (
    SERVER,
    app_length,
    check_whole_length,
    checked_field,
)

#: what a field's name means here; any other name is _PLAIN
_PLAIN, _DROPPED, _DATE, _SERVER, _LENGTH = range(5)
_KINDS = dict.fromkeys(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"),
    _DROPPED,
) | {b"date": _DATE, b"server": _SERVER, b"content-length": _LENGTH}
_STATUS = {code: str(code).encode("ascii") for code in range(100, 600)}
_SERVER_FIELD = (b"server", SERVER)
#: fields checked before, by the app's (name, value): an app sends the same few on every
#: response, so each is checked once (bounded as HTTP/1.1's lines are: ``checked_field``)
_FIELDS: dict[tuple[str | bytes, str | bytes], tuple[tuple[bytes, bytes], int]] = {}


def _pair(bname: bytes, bvalue: bytes) -> tuple[tuple[bytes, bytes], int]:
    """What HTTP/2 keeps of a field HTTP/1.1's rule checked: lower-cased, and its kind."""
    bname = bname.lower()
    return (bname, bvalue), _KINDS.get(bname, _PLAIN)


def response_headers(
    status: int,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    length: int | None = None,
    *,
    exact: bool = False,
) -> list[tuple[bytes, bytes]]:
    """``:status``, the app's fields (checked, lower-cased, connection-specific ones
    dropped), then ``date``, ``server`` and ``content-length`` (when ``length`` is given
    and the app set none) unless present. Raises LocalProtocolError for a bad field, and,
    when ``exact`` (a body of ``length`` bytes follows), for an app's content-length other
    than ``length``: HTTP/1.1's rule for a whole body (``http1.whole_head``)."""
    code = _STATUS.get(status)
    if code is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid status {status!r}")
        code = str(status).encode("ascii")
    out = [(b":status", code)]
    seen = 0  # the kinds present, as bits
    given: int | None = None  # the app's content-length
    for name, value in headers:
        field, kind = checked_field(_FIELDS, name, value, _pair)
        if kind != _DROPPED:
            seen |= 1 << kind
            out.append(field)
            if kind == _LENGTH:
                given = app_length(field[1], given)
    if exact and given is not None and length is not None:
        check_whole_length(given, length)
    if not seen & (1 << _DATE):
        out.append((b"date", DEFAULT_DATES.header_value()))
    if not seen & (1 << _SERVER):
        out.append(_SERVER_FIELD)
    if length is not None and not seen & (1 << _LENGTH) and status not in (204, 304):
        out.append((b"content-length", str(length).encode("ascii")))
    return out
