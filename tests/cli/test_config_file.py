"""The config file as users meet it: a real ``threadloom`` process reading a real file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import (
    free_port,
    one_line_error,
    run_and_stop,
    wait_listening,
)
from tests.cli.test_cli import threadloom as run
from tests.conftest import talk
from threadloom.testing import timeout_factor

HELLO = """
def handle_client(client_socket, addr):
    client_socket.recv(1024)
    client_socket.send(b"Hello from server!")
    client_socket.close()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with an app, as a user's project is; the tests run threadloom from it."""
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "conf").mkdir()
    return tmp_path


def test_serve_binds_what_a_relative_config_file_says(project: Path) -> None:
    port = free_port()
    (project / "conf" / "site.toml").write_text(f'bind = "127.0.0.1:{port}"\nmodel = "threads"\n')
    proc = run("serve", "hello:handle_client", "--config", "conf/site.toml", cwd=project)
    code, err = run_and_stop(proc, port)
    assert code == 0, err
    assert "model threads" in err


def test_pyproject_table_is_found_in_the_current_folder(project: Path) -> None:
    port = free_port()
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "hello"\n\n[tool.threadloom]\nbind = ["127.0.0.1:{port}"]\n'
        'model = "asyncio"\n'
    )
    code, err = run_and_stop(run("serve", "hello:handle_client", cwd=project), port)
    assert code == 0, err
    assert "model asyncio" in err


def test_the_environment_and_flags_beat_the_file(project: Path) -> None:
    port = free_port()
    (project / "pyproject.toml").write_text(
        '[tool.threadloom]\nbind = "127.0.0.1:1"\nmodel = "single"\nthreads = 2\n'
    )
    proc = run(
        "serve",
        "hello:handle_client",
        "--bind",
        f"127.0.0.1:{port}",
        cwd=project,
        env={"THREADLOOM_MODEL": "pool"},
    )
    code, err = run_and_stop(proc, port)
    assert code == 0, err
    assert "model pool (2 worker threads" in err  # model from env, threads from the file


def test_no_config_ignores_the_pyproject_table(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.threadloom]\nthreads = 2\n")
    proc = run("config", "--no-config", cwd=project)
    out, err = proc.communicate(timeout=30 * timeout_factor())
    assert proc.returncode == 0, err
    assert out.startswith("config file: none\n")
    assert ["threads", "10", "default"] in [line.split() for line in out.splitlines()]


def test_the_demo_reads_the_file_too(project: Path) -> None:
    # `threadloom --config FILE` is `threadloom serve --config FILE`: no APP, the demo
    hello_port = free_port()
    binds = f'["127.0.0.1:{free_port()}", "127.0.0.1:{hello_port}"]'
    (project / "conf" / "demo.toml").write_text(f"bind = {binds}\n")
    code, err = run_and_stop(run("--config", "conf/demo.toml", cwd=project), hello_port)
    assert code == 0, err


def test_config_prints_each_setting_with_its_source(project: Path) -> None:
    (project / "conf" / "site.toml").write_text(
        'bind = ":9000"\nmodel = "threads"\nthreads = 4\nreuse-port = true\n'
    )
    proc = run(
        "config",
        "hello:handle_client",
        "--config",
        "conf/site.toml",
        "--threads",
        "8",
        cwd=project,
        env={"THREADLOOM_MODEL": "asyncio"},
    )
    out, err = proc.communicate(timeout=30 * timeout_factor())
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"config file: conf/site.toml (given by --config; {project}/conf/site.toml)"
    rows = [line.split(maxsplit=2) for line in lines[2:]]
    assert rows[0] == ["setting", "value", "from"]
    assert rows[1:4] == [
        ["bind", '[":9000"]', "conf/site.toml"],
        ["model", '"asyncio"', "env THREADLOOM_MODEL"],
        ["threads", "8", "flag"],
    ]
    assert ["reuse-port", "true", "conf/site.toml"] in rows
    assert ["graceful-timeout", "30.0", "default"] in rows
    assert err == ""


@pytest.mark.parametrize("command", ["serve", "config"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_connections = 5\n", "unknown setting 'max_connections'"),
        ("threads = '4'\n", 'threads must be an integer, not a string ("4")'),
        ("bind = 8000\n", "bind must be a string or an array of strings"),
        ("model = 'fibers'\n", "model = 'fibers' is not one of"),
        ("threads = \n", "not valid TOML: Invalid value (at line 1, column 11)"),
        ("threads = 0\n", "--threads must be at least 1 (threads from conf/bad.toml)"),
    ],
)
def test_a_bad_file_is_one_line_naming_it_exit_2(
    project: Path, command: str, text: str, expected: str
) -> None:
    (project / "conf" / "bad.toml").write_text(text)
    proc = run(command, "hello:handle_client", "--config", "conf/bad.toml", cwd=project)
    line = one_line_error(proc)
    assert proc.returncode == 2
    assert line.startswith("threadloom: error: ")
    assert "conf/bad.toml" in line and expected in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--config", "missing.toml"],
            "missing.toml: cannot read the config file: No such file or directory",
        ),
        (["--config", "conf"], "conf: cannot read the config file: Is a directory"),
    ],
)
def test_an_unreadable_file_is_one_line_exit_2(
    project: Path, args: list[str], expected: str
) -> None:
    proc = run("serve", "hello:handle_client", *args, cwd=project)
    assert one_line_error(proc) == f"threadloom: error: {expected}"
    assert proc.returncode == 2


def test_a_bad_pyproject_table_is_named(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.threadloom]\nno-access-log = true\n")
    line = one_line_error(run("serve", "hello:handle_client", cwd=project))
    assert line == (
        "threadloom: error: pyproject.toml [tool.threadloom]: unknown setting 'no-access-log' "
        "(write access-log = false)"
    )


def test_threadloom_config_file_from_the_environment(project: Path) -> None:
    port = free_port()
    (project / "conf" / "env.toml").write_text(f'bind = "127.0.0.1:{port}"\n')
    proc = run(
        "serve",
        "hello:handle_client",
        cwd=project,
        env={"THREADLOOM_CONFIG": "conf/env.toml"},
    )
    wait_listening(port, proc)
    assert talk(("127.0.0.1", port)) == b"Hello from server!"
