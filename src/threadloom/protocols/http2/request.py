"""A request head from an HTTP/2 header list, whichever core decoded it."""

from __future__ import annotations

from collections.abc import Iterable

from threadloom.protocols.http1 import Request

#: the usual methods' names as text, made once (any other is decoded per request)
_METHODS = {
    name.encode("ascii"): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT")
}


def request_from_fields(headers: Iterable[tuple[bytes, bytes]]) -> Request | None:
    """A :class:`Request` (``http_version`` ``"2"``) from a header list the core validated
    (pseudo-headers first); None if ``host`` is repeated or disagrees with ``:authority``.

    A ``host`` field is made from ``:authority`` when the client sent none, and split
    ``cookie`` fields are joined with ``"; "`` (RFC 9113 8.2.3), as apps written for
    HTTP/1.1 expect one Cookie field.
    """
    request = Request()
    request.http_version = "2"
    request.keep_alive = True
    authority = host = None
    cookies: list[bytes] = []
    fields = request.headers
    for name, value in headers:
        if name[0] == 58:  # b":"
            if name == b":method":
                request.method = _METHODS.get(value) or value.decode("latin-1")
            elif name == b":path":
                request.set_target(value)
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                request.upgrade = value
            continue
        if name == b"host":
            if host is not None:
                return None  # two: h2 refuses them as well
            host = value
        elif name == b"cookie":
            cookies.append(value)
            continue
        elif name == b"content-length" and value.isdigit():
            request.content_length = int(value)
        fields.append((name, value))
    if host is None:
        if authority is not None:
            fields.insert(0, (b"host", authority))
    elif authority is not None and host != authority:
        return None
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    return request
