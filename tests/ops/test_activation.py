"""systemd socket activation: LISTEN_FDS/LISTEN_PID, as systemd passes them, and no --bind."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.ops.support import Proc, get, pids_answering

Spawn = Callable[..., Proc]

#: What systemd does before exec: the socket at fd 3, LISTEN_PID naming the process itself.
AS_SYSTEMD = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "threadloom", "serve", *sys.argv[2:]])
"""


@pytest.fixture
def systemd_socket() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sockets_from_systemd_are_served(
    spawn: Spawn, systemd_socket: socket.socket, workers: str
) -> None:
    fd = systemd_socket.fileno()
    argv = [sys.executable, "-c", AS_SYSTEMD, str(fd), "ops_apps:app", "--workers", workers]
    proc = spawn(argv=argv, pass_fds=[fd])
    where = systemd_socket.getsockname()
    expected = (
        {int(proc.expect(r"worker (\d+) ready")[1]) for _ in range(2)}
        if workers == "2"
        else {proc.pid}  # no supervisor: the process itself answers
    )
    assert proc.serving() == "{}:{}".format(*where)
    assert pids_answering(where, len(expected)) == expected
    proc.send(signal.SIGTERM)
    status, text = proc.finish()
    assert status == 0, text
    # The socket is systemd's: stopping never shut it down, so it still listens for the next
    # start (the kernel queues this connection until then).
    with socket.create_connection(where, timeout=5):
        pass


def test_listen_pid_of_another_process_is_ignored(spawn: Spawn) -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}  # ours, not the server's
    proc = spawn("ops_apps:app", "--bind", "127.0.0.1:0", env=env)
    where = proc.serving()
    assert where.startswith("127.0.0.1:")
    host, port = where.split(":")
    assert get((host, int(port)))[0] == 200
    proc.send(signal.SIGTERM)
    assert proc.finish()[0] == 0
