"""Many clients pipelining at once each get their own responses, whole and in order, and a
``Connection: close`` ends the connection only after its response: whatever a model does to
send them (under ``asyncio``, the responses of a busy pass leave together at its end:
engine/cork.py, forced here for every request so that holding is certain)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from threadloom.engine import cork as cork_module
from threadloom.testing import MODELS, running_server, timeout_factor

CLIENTS = 32
PIPELINED = 4


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = scope["path"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Make every request after the first hold its response (no gap is too long, no pass
    too small), and note how many each release let go."""
    monkeypatch.setattr(cork_module, "BUSY_GAP_S", 3600.0)
    monkeypatch.setattr(cork_module, "HOLD_LEAST", 0)
    released: list[int] = []
    release = cork_module.Cork.release

    def noting(self: cork_module.Cork) -> None:
        released.append(len(self._holders))
        release(self)

    monkeypatch.setattr(cork_module.Cork, "release", noting)
    yield released


def read_responses(sock: socket.socket) -> list[bytes]:
    """Every response body until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        bodies.append(rest[:length])
        data = rest[length:]
    return bodies


def one_client(address: Any, n: int, start: threading.Barrier, seen: dict[int, Any]) -> None:
    requests = b"".join(
        b"GET /c%d/r%d HTTP/1.1\r\nHost: x\r\n%s\r\n"
        % (n, r, b"Connection: close\r\n" if r == PIPELINED - 1 else b"")
        for r in range(PIPELINED)
    )
    with socket.create_connection(address, timeout=10 * timeout_factor()) as sock:
        start.wait()
        sock.sendall(requests)
        seen[n] = read_responses(sock)


@pytest.mark.parametrize(
    ("model", "app"),
    [(model, wsgi_app) for model in MODELS] + [("asyncio", asgi_app)],
    ids=[f"{model}-wsgi" for model in MODELS] + ["asyncio-asgi"],
)
def test_pipelining_clients_get_their_own_responses_in_order(
    model: str, app: Any, releases: list[int]
) -> None:
    with running_server(app, model=model, access_log=False) as server:
        start = threading.Barrier(CLIENTS)
        seen: dict[int, Any] = {}
        clients = [
            threading.Thread(target=one_client, args=(server.addresses[0], n, start, seen))
            for n in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(30 * timeout_factor())
    for n in range(CLIENTS):
        assert seen.get(n) == [b"/c%d/r%d" % (n, r) for r in range(PIPELINED)], n
    if model == "asyncio":
        assert sum(releases) > 0, "no response was held: the test did not test the cork"
