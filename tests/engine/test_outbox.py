"""The outbox (engine/outbox.py) on a real socket pair: no copy, order kept, the rate rule."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from threadloom.engine.outbox import Outbox, SendBudget, file_segment


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    server.setblocking(False)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield server, client
    server.close()
    client.close()


def test_what_the_socket_does_not_take_waits_without_a_copy(
    pair: tuple[socket.socket, ...],
) -> None:
    server, client = pair
    outbox = Outbox(server, grace=30.0, min_rate=1024)
    body = bytes(range(256)) * 4096  # 1 MiB
    outbox.send_parts(b"HEAD\r\n\r\n", body)
    assert outbox.waiting > 0
    assert all(getattr(view, "obj", None) is body for view in list(outbox.parts)[-1:]), "a copy"
    outbox.send(b"NEXT")  # behind what waits, in order
    received, total = bytearray(), 8 + len(body) + 4
    while len(received) < total:
        outbox.flush()
        received += client.recv(65536)
    assert not outbox
    assert bytes(received) == b"HEAD\r\n\r\n" + body + b"NEXT"


def test_a_reader_below_the_rate_runs_out_of_budget() -> None:
    budget = SendBudget(grace=2.0, min_rate=100)
    budget.behind(now=10.0)
    assert budget.deadline() == 12.0  # the grace, nothing taken yet
    budget.took(100, now=11.0)
    assert budget.deadline() == 13.0  # + a second per min_rate bytes taken
    budget.took(1000, now=11.5)
    assert budget.deadline() == 13.5  # never more than the grace without a byte
    off = SendBudget(grace=2.0, min_rate=0)
    off.behind(now=10.0)
    off.took(1, now=15.0)
    assert off.deadline() == 17.0  # the rate off: only the stall bound


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_file_waits_behind_the_head_and_is_sent_by_the_kernel(
    pair: tuple[socket.socket, ...], tmp_path: Path
) -> None:
    server, client = pair
    content = bytes(range(256)) * 2048  # 512 KiB
    path = tmp_path / "download.bin"
    path.write_bytes(content)
    outbox = Outbox(server, grace=30.0, min_rate=1024)
    head = b"HEAD" * 4096  # fills the socket: the file must wait behind it
    before = _open_fds()
    outbox.send(head)
    with path.open("rb") as file:
        file.seek(1000)
        outbox.send_file(file_segment(file, len(content)))  # (clamped to the file's end)
    # the app's file is closed; the outbox sends from a descriptor of its own
    assert outbox.waiting > len(content) - 1000  # part of the head and all of the file
    assert _open_fds() == before + 1
    outbox.send(b"NEXT")
    received, total = bytearray(), len(head) + len(content) - 1000 + 4
    while len(received) < total:
        outbox.flush()
        received += client.recv(65536)
    assert not outbox
    assert bytes(received) == head + content[1000:] + b"NEXT"
    assert _open_fds() == before  # the descriptor went with the last byte


def test_a_dropped_reader_releases_the_waiting_file(
    pair: tuple[socket.socket, ...], tmp_path: Path
) -> None:
    server, _ = pair
    path = tmp_path / "download.bin"
    path.write_bytes(b"x" * 1_000_000)
    outbox = Outbox(server, grace=30.0, min_rate=1024)
    before = _open_fds()
    with path.open("rb") as file:
        outbox.send_file(file_segment(file, 1_000_000))
    assert outbox.waiting > 0 and _open_fds() == before + 1
    outbox.clear()
    assert _open_fds() == before
