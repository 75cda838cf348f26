"""A handler that never finishes on its own: it waits for a message that never comes."""

import socket
from typing import Any


def handler(client_socket: socket.socket, addr: Any) -> None:
    client_socket.recv(1024)
    client_socket.recv(1024)
