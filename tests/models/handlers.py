"""Handlers exactly as the tutorial writes them (print calls aside), plus a few for faults."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from typing import Any


def handle_client(client_socket: socket.socket, addr: Any) -> None:
    """Tutorial sections 1-3."""
    data = client_socket.recv(1024).decode()
    assert data
    client_socket.send(b"Hello from server!")
    client_socket.close()


class RequestHandler(socketserver.BaseRequestHandler):
    """Tutorial section 4."""

    def handle(self) -> None:
        self.request.recv(1024).decode()
        self.request.sendall(b"Hello from server!")


async def handle_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Tutorial section 7."""
    data = await reader.read(100)
    data.decode()
    writer.write(b"Hello from server!")
    await writer.drain()
    writer.close()


def slow_handler(client_socket: socket.socket, addr: Any) -> None:
    """Answers after half a second, like a handler that waits on a database."""
    client_socket.recv(1024)
    time.sleep(0.5)
    client_socket.sendall(b"slow hello")
    client_socket.close()


async def slow_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The async twin of slow_handler."""
    await reader.read(100)
    await asyncio.sleep(0.5)
    writer.write(b"slow hello")
    await writer.drain()
    writer.close()


def raising_handler(client_socket: socket.socket, addr: Any) -> None:
    """Fails on a message that says so, echoes otherwise."""
    data = client_socket.recv(1024)
    if data == b"boom":
        raise RuntimeError("the handler blew up")
    client_socket.sendall(b"echo:" + data)


async def raising_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The async twin of raising_handler."""
    data = await reader.read(100)
    if data == b"boom":
        raise RuntimeError("the handler blew up")
    writer.write(b"echo:" + data)
    await writer.drain()
    writer.close()


class Gate:
    """Holds handlers inside until released, counting how many are in at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def handler(self, client_socket: socket.socket, addr: Any) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        client_socket.sendall(b"in")
        self.release.wait(10)
        with self.lock:
            self.inside -= 1
        client_socket.close()


def echo_until_closed(client_socket: socket.socket, addr: Any) -> None:
    """Holds its connection open, echoing, until the client leaves."""
    while data := client_socket.recv(1024):
        client_socket.sendall(data)
