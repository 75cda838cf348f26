"""Out of file descriptors: the accept loop backs off instead of spinning, then recovers."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from threadloom.testing import timeout_factor

HERE = Path(__file__).parent
FD_LIMIT = 64


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("model", ["threads", "pool", "asyncio"])
def test_emfile_backs_off_and_recovers(model: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "threadloom",
            "serve",
            "handlers:echo_until_closed",
            "--model",
            model,
            "--threads",
            "100",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=HERE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stderr is not None
        while " serving " not in (line := proc.stderr.readline()):
            assert line, "server did not start"
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        for _ in range(FD_LIMIT + 20):  # more than the server can hold
            clients.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.5 * timeout_factor())
        cpu_before = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        spent = _cpu_seconds(proc.pid) - cpu_before
        assert spent < 0.5, f"the accept loop spun: {spent:.2f}s of CPU in 1s"
        for client in clients:
            client.close()
        clients.clear()
        deadline = time.monotonic() + 10 * timeout_factor()
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(b"ping")
                    if sock.recv(4) == b"ping":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "service did not resume"
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "accept failed" in err
