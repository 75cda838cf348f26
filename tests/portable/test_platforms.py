"""macOS and Windows as far as Linux can play them: a real ``threadloom`` process on an
interpreter stripped of what that platform lacks (tests/portable/emulate.py), real clients.

What each run shows: the command starts under every model, names the poller ``pool`` took,
serves a request, an 8 MiB file through ``wsgi.file_wrapper`` and a static file with a
range, and stops on SIGTERM with status 0 and no traceback. Where the platform cannot do
something (``--workers``, ``--reload``, ``unix:``), the command says so in one line and
exits 2; ``--reuse-port`` without SO_REUSEPORT is ignored with one line in the log.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.apps import EIGHT_MIB
from tests.adversarial.support import ROOT, ServerProcess
from tests.portable.emulate import PRELUDE
from threadloom import portable
from threadloom.models.pollers import EpollPoller, SelectorPoller, make_poller
from threadloom.net.waker import Waker
from threadloom.testing import MODELS, timeout_factor

APP = "tests.adversarial.apps:file_eight_mib"  # /hello: a few bytes; else 8 MiB from a file
CSS = b"body { color: #333; }\n" * 100
#: the poller ``pool`` must name at start: macOS's kqueue cannot run here, so its strip
#: leaves poll, level-triggered like kqueue; Windows gets select
POLLER = {"windows": "SelectSelector", "macos": "PollSelector"}
CASES = [("windows", m) for m in MODELS] + [("macos", "pool"), ("macos", "asyncio")]


class EmulatedServer(ServerProcess):
    """:class:`ServerProcess` on the interpreter that ``THREADLOOM_EMULATE`` names."""

    def __init__(self, app: str, model: str, *args: str) -> None:
        super().__init__(app, model, *args)
        self.command[1:3] = ["-c", PRELUDE]  # (was: -m threadloom)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "site.css").write_bytes(CSS)
    return tmp_path


def get(address: tuple[str, int], path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10 * timeout_factor())
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("platform", "model"), CASES, ids=[f"{p}-{m}" for p, m in CASES])
def test_every_model_serves_on_the_emulated_platform(
    platform: str, model: str, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLOOM_EMULATE", platform)
    with EmulatedServer(APP, model, "--static", f"/static={site}") as server:
        assert get(server.address, "/hello")[0] == 200
        status, _, body = get(server.address, "/big")
        assert (status, len(body), body == EIGHT_MIB) == (200, len(EIGHT_MIB), True)
        status, headers, body = get(server.address, "/static/site.css", Range="bytes=10-19")
        assert (status, body) == (206, CSS[10:20])
        assert headers["Content-Range"] == f"bytes 10-19/{len(CSS)}"
        server.signal(signal.SIGTERM)
        assert server.wait(15 * timeout_factor()) == 0, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
    if model == "pool":
        assert f"1 I/O thread on {POLLER[platform]})" in server.stderr


def test_reuse_port_without_so_reuseport_is_ignored_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADLOOM_EMULATE", "windows")
    with EmulatedServer(APP, "threads", "--reuse-port") as server:
        assert get(server.address, "/hello")[0] == 200
        server.signal(signal.SIGTERM)
        assert server.wait(15 * timeout_factor()) == 0, server.stderr
    assert server.stderr.count("--reuse-port ignored: this platform has no SO_REUSEPORT") == 1


def run_command(
    *args: str, platform: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``threadloom ARGS`` to its end (on the emulated ``platform`` if given)."""
    code = ["-c", PRELUDE] if platform else ["-m", "threadloom"]
    return subprocess.run(
        [sys.executable, *code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "THREADLOOM_EMULATE": platform or "", **env},
        capture_output=True,
        text=True,
        timeout=30 * timeout_factor(),
        check=False,
    )


REFUSED = {
    "--workers": (
        ("--workers", "2"),
        "--workers needs fork (POSIX); on Windows run one process per port,"
        " or one process with --model threads or pool",
    ),
    "--reload": (("--reload",), "--reload needs POSIX (it passes the listening sockets"),
    "unix:": (("--bind", "unix:/tmp/threadloom-never.sock"), "no unix sockets on this platform"),
    "bench": ((), "threadloom bench needs POSIX (process groups)"),
}
REFUSALS = [
    ("emulated", "--workers"),
    ("emulated", "--reload"),
    ("emulated", "unix:"),
    ("emulated", "bench"),
    ("switch", "--workers"),  # THREADLOOM_NO_FORK=1 on the real interpreter
    ("switch", "--reload"),
]


@pytest.mark.parametrize(("how", "what"), REFUSALS, ids=[f"{h}-{w}" for h, w in REFUSALS])
def test_what_the_platform_cannot_do_is_one_line_and_exit_2(how: str, what: str) -> None:
    args, message = REFUSED[what]
    if what == "bench":
        done = run_command("bench", "--quick", platform="windows")
    elif how == "emulated":
        done = run_command("serve", APP, *args, platform="windows")
    else:
        done = run_command("serve", APP, *args, THREADLOOM_NO_FORK="1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("threadloom: error: ")
    assert message in done.stderr


def test_poller_switch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """THREADLOOM_POLLER picks the pool's poller; a name this platform lacks is one line
    in the log and the default."""
    waker = Waker()
    try:
        for asked, kind, name in [
            ("", EpollPoller, "epoll"),
            ("epoll", EpollPoller, "epoll"),
            ("selectors", SelectorPoller, "EpollSelector"),
            ("select", SelectorPoller, "SelectSelector"),
            ("kqueue", EpollPoller, "epoll"),
        ]:
            monkeypatch.setenv(portable.POLLER_ENV, asked)
            poller = make_poller(waker)
            assert (type(poller), poller.name) == (kind, name)
            poller.close()
    finally:
        waker.close()
    assert caplog.messages == ["THREADLOOM_POLLER=kqueue is not available here; using epoll"]


@pytest.fixture
def no_epoll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delattr("select.epoll")
    monkeypatch.delenv(portable.POLLER_ENV, raising=False)
    yield


def test_without_epoll_the_pool_takes_the_default_selector(no_epoll: None) -> None:
    assert portable.poller_name() == "selectors"
