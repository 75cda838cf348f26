"""ASGI apps that hand the server a file (``http.response.pathsend``), for both protocols.

The request says what to send, so one app covers every case: the query string is the path
(percent-encoded, given to the server as it is: absolute, relative or missing), and request
headers ask for a status (``x-status``), a Content-Length of the app's own (``x-length``),
a body message before the pathsend (``x-body-first``) or none of the start message
(``x-no-start``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

PATHSEND = "http.response.pathsend"


async def send_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The pathsend the request asks for (see the module docstring)."""
    if scope["type"] != "http":
        return
    if PATHSEND not in scope.get("extensions", {}):
        raise AssertionError("the scope does not offer http.response.pathsend")
    asked = dict(scope["headers"])
    headers = [(b"content-type", b"application/octet-stream")]
    if b"x-length" in asked:
        headers.append((b"content-length", asked[b"x-length"]))
    if b"x-no-start" not in asked:
        status = int(asked.get(b"x-status", b"200"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
    if b"x-body-first" in asked:
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
    path = unquote(scope["query_string"].decode("latin-1"))
    await send({"type": PATHSEND, "path": path})


async def send_not_a_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A pathsend whose path is not a str."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": PATHSEND, "path": b"/etc/hostname"})


class RecordingApp:
    """Starlette's FileResponse for the query string's path, under a middleware that keeps
    the message types the app sends and the extensions its scope offered."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.extensions: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.extensions = dict(scope.get("extensions", {}))

        async def recording_send(message: dict[str, Any]) -> None:
            self.sent.append(message["type"])
            await send(message)

        from starlette.responses import FileResponse  # (the test skips without Starlette)

        path = unquote(scope["query_string"].decode("latin-1"))
        await FileResponse(path)(scope, receive, recording_send)
