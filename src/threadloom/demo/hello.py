"""The tutorial's hello handler (sections 1-3), served when no APP is given."""

from __future__ import annotations

import socket
from typing import Any


def handle_client(client_socket: socket.socket, addr: Any) -> None:
    """Read one message, answer ``Hello from server!``, close: the tutorial, as written."""
    client_socket.recv(1024)
    client_socket.send(b"Hello from server!")
    client_socket.close()
