"""The unit of work is an exchange: a client that pipelines many requests does not keep a
worker to itself while another client waits (docs/architecture.md, "Exchanges")."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from threadloom.testing import CONCURRENT_MODELS, running_server, timeout_factor

PIPELINED = 40
APP_S = 0.02  # each request's work: the pipeline takes PIPELINED * APP_S on one thread


def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(APP_S)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _read_responses(sock: socket.socket, count: int) -> None:
    seen = b""
    while seen.count(b"HTTP/1.1 200 ") < count:
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        seen += data


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_a_long_pipeline_does_not_keep_the_only_worker(model: str) -> None:
    with running_server(slow_app, model=model, threads=1, access_log=False) as server:
        address = server.addresses[0]
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        with (
            socket.create_connection(address) as greedy,
            socket.create_connection(address) as other,
        ):
            greedy.sendall(request * PIPELINED)
            reader = threading.Thread(target=_read_responses, args=(greedy, PIPELINED))
            reader.start()
            time.sleep(APP_S * 3)  # the pipeline is under way
            began = time.monotonic()
            other.sendall(request)
            _read_responses(other, 1)
            waited = time.monotonic() - began
            reader.join(10 * timeout_factor())
    # before, under pool, the other client waited for the whole pipeline (~0.8 s)
    assert waited < PIPELINED * APP_S / 2 * timeout_factor(), f"waited {waited:.3f}s"
