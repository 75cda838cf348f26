"""SIGTERM reaches a server whose main thread is busy sending on a WebSocket.

Under ``single`` the main thread serves the connection itself, so the signal handler runs
on a thread that may be inside ``ws.send``, holding the socket's send lock, while stopping
needs that lock to say goodbye (close 1001). The demo's live feed sends twice a second and
hit this now and then; a handler that sends without pause hits it every time, and hung for
good before ``run_with_signals`` moved its work off the signalled thread.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.cli.test_cli import free_port, threadloom, wait_listening
from threadloom.testing import timeout_factor

CHATTY = """
def handler(ws):
    while True:
        ws.send("x" * 65536)
"""


def test_sigterm_while_the_main_thread_sends(tmp_path: Path) -> None:
    (tmp_path / "chatty.py").write_text(CHATTY)
    port = free_port()
    args = ["serve", "chatty:handler", "--model", "single", "--bind", f"127.0.0.1:{port}"]
    proc = threadloom(*args, cwd=tmp_path)
    try:
        wait_listening(port, proc)
        # max_queue=None: the client reads without pause, so the server is never blocked
        # by a slow peer, only (before the fix) by itself
        url = f"ws://127.0.0.1:{port}/"
        with connect(url, max_queue=None, close_timeout=2, open_timeout=10) as ws:
            for _ in range(20):
                ws.recv(timeout=10)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
        proc.communicate(timeout=10 * timeout_factor())
        assert proc.returncode == 0
        assert time.monotonic() - started < 5 * timeout_factor()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
