"""``single``: the tutorial's section 1. One connection at a time, start to finish.

A baseline, not a production model: while one client is served, every other one waits in
the kernel backlog. It exists so ``threadloom bench`` can show what the other models buy.
"""

from __future__ import annotations

from threadloom.engine.session import run_blocking
from threadloom.models.base import ThreadModel, log
from threadloom.net.listeners import Listener


class SingleModel(ThreadModel):
    """Accept, serve that connection until it closes, accept the next."""

    name = "single"
    serves_concurrently = False

    def describe(self) -> str:
        return "single (one connection at a time)"

    def serve(self) -> None:
        log.info("model single serves one client at a time; others wait in the backlog")
        self.ready.set()
        try:
            while not self.stopping.is_set():
                timeout = self.gate.update()
                for key, _ in self.selector.select(timeout):
                    if key.data is None:
                        self.waker.drain()
                    elif not self.stopping.is_set():
                        self._serve_waiting(key.data)
        finally:
            self.finish()

    def _serve_waiting(self, listener: Listener) -> None:
        for sock, addr in self.gate.accept(listener, most=1):
            session = self.service.session(sock, addr)
            self.connections.add(sock, session)
            try:
                run_blocking(session, sock)
            finally:
                self.connections.remove(sock)
