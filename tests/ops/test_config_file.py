"""A config file given by a relative path reaches every process: workers and reloaded children."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ops.support import Proc, address, get, pids_answering

Spawn = Callable[..., Proc]

APP = """
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{body}" or str(os.getpid()).encode()]
"""


def test_workers_serve_with_the_files_settings(spawn: Spawn, tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(APP.format(body=""))
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.toml").write_text(
        'bind = "127.0.0.1:0"\nworkers = 2\nmodel = "threads"\n'
    )
    proc = spawn("pidapp:app", "--config", "conf/prod.toml", cwd=tmp_path)
    served = proc.serving()
    assert "with 2 workers, model threads" in proc.text
    assert len(pids_answering(address(served), want=2)) == 2
    proc.send(signal.SIGTERM)
    status, text = proc.finish()
    assert status == 0, text


@pytest.mark.parametrize("chosen_by", ["--config", "THREADLOOM_CONFIG", "pyproject.toml"])
def test_the_reloaded_child_keeps_the_settings_the_file_gave(
    spawn: Spawn, tmp_path: Path, chosen_by: str
) -> None:
    source = tmp_path / "devapp.py"
    source.write_text(APP.format(body="v1"))
    (tmp_path / "conf").mkdir()
    settings = 'bind = "127.0.0.1:0"\nreload = true\nmodel = "threads"\n'
    args, env = ["devapp:app"], {}
    if chosen_by == "pyproject.toml":
        config = tmp_path / "pyproject.toml"
        config.write_text("[tool.threadloom]\n" + settings)
    else:
        config = tmp_path / "conf" / "dev.toml"
        config.write_text(settings)
        if chosen_by == "--config":
            args += ["--config", "conf/dev.toml"]
        else:
            env["THREADLOOM_CONFIG"] = "conf/dev.toml"  # the child inherits it: it must not read
    proc = spawn(*args, cwd=tmp_path, env=env)
    proc.expect("reloading when a .py file under")
    served = proc.serving()
    assert "model threads" in proc.log[-1]
    where = address(served)
    assert get(where) == (200, "v1")

    # the child was given every setting, not the file: a broken file now changes nothing
    config.write_text("this is not TOML\n")
    source.write_text(APP.format(body="v2"))
    proc.expect(r": devapp\.py changed: restarting$")
    assert proc.serving() == served
    assert "model threads" in proc.log[-1]
    assert get(where) == (200, "v2")

    proc.send(signal.SIGTERM)
    status, text = proc.finish()
    assert status == 0, text
