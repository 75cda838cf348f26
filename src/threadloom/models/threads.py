"""``threads``: the tutorial's section 2. A new thread for every connection.

Each connection's thread runs the engine's blocking pump from accept to close. The number of
threads is capped by ``--max-connections``: at the cap the accept loop stops accepting (the
kernel backlog queues new clients) until a connection ends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from threadloom.engine.session import ExchangeRunner, run_blocking
from threadloom.models.base import ThreadModel


class ThreadsModel(ThreadModel):
    """One thread per connection, up to ``--max-connections``."""

    name = "threads"

    def describe(self) -> str:
        return f"threads (one per connection, at most {self.config.max_connections})"

    def serve(self) -> None:
        self.ready.set()
        try:
            while not self.stopping.is_set():
                timeout = self.gate.update()
                for key, _ in self.selector.select(timeout):
                    if key.data is None:
                        self.waker.drain()
                    elif not self.stopping.is_set():
                        for sock, addr in self.gate.accept(key.data):
                            self._spawn(sock, addr)
        finally:
            self.finish()

    def exchanges(self) -> ExchangeRunner:
        return _ThreadPerExchange()

    def _spawn(self, sock: socket.socket, addr: Any) -> None:
        session = self.service.session(sock, addr)
        self.connections.add(sock, session)
        thread = threading.Thread(
            target=self._run,
            args=(session, sock),
            daemon=True,
            name=f"threadloom-conn-{sock.fileno()}",
        )
        try:
            thread.start()
        except RuntimeError:  # can't start new thread: the OS said no; lose one client, not all
            self.connections.remove(sock)
            session.close()

    def _run(self, session: Any, sock: socket.socket) -> None:
        try:
            run_blocking(session, sock)
        finally:
            self.connections.remove(sock)


class _ThreadPerExchange:
    """``threads`` runs each exchange of a multiplexed connection (HTTP/2) on a thread of
    its own, as it runs each connection; the connection's stream limit bounds them."""

    def submit(self, work: Callable[[], None]) -> bool:
        try:
            threading.Thread(target=work, daemon=True, name="threadloom-stream").start()
        except RuntimeError:  # can't start new thread: refuse this stream, not the others
            return False
        return True

    def flush_later(self, sock: socket.socket) -> bool:
        return False  # no I/O thread: the thread that wrote waits for the socket
