"""Raw-socket HTTP helpers for the tests: exact bytes out, a response parsed back."""

from __future__ import annotations

import socket
from typing import Any

from threadloom.testing import timeout_factor


def connect(address: Any, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address)
    sock.settimeout(timeout * timeout_factor())
    return sock


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head


def read_response(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> Response:
    """Read one response from ``sock`` (leftover bytes stay in ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full head: {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or status in (100, 204, 304):
        return Response(status, headers, b"", head)
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffer) < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            buffer += chunk
        body = bytes(buffer[:size])
        del buffer[:size]
    elif headers.get("transfer-encoding") == "chunked":
        body = _read_chunked(sock, buffer)
    else:
        while chunk := sock.recv(65536):
            buffer += chunk
        body = bytes(buffer)
        buffer.clear()
    return Response(status, headers, body, head)


def _read_chunked(sock: socket.socket, buffer: bytearray) -> bytes:
    out = bytearray()
    while True:
        while b"\r\n" not in buffer:
            buffer += _recv(sock)
        line_end = buffer.index(b"\r\n")
        size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
        del buffer[: line_end + 2]
        while len(buffer) < size + 2:
            buffer += _recv(sock)
        out += buffer[:size]
        del buffer[: size + 2]
        if size == 0:
            return bytes(out)


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed mid-chunk")
    return chunk


def exchange(address: Any, raw: bytes, count: int = 1) -> list[Response]:
    """Send raw bytes, read ``count`` responses."""
    with connect(address) as sock:
        sock.sendall(raw)
        buffer = bytearray()
        return [read_response(sock, buffer) for _ in range(count)]


def closed_after(sock: socket.socket) -> bool:
    """True when the server has closed (EOF or reset) and sends nothing more."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
