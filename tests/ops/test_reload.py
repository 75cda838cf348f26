"""``--reload``: a change to a .py file under the current directory restarts the server."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.ops.support import Proc, address, get

Spawn = Callable[..., Proc]

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{version}"]
"""


def test_a_changed_file_restarts_the_server(spawn: Spawn, tmp_path: Path) -> None:
    source = tmp_path / "devapp.py"
    source.write_text(APP.format(version="v1"))
    proc = spawn("devapp:app", "--reload", "--bind", "127.0.0.1:0", cwd=tmp_path)
    proc.expect("reloading when a .py file under")
    where = address(proc.serving())
    assert get(where) == (200, "v1")

    (tmp_path / "notes.txt").write_text("not python: not watched")
    source.write_text(APP.format(version="v2"))
    proc.expect(r": devapp\.py changed: restarting$")
    assert proc.serving() == "{}:{}".format(*where)  # the same socket, adopted again
    assert get(where) == (200, "v2")

    proc.send(signal.SIGTERM)
    status, text = proc.finish()
    assert status == 0, text
    assert text.count("changed: restarting") == 1
