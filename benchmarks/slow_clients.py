"""The tutorial's claim, measured: 8 clients of a handler that sleeps 0.5 s, per model.

    .venv/bin/python benchmarks/slow_clients.py

Each model serves the same raw handler (``recv``, ``sleep(0.5)``, ``send``) on a free port
in this process; 8 clients connect at once; the wall time until all 8 have their answer is
printed per model (median of 3 runs).
"""

from __future__ import annotations

import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from threadloom.testing import MODELS, running_server


def slow_handler(client_socket: socket.socket, addr: Any) -> None:
    client_socket.recv(1024)
    time.sleep(0.5)
    client_socket.sendall(b"slow hello")
    client_socket.close()


def one_client(address: Any) -> bytes:
    with socket.create_connection(address) as sock:
        sock.sendall(b"hi")
        return sock.recv(100)


def wall_time(model: str) -> float:
    with running_server(slow_handler, model=model, threads=8) as server:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as clients:
            replies = list(clients.map(lambda _: one_client(server.addresses[0]), range(8)))
        elapsed = time.monotonic() - started
    assert replies == [b"slow hello"] * 8
    return elapsed


def main() -> None:
    print("| model | wall time for 8 clients (median of 3) |")
    print("|---|---:|")
    for model in MODELS:
        times = [wall_time(model) for _ in range(3)]
        print(f"| {model} | {statistics.median(times):.2f} s |")


if __name__ == "__main__":
    main()
