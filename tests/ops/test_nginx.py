"""A real nginx, configured with the recipe in docs/deploy.md, balancing two instances."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool, nginx_conf
from tests.ops.support import Proc, address, get, scaled

Spawn = Callable[..., Proc]
DEPLOY_MD = Path(__file__).parents[2] / "docs" / "deploy.md"


def recipe(ports: tuple[int, int], listen: int) -> str:
    """The nginx block of docs/deploy.md, with this test's ports."""
    block = re.search(r"```nginx\n(.*?)```", DEPLOY_MD.read_text(), re.DOTALL)
    assert block, "docs/deploy.md has no nginx block"
    text = block[1].replace("127.0.0.1:8001", f"127.0.0.1:{ports[0]}")
    text = text.replace("127.0.0.1:8002", f"127.0.0.1:{ports[1]}")
    return text.replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{listen}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx_in(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start nginx (not as a daemon) with a config under ``tmp_path``; stop it at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(conf: str) -> subprocess.Popen[str]:
        nginx = need_tool("nginx")
        (tmp_path / "nginx.conf").write_text(conf)
        command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stderr is not None
        for line in proc.stderr:  # the master has bound its ports once it starts workers
            assert "[emerg]" not in line, line
            if "start worker process" in line:
                return proc
        raise AssertionError(f"nginx did not start (status {proc.wait()})")

    yield start
    for proc in started:
        proc.send_signal(signal.SIGQUIT)  # graceful stop
        _, errors = proc.communicate(timeout=scaled(10))
        assert "[emerg]" not in errors and "[alert]" not in errors, errors


def test_nginx_balances_two_instances_and_survives_one_stopping(
    spawn: Spawn, tmp_path: Path, nginx_in: Callable[[str], subprocess.Popen[str]]
) -> None:
    need_tool("nginx")
    first = spawn("ops_apps:app", "--bind", "127.0.0.1:0", "--no-access-log")
    second = spawn("ops_apps:app", "--bind", "127.0.0.1:0", "--no-access-log")
    ports = (address(first.serving())[1], address(second.serving())[1])  # type: ignore[index]
    front = ("127.0.0.1", free_port())
    nginx_in(nginx_conf(tmp_path, recipe(ports, front[1])))  # type: ignore[arg-type]
    answers = [get(front) for _ in range(20)]
    assert {status for status, _ in answers} == {200}
    assert {int(body) for _, body in answers} == {first.pid, second.pid}

    first.send(signal.SIGTERM)  # a rolling restart: one instance goes away
    assert first.finish()[0] == 0
    answers = [get(front) for _ in range(10)]
    assert answers == [(200, str(second.pid))] * 10
