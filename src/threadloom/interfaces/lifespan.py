"""ASGI lifespan: run the app's startup before serving and its shutdown after draining.

The lifespan coroutine lives for the whole server. ``startup`` sends
``lifespan.startup`` and waits for ``complete`` or ``failed``; a failure (or an exception
raised during startup) stops the server from starting, with the app's message. An app that
does not speak lifespan (it raises at once on the unknown scope, as the spec allows) is
served without it, and that is logged at debug level only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from threadloom.errors import ConfigError

log = logging.getLogger("threadloom.lifespan")

Message = dict[str, Any]


class Lifespan:
    """Drives one app's lifespan protocol; ``state`` is shared with every request scope."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = True
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except BaseException as exc:
            await self._from_app.put({"type": "threadloom.lifespan.raised", "error": exc})
            if not isinstance(exc, Exception):
                raise
        else:
            await self._from_app.put({"type": "threadloom.lifespan.returned"})

    async def startup(self) -> None:
        """Run startup; raise ConfigError if the app reports failure or raises."""
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._from_app.get()
        kind = reply["type"]
        if kind == "lifespan.startup.complete":
            return
        if kind == "lifespan.startup.failed":
            raise ConfigError(f"application startup failed: {reply.get('message') or 'no reason'}")
        if kind in ("threadloom.lifespan.raised", "threadloom.lifespan.returned"):
            error = reply.get("error")
            self.supported = False
            if error is None:
                log.debug("the app returned from the lifespan scope: serving without lifespan")
                return
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
            log.debug("the app does not support lifespan (%r): serving without it", error)
            return
        raise ConfigError(f"application startup sent an unexpected message: {kind!r}")

    async def shutdown(self) -> None:
        """Run shutdown; failures are logged (the server is stopping anyway)."""
        if not self.supported or self._task is None or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        reply = await self._from_app.get()
        kind = reply["type"]
        if kind == "lifespan.shutdown.failed":
            log.error("application shutdown failed: %s", reply.get("message") or "no reason")
        elif kind == "threadloom.lifespan.raised":
            log.error("application shutdown raised", exc_info=reply["error"])
        await asyncio.gather(self._task, return_exceptions=True)
