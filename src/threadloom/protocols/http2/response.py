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
from threadloom.protocols.http1.response import SERVER, check_field

_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_STATUS = {code: str(code).encode("ascii") for code in range(100, 600)}
_SERVER = (b"server", SERVER)


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
    have_date = have_server = have_length = False
    for name, value in headers:
        bname, bvalue = check_field(name, value)
        bname = bname.lower()
        if bname in _CONNECTION_SPECIFIC:
            continue
        if bname == b"date":
            have_date = True
        elif bname == b"server":
            have_server = True
        elif bname == b"content-length":
            have_length = True
            if exact and not (bvalue.isdigit() and int(bvalue) == length):
                raise LocalProtocolError(f"Content-Length {bvalue!r} but a body of {length} bytes")
        out.append((bname, bvalue))
    if not have_date:
        out.append((b"date", DEFAULT_DATES.header_value()))
    if not have_server:
        out.append(_SERVER)
    if length is not None and not have_length and status not in (204, 304):
        out.append((b"content-length", str(length).encode("ascii")))
    return out
