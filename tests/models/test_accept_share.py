"""Processes that share a listening socket (``--workers`` without ``--reuse-port``) take one
connection per wake-up, so a burst spreads over the siblings instead of going whole to the
first one awake; a process alone may take up to ``ACCEPT_BURST`` per wake-up. Real sockets,
real connections."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from threadloom.models.base import ACCEPT_BURST, AcceptGate, Connections, ThreadModel
from threadloom.net.listeners import Listener, bind
from threadloom.net.waker import Waker
from threadloom.server import Server
from threadloom.testing import timeout_factor

CLIENTS = 5


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return []


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = bind("127.0.0.1:0")
    listener.sock.setblocking(False)
    yield listener
    listener.sock.close()


@pytest.fixture
def waker() -> Iterator[Waker]:
    waker = Waker()
    yield waker
    waker.close()


def take_all(gate: AcceptGate, listener: Listener) -> list[list[Any]]:
    """Call accept until every client is taken; what each call took."""
    calls: list[list[Any]] = []
    end = time.monotonic() + 10 * timeout_factor()
    while sum(map(len, calls)) < CLIENTS:
        assert time.monotonic() < end, f"took {sum(map(len, calls))} of {CLIENTS}"
        calls.append(gate.accept(listener))
        if not calls[-1]:
            time.sleep(0.01)  # the kernel has yet to finish a handshake
    return calls


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "alone"])
def test_connections_taken_per_wake_up(listener: Listener, waker: Waker, shared: bool) -> None:
    with selectors.DefaultSelector() as selector:
        gate = AcceptGate(selector, [listener], Connections(100, waker), shared)
        take_and_check(gate, listener, shared)


def take_and_check(gate: AcceptGate, listener: Listener, shared: bool) -> None:
    assert gate.per_wake == (1 if shared else ACCEPT_BURST)
    clients = [socket.create_connection(listener.sock.getsockname()) for _ in range(CLIENTS)]
    try:
        calls = take_all(gate, listener)
        taken = [conn for call in calls for conn in call]
        assert len(taken) == CLIENTS  # none lost, none twice
        if shared:
            assert max(map(len, calls)) == 1
        for sock, _ in taken:
            sock.close()
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize(
    ("workers", "reuse_port", "per_wake"),
    [(0, False, ACCEPT_BURST), (1, False, ACCEPT_BURST), (2, False, 1), (2, True, ACCEPT_BURST)],
)
def test_the_model_shares_only_with_sibling_workers(
    workers: int, reuse_port: bool, per_wake: int
) -> None:
    """Only several workers on one socket share it; with --reuse-port each has its own."""
    server = Server(
        hello, model="pool", workers=workers, reuse_port=reuse_port, bind=("127.0.0.1:0",)
    )
    server.start()  # builds the model as each worker process does; serves nothing
    model = server.model
    assert isinstance(model, ThreadModel)
    try:
        assert model.gate.per_wake == per_wake
    finally:
        model.finish()  # (closes the listeners, the poller and the waker)
