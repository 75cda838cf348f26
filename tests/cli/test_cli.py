"""The command line as users run it: a real ``threadloom`` process, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import talk
from threadloom.testing import MODELS, timeout_factor

HANDLERS = Path(__file__).parent.parent / "models"
PYTHON = sys.executable
#: Every server this module starts, ended after each test whatever its outcome.
STARTED: list[subprocess.Popen[str]] = []


def threadloom(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = HANDLERS,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[str]:
    # PYTHONFAULTHANDLER: a server that hangs dumps every thread's stack on SIGABRT
    # (run_and_stop), so a stop that never ends says where it waits
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    proc = subprocess.Popen(
        [PYTHON, "-m", "threadloom", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
    )
    STARTED.append(proc)
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[str]) -> str:
    """Wait for the start-up log line (without connecting: single would serve a probe)."""
    assert proc.stderr is not None
    seen = []
    while line := proc.stderr.readline():
        seen.append(line)
        if " serving " in line:
            assert f":{port}" in line or "fd://" in line or "unix:" in line, line
            return "".join(seen)
    raise AssertionError("server did not start: " + "".join(seen))


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def one_line_error(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=30 * timeout_factor())
    assert proc.returncode != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "handlers:handle_client", "--model", "fibers"], "invalid choice: 'fibers'"),
        (["serve", "handlers:handle_client", "--bind", "localhost"], "bad address"),
        (["serve", "handlers:handle_client", "--bind", "127.0.0.1:99999"], "port must be"),
        (["serve", "handlers:handle_client", "--bind", "nosuchhost.invalid:80"], "cannot listen"),
        (["serve", "nosuchmodule:app"], "no module named 'nosuchmodule'"),
        (["serve", "handlers:nosuchattr"], "has no attribute 'nosuchattr'"),
        (["serve", "handlers"], "module:attribute"),
        (["serve", "handlers:Gate"], "--interface"),
        (["serve", "handlers:handle_streams", "--model", "pool"], "--model asyncio"),
        (["serve", "handlers:handle_client", "--threads", "0"], "--threads"),
        (["serve", "handlers:handle_client", "--threads", "many"], "invalid int value"),
        (["serve", "handlers:handle_client", "--loop", "trio"], "invalid choice"),
        (["serve", "handlers:handle_client", "--bind", "fd://notanumber"], "fd://"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], expected: str) -> None:
    assert expected in one_line_error(threadloom(*args))


def test_port_in_use(occupied_port: int) -> None:
    line = one_line_error(
        threadloom("serve", "handlers:handle_client", "--bind", f"127.0.0.1:{occupied_port}")
    )
    assert "address already in use" in line


def test_bad_environment_value() -> None:
    line = one_line_error(
        threadloom("serve", "handlers:handle_client", env={"THREADLOOM_MAX_CONNECTIONS": "lots"})
    )
    assert "THREADLOOM_MAX_CONNECTIONS" in line


def test_import_error_inside_the_app_module(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    line = one_line_error(threadloom("serve", "broken:app", cwd=tmp_path))
    assert "ZeroDivisionError" in line and "broken.py:1" in line


def run_and_stop(proc: subprocess.Popen[str], port: int) -> tuple[int, str]:
    started = wait_listening(port, proc)
    assert talk(("127.0.0.1", port)) == b"Hello from server!"
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30 * timeout_factor())
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack to stderr
        _, err = proc.communicate(timeout=10 * timeout_factor())
        raise AssertionError(
            f"the server had not stopped 30 s after SIGTERM; its log and stacks:\n{started}{err}"
        ) from None
    return proc.returncode, started + err


@pytest.mark.parametrize("model", MODELS)
def test_model_flag_and_environment(model: str) -> None:
    port = free_port()
    proc = threadloom(
        "serve",
        "handlers:handle_client",
        "--model",
        model,
        env={"THREADLOOM_BIND": f"127.0.0.1:{port}"},
    )
    code, err = run_and_stop(proc, port)
    assert code == 0
    assert f"model {model}" in err


def test_environment_chooses_the_model() -> None:
    port = free_port()
    proc = threadloom(
        "serve",
        "handlers:handle_client",
        "--bind",
        f"127.0.0.1:{port}",
        env={"THREADLOOM_MODEL": "threads", "THREADLOOM_LOG_LEVEL": "debug"},
    )
    code, err = run_and_stop(proc, port)
    assert code == 0 and "model threads" in err


def test_no_app_serves_the_tutorial_hello() -> None:
    # no APP: the demo; the page on the first --bind, the hello on the second (tests/demo)
    port = free_port()
    proc = threadloom("--bind", f"127.0.0.1:{free_port()}", "--bind", f"127.0.0.1:{port}")
    code, _ = run_and_stop(proc, port)
    assert code == 0


def test_fd_bind() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    proc = threadloom("serve", "handlers:handle_client", "--bind", f"fd://{fd}", pass_fds=(fd,))
    listener.close()
    code, _ = run_and_stop(proc, port)
    assert code == 0


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_lets_the_request_in_flight_finish(model: str) -> None:
    port = free_port()
    proc = threadloom(
        "serve", "handlers:slow_handler", "--model", model, "--bind", f"127.0.0.1:{port}"
    )
    wait_listening(port, proc)
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"hi")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    client.settimeout(5 * timeout_factor())
    assert client.recv(100) == b"slow hello"
    client.close()
    _, err = proc.communicate(timeout=30 * timeout_factor())
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("model", ["threads", "asyncio"])
def test_second_signal_stops_at_once(model: str) -> None:
    port = free_port()
    proc = threadloom(
        "serve",
        "hanging:handler",
        "--model",
        model,
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "60",
        cwd=Path(__file__).parent,
    )
    wait_listening(port, proc)
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"hi")
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None, "the first signal must wait for the hanging handler"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10 * timeout_factor())
    assert time.monotonic() - started < 5 * timeout_factor()
    assert proc.returncode == 1, err
    client.close()


def test_graceful_timeout_bounds_the_drain() -> None:
    port = free_port()
    proc = threadloom(
        "serve",
        "hanging:handler",
        "--model",
        "pool",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "1",
        cwd=Path(__file__).parent,
    )
    wait_listening(port, proc)
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"hi")
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10 * timeout_factor())
    assert 0.9 < time.monotonic() - started < 5 * timeout_factor()
    assert proc.returncode == 0, err
    assert "still open" in err
    client.close()
