"""Raw TCP interfaces: how the tutorial's handlers are called, unchanged.

* ``handle_client(client_socket, addr)`` (tutorial sections 1-3): called with a blocking
  socket it owns; it may close it, or leave that to us.
* a ``socketserver.BaseRequestHandler`` subclass (section 4): instantiated per connection as
  socketserver does (``Handler(request, client_address, server)``), which runs ``setup``,
  ``handle`` and ``finish``.
* ``async handle_client(reader, writer)`` (section 7): called with asyncio streams.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from threadloom.loading import LoadedApp

SocketHandler = Callable[[socket.socket, Any], None]


class HandlerServer:
    """What a socketserver handler sees as ``self.server``: its address, nothing to misuse."""

    def __init__(self, server_address: Any) -> None:
        self.server_address = server_address


def socket_handler(loaded: LoadedApp) -> SocketHandler:
    """A ``(sock, addr)`` callable for a sync raw app of either shape."""
    app = loaded.app
    if loaded.kind == "raw.socket":
        return app  # type: ignore[no-any-return]

    def run_handler_class(sock: socket.socket, addr: Any) -> None:
        try:
            server_address = sock.getsockname()
        except OSError:
            server_address = None
        app(sock, addr, HandlerServer(server_address))

    return run_handler_class
