"""The demo's WebSocket side: ``/live`` pushes the figures, ``/chat`` is a room for everyone.

Both are sync handlers (``def handler(ws)``), so they run under every model: on the thread
that served the Upgrade under ``single``, ``threads`` and ``pool``, on the sync pool under
``asyncio``. Under ``pool`` (and ``asyncio``) each open socket therefore holds one of
``--threads`` threads for its life, which is why the demo starts with more threads than a
plain server (see :mod:`threadloom.demo.runner`).

No thread of our own: ``/live`` paces itself with ``recv(timeout=...)`` on its own thread,
and the chat broadcasts from the thread of whoever spoke (``send`` is thread-safe). So a
stopping server's WebSocket close is all it takes to end everything here.

The chat speaks JSON. A client sends ``{"name": ..., "text": ...}``; everyone receives
``{"type": "message", "name", "text", "at"}``, and ``{"type": "presence", "count"}`` when
someone comes or goes. A newcomer first gets the last :data:`HISTORY` messages.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from threadloom.demo.web import DemoInfo, figures
from threadloom.interfaces.websocket import ConnectionClosed

#: Seconds between two pushes of the figures.
INTERVAL_S = 0.5
#: Messages a newcomer to the chat sees from before they came.
HISTORY = 30
MAX_NAME = 24
MAX_TEXT = 500
#: Close code for a path with no WebSocket behind it (private range, 4000-4999).
NOT_FOUND_CODE = 4404


class ChatRoom:
    """Who is in the room and what was said; any thread may post."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: set[Any] = set()
        self._history: deque[str] = deque(maxlen=HISTORY)

    def serve(self, ws: Any) -> None:
        """One member's life: join, relay each message to everyone, leave."""
        try:
            self._join(ws)
            for raw in ws:
                message = parse_message(raw)
                if message is not None:
                    self.post(message)
        except ConnectionClosed:
            pass
        finally:
            self._leave(ws)

    def post(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every member and keep it for newcomers."""
        text = json.dumps({"type": "message", **message, "at": time.time()})
        with self._lock:
            self._history.append(text)
        self._broadcast(text)

    def _join(self, ws: Any) -> None:
        with self._lock:
            history = list(self._history)
            self._members.add(ws)
        for text in history:
            ws.send(text)
        self._presence()

    def _leave(self, ws: Any) -> None:
        with self._lock:
            self._members.discard(ws)
        self._presence()

    def _presence(self) -> None:
        with self._lock:
            count = len(self._members)
        self._broadcast(json.dumps({"type": "presence", "count": count}))

    def _broadcast(self, text: str) -> None:
        """Send outside the lock (a slow reader must not stall the room); drop the gone."""
        with self._lock:
            members = list(self._members)
        gone = []
        for member in members:
            try:
                member.send(text)
            except ConnectionClosed:
                gone.append(member)
        if gone:
            with self._lock:
                self._members.difference_update(gone)


def parse_message(raw: str | bytes) -> dict[str, str] | None:
    """A chat message from a client, trimmed to size; None for one with nothing to say."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"text": raw}
    if not isinstance(data, dict):
        data = {"text": str(data)}
    name = str(data.get("name") or "guest").strip()[:MAX_NAME] or "guest"
    text = str(data.get("text") or "").strip()[:MAX_TEXT]
    return {"name": name, "text": text} if text else None


def push_figures(ws: Any, info: DemoInfo, interval: float = INTERVAL_S) -> None:
    """Send the figures every ``interval`` seconds until the peer goes away."""
    next_push = time.monotonic()
    try:
        while True:
            ws.send(json.dumps(figures(info)))
            next_push += interval
            wait = next_push - time.monotonic()
            if wait <= 0:  # we fell behind (a slow peer): skip the missed pushes
                next_push = time.monotonic()
                continue
            try:
                ws.recv(timeout=wait)  # anything the page says is ignored; this paces us
            except TimeoutError:
                pass
    except ConnectionClosed:
        return


class DemoSockets:
    """The WebSocket handler: routes by path, since one port serves both sockets."""

    def __init__(self, info: DemoInfo) -> None:
        self.info = info
        self.chat = ChatRoom()

    def __call__(self, ws: Any) -> None:
        path = ws.path.partition("?")[0]
        if path == "/live":
            push_figures(ws, self.info)
        elif path == "/chat":
            self.chat.serve(ws)
        else:
            ws.close(NOT_FOUND_CODE, "no WebSocket here: try /live or /chat")
