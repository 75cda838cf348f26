"""SIGHUP under ``--workers``: new code, nothing dropped, and broken code changes nothing.

Each test writes an app file into its own folder, serves it from there with a real
supervisor, edits the file on disk and sends SIGHUP while client threads send requests
back to back (a new connection each). Every answer carries the code's version and the
worker's pid, so a test sees which code and which process answered.

Versions differ in length on purpose: Python trusts a cached ``.pyc`` whose source has
the same size and the same mtime (whole seconds), and these edits happen within a second.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ops.support import Proc, address, get, scaled, terminate, wait_gone
from tests.ops.test_activation import AS_SYSTEMD
from threadloom.testing import MODELS

Spawn = Callable[..., Proc]
Where = tuple[str, int]

WSGI = """
import os

VERSION = "@VERSION@"


def app(environ, start_response):
    body = f"{VERSION} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

#: An ASGI app whose lifespan startup takes a while and says when it is done: a new worker
#: must not count as ready (and its old one must not drain) before that line.
ASGI = """
import asyncio, os

VERSION = "@VERSION@"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(0.5)
                @STARTUP@
                os.write(2, f"lifespan started in {os.getpid()}\\n".encode())  # one write
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"{VERSION} {os.getpid()}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

NO_DATABASE = 'await send({"type": "lifespan.startup.failed", "message": "no database"}); return'


def write_app(folder: Path, version: str, template: str = WSGI, startup: str = "pass") -> None:
    text = template.replace("@VERSION@", version).replace("@STARTUP@", startup)
    (folder / "hupapp.py").write_text(text)


#: What each way of breaking the app does to it, and the cause the one line must name.
BROKEN = {
    "syntax": (
        "def app(environ, start_response:\n    return []\n",
        r"cannot import 'hupapp': SyntaxError: .+ \(hupapp\.py, line 1\)",
    ),
    "raises": (
        "raise RuntimeError('no config')\n",
        r"cannot import 'hupapp': RuntimeError: no config \(.*hupapp\.py:1\)",
    ),
    "sys-exit": (
        "import sys\nsys.exit('no DATABASE_URL')\n",
        r"the app called sys\.exit\('no DATABASE_URL'\)",
    ),
    "exits": (
        "import os\nos._exit(7)\n",
        r"worker \d+ exited before it was ready \(exit status 7\)",
    ),
}


class Load:
    """Client threads sending requests back to back; every answer and failure is kept."""

    def __init__(self, where: Where, clients: int = 4) -> None:
        self.where = where
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, name=f"test-load-{n}") for n in range(clients)
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = get(self.where)
            except (OSError, http.client.HTTPException) as exc:
                with self._changed:
                    self.failures.append(repr(exc))
                continue
            with self._changed:
                if status == 200:
                    self.answers.append(body)
                else:
                    self.failures.append(f"{status} {body}")
                self._changed.notify_all()

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(scaled(15))

    def wait_for(self, more: int) -> None:
        """Until ``more`` further answers came (the load really runs across the change)."""
        with self._changed:
            target = len(self.answers) + more
            if not self._changed.wait_for(lambda: len(self.answers) >= target, scaled(15)):
                raise AssertionError(f"the load stalled: {self.failures[:5]}")


def versions(answers: list[str]) -> list[str]:
    return [answer.split()[0] for answer in answers]


def serving(proc: Proc, count: int = 2) -> tuple[Where, set[int]]:
    pids = {int(proc.expect(r"worker (\d+) ready")[1]) for _ in range(count)}
    where = address(proc.serving())
    assert isinstance(where, tuple)
    return where, pids


def swap(proc: Proc, count: int = 2) -> dict[int, int]:
    """Wait for a SIGHUP round to replace every worker: {old pid: new pid}."""
    pairs = [proc.expect(r"worker (\d+) replaced by (\d+)") for _ in range(count)]
    proc.expect(r"SIGHUP: every worker replaced")
    return {int(m[1]): int(m[2]) for m in pairs}


def line_of(proc: Proc, text: str) -> int:
    """The index of the first log line so far that holds ``text``."""
    return next(i for i, line in enumerate(proc.log) if text in line)


def answered(where: Where, times: int = 20) -> list[str]:
    answers = []
    for _ in range(times):
        status, body = get(where)
        assert status == 200, body
        answers.append(body)
    return answers


CASES = [pytest.param(model, WSGI, id=f"wsgi-{model}") for model in MODELS] + [
    pytest.param("asyncio", ASGI, id="asgi-lifespan-asyncio")
]


@pytest.mark.parametrize(("model", "template"), CASES)
def test_sighup_serves_the_edited_code_without_a_failed_request(
    spawn: Spawn, tmp_path: Path, model: str, template: str
) -> None:
    write_app(tmp_path, "one", template)
    args = ("--workers", "2", "--model", model, "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, old = serving(proc)
    with Load(where).running() as load:
        load.wait_for(20)
        write_app(tmp_path, "second", template)
        proc.send(signal.SIGHUP)
        replaced = swap(proc)
        assert all(wait_gone(pid) for pid in old), proc.text
        load.wait_for(20)
    assert load.failures == [], (load.failures[:5], proc.text)
    assert set(replaced) == old and not set(replaced.values()) & old
    assert set(versions(load.answers)) == {"one", "second"}
    after = answered(where)  # the old workers are gone: only new code answers
    assert set(versions(after)) == {"second"}
    assert {int(answer.split()[1]) for answer in after} <= set(replaced.values()), proc.text
    if template is ASGI:  # ready means the lifespan startup was done, for every new worker
        for new in replaced.values():
            started = line_of(proc, f"lifespan started in {new}")
            assert started < line_of(proc, f"replaced by {new}:"), proc.text
    text = terminate(proc)
    assert "Traceback" not in text and "ERROR" not in text, text


@pytest.mark.parametrize("model", MODELS)
def test_a_syntax_error_on_sighup_leaves_the_old_code_serving(
    spawn: Spawn, tmp_path: Path, model: str
) -> None:
    check_broken_code(spawn, tmp_path, model, "syntax")


@pytest.mark.parametrize("how", ["raises", "sys-exit", "exits"])
def test_new_code_that_fails_at_import_leaves_the_old_code_serving(
    spawn: Spawn, tmp_path: Path, how: str
) -> None:
    check_broken_code(spawn, tmp_path, "pool", how)


def check_broken_code(spawn: Spawn, tmp_path: Path, model: str, how: str) -> None:
    """SIGHUP with broken code under load: one line, the old workers answer; then fixed
    code and another SIGHUP: the new answer."""
    source, cause = BROKEN[how]
    write_app(tmp_path, "one")
    args = ("--workers", "2", "--model", model, "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, old = serving(proc)
    with Load(where).running() as load:
        load.wait_for(20)
        (tmp_path / "hupapp.py").write_text(source)
        proc.send(signal.SIGHUP)
        line = proc.expect(r"SIGHUP: new code failed to start").string
        load.wait_for(20)
        assert set(versions(load.answers)) == {"one"}
        after = answered(where)
        assert {int(answer.split()[1]) for answer in after} <= old
        write_app(tmp_path, "third!")
        proc.send(signal.SIGHUP)
        swap(proc)
        assert all(wait_gone(pid) for pid in old), proc.text
        load.wait_for(20)
    assert load.failures == [], load.failures[:5]
    assert set(versions(answered(where))) == {"third!"}
    assert re.search(rf"SIGHUP: new code failed to start: {cause}; old workers keep serving$", line)
    text = terminate(proc)
    assert text.count("failed to start") == 1, text
    assert "Traceback" not in text, text


def test_a_lifespan_that_fails_on_sighup_leaves_the_old_workers_serving(
    spawn: Spawn, tmp_path: Path
) -> None:
    write_app(tmp_path, "one", ASGI)
    args = ("--workers", "2", "--model", "asyncio", "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, old = serving(proc)
    with Load(where).running() as load:
        write_app(tmp_path, "second", ASGI, startup=NO_DATABASE)
        proc.send(signal.SIGHUP)
        proc.expect(r"SIGHUP: new code failed to start: .*no database.*; old workers keep serving$")
        load.wait_for(20)
    assert load.failures == [], load.failures[:5]
    assert set(versions(load.answers)) == {"one"}
    assert {int(answer.split()[1]) for answer in answered(where)} <= old
    terminate(proc)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_preload_keeps_the_code_imported_at_start(spawn: Spawn, tmp_path: Path, how: str) -> None:
    write_app(tmp_path, "one")
    flags = ["--preload"] if how == "flag" else []
    env = {"THREADLOOM_PRELOAD": "1"} if how == "env" else {}
    args = ("--workers", "2", *flags, "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path, env=env)
    where, old = serving(proc)
    write_app(tmp_path, "second")
    proc.send(signal.SIGHUP)
    proc.expect(r"SIGHUP received: replacing 2 workers \(on the code imported at start")
    replaced = swap(proc)
    assert set(replaced) == old
    assert all(wait_gone(pid) for pid in old), proc.text
    after = answered(where)
    assert set(versions(after)) == {"one"}  # new processes, the same code
    assert {int(answer.split()[1]) for answer in after} <= set(replaced.values())
    terminate(proc)


@pytest.mark.parametrize("preload", [False, True], ids=["workers-import", "preload"])
def test_an_app_that_does_not_import_at_start_is_one_line(
    spawn: Spawn, tmp_path: Path, preload: bool
) -> None:
    (tmp_path / "hupapp.py").write_text(BROKEN["syntax"][0])
    flags = ["--preload"] if preload else []
    proc = spawn("hupapp:app", "--workers", "3", *flags, "--bind", "127.0.0.1:0", cwd=tmp_path)
    status, text = proc.finish()
    assert status == 2, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert re.fullmatch(r"threadloom: error: " + BROKEN["syntax"][1], lines[0]), text


def test_preload_without_workers_is_one_line(spawn: Spawn, tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    status, text = spawn("hupapp:app", "--preload", cwd=tmp_path).finish()
    assert status == 2, text
    assert text.splitlines() == [
        "threadloom: error: --preload needs --workers: one process imports the app anyway"
    ]


def test_a_replacement_after_max_requests_that_cannot_start_keeps_its_worker(
    spawn: Spawn, tmp_path: Path
) -> None:
    write_app(tmp_path, "one")
    args = ("--workers", "1", "--max-requests", "3", "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, (pid,) = serving(proc, 1)
    (tmp_path / "hupapp.py").write_text(BROKEN["syntax"][0])
    assert set(versions(answered(where, 3))) == {"one"}
    proc.expect(rf"worker {pid}: its replacement \d+ failed to start: cannot import 'hupapp': ")
    assert {answer.split()[1] for answer in answered(where, 5)} == {str(pid)}
    terminate(proc)


def test_a_restart_onto_broken_code_backs_off_and_the_server_stays_up(
    spawn: Spawn, tmp_path: Path
) -> None:
    write_app(tmp_path, "one")
    args = ("--workers", "2", "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, pids = serving(proc)
    victim, survivor = sorted(pids)
    (tmp_path / "hupapp.py").write_text(BROKEN["syntax"][0])
    os.kill(victim, signal.SIGKILL)
    proc.expect(rf"worker {victim} died \(killed by SIGKILL\); starting another")
    cause = r"could not start: cannot import 'hupapp': SyntaxError: .*"
    proc.expect(rf"worker \d+ died \({cause}\); starting another in [\d.]+s$")
    assert {answer.split()[1] for answer in answered(where, 5)} == {str(survivor)}
    write_app(tmp_path, "fixed")
    new = int(proc.expect(r"worker (\d+) ready", timeout=20)[1])
    assert new not in pids
    assert {int(answer.split()[1]) for answer in answered(where, 40)} <= {survivor, new}
    terminate(proc)


def test_a_second_sighup_supersedes_new_code_still_starting(spawn: Spawn, tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    args = ("--workers", "2", "--bind", "127.0.0.1:0", "--no-access-log")
    proc = spawn("hupapp:app", *args, cwd=tmp_path)
    where, old = serving(proc)
    (tmp_path / "hupapp.py").write_text("import time\ntime.sleep(3600)\n")  # an import that hangs
    proc.send(signal.SIGHUP)
    proc.expect(r"SIGHUP received: replacing 2 workers \(importing the app\)")
    assert {int(answer.split()[1]) for answer in answered(where)} <= old
    write_app(tmp_path, "third!")
    proc.send(signal.SIGHUP)
    proc.expect(r"SIGHUP received: replacing 2 workers")
    replaced, gone = {}, 0  # the hung ones are given up (SIGTERM), in any order with the rest
    while len(replaced) < 2 or gone < 2:
        match = proc.expect(r"worker (\d+) (?:replaced by (\d+)|exited \(killed by SIGTERM\))")
        if match[2]:
            replaced[int(match[1])] = int(match[2])
        else:
            gone += 1
    assert set(replaced) == old
    assert all(wait_gone(pid) for pid in old), proc.text
    assert set(versions(answered(where))) == {"third!"}
    terminate(proc)


def test_sighup_with_a_socket_from_systemd(spawn: Spawn, tmp_path: Path) -> None:
    """Socket activation: the workers of every round serve systemd's socket, new code too."""
    write_app(tmp_path, "one")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        fd = listening.fileno()
        argv = [sys.executable, "-c", AS_SYSTEMD, str(fd), "hupapp:app", "--workers", "2"]
        proc = spawn(argv=[*argv, "--no-access-log"], pass_fds=[fd], cwd=tmp_path)
        where, old = serving(proc)
        assert where == listening.getsockname()
        with Load(where).running() as load:
            load.wait_for(20)
            write_app(tmp_path, "second")
            proc.send(signal.SIGHUP)
            swap(proc)
            assert all(wait_gone(pid) for pid in old), proc.text
            load.wait_for(20)
        assert load.failures == [], load.failures[:5]
        assert set(versions(answered(where))) == {"second"}
        terminate(proc)
