"""The request corpus replayed against live servers, under every model.

Each invalid case must be answered with its status and the connection closed (nothing
after the bad bytes is ever served: no desync); each valid case must be answered 200 by a
hello app, and the server must go on serving either way. One server per model serves
every case, so a case that broke the server would fail the cases after it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.corpus.http1.loader import load_cases
from tests.http1 import apps
from tests.http1.client import read_response
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

pytestmark = pytest.mark.shared_server

INVALID = load_cases("invalid")
VALID = load_cases("valid")


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with running_server(
        apps.echo, model=str(request.param), access_log=False, max_body_size=1024 * 1024
    ) as live:
        yield live
    # a pool shut down without waiting (asyncio's) lets its threads end a moment later
    deadline = time.monotonic() + 5 * timeout_factor()
    while [t for t in threading.enumerate() if t.name.startswith("threadloom")]:
        assert time.monotonic() < deadline, "the shared server left threads running"
        time.sleep(0.05)


def _replay(address: Any, raw: bytes) -> tuple[list[int], bool]:
    """Send a case then EOF; return the statuses answered and whether the server closed."""
    with socket.create_connection(address) as sock:
        sock.settimeout(5 * timeout_factor())
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before the whole case is sent
        buffer = bytearray()
        statuses = []
        while True:
            try:
                statuses.append(read_response(sock, buffer).status)
            except (ConnectionError, OSError):
                return statuses, True


@pytest.mark.parametrize(("name", "raw", "status"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_case_is_refused(server: Server, name: str, raw: bytes, status: int) -> None:
    statuses, closed = _replay(server.addresses[0], raw)
    assert closed
    # a valid request may come first in a case (the smuggled one is what follows it)
    assert statuses and statuses[-1] == status and all(s == 200 for s in statuses[:-1]), (
        f"{name}: answered {statuses}, expected ... {status}"
    )


@pytest.mark.parametrize(("name", "raw", "status"), VALID, ids=[c[0] for c in VALID])
def test_valid_case_is_served(server: Server, name: str, raw: bytes, status: None) -> None:
    statuses, closed = _replay(server.addresses[0], raw)
    if name.startswith("upgrade_"):
        # the hello app declines the upgrade, so the frame bytes sent after the head are
        # read as HTTP and refused: the request itself is served, the garbage is not
        expected = [200] if raw.endswith(b"\r\n\r\n") else [200, 400]
        assert statuses == expected, f"{name}: answered {statuses}"
        return
    if name.startswith("after_"):  # bytes after a closing request: never answered
        assert statuses == [200] and closed, f"{name}: answered {statuses}"
        return
    assert statuses and all(s == 200 for s in statuses), f"{name}: answered {statuses}"
