"""Shared fixtures: real sockets only; a check that no test leaks threads."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from threadloom.testing import timeout_factor

pytest_plugins = ["tests.guards"]  # the hard timeout and the process-leak check

# A failing property test must be reproducible: Hypothesis prints the falsifying input and a
# @reproduce_failure blob, and keeps failing inputs in an ignored folder, where the next run
# (and `make test`, which also prints its --hypothesis-seed) tries them first.
settings.register_profile(
    "threadloom",
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".hypothesis"),
    print_blob=True,
)
settings.load_profile("threadloom")

REQUIRE_TOOLS = os.environ.get("THREADLOOM_REQUIRE_TOOLS") == "1"

#: Suites that run again on the paths macOS and Windows take, forced on Linux by their
#: switches (threadloom/portable.py; README "Platforms"), parametrized as the models are:
#: ``pool`` over a level-triggered ``select`` poller (Windows') with files read and sent
#: (no ``os.sendfile``). The other models' forced paths are in tests/portable.
PORTABLE_SUITES = (
    "tests/http1/",
    "tests/http2/test_h2_basic.py",
    "tests/static/",
    "tests/adversarial/test_slow_readers.py",
)
FORCED_PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "portable": {"THREADLOOM_POLLER": "select", "THREADLOOM_NO_SENDFILE": "1"},
}
_ROOT = Path(__file__).resolve().parent.parent


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.path.relative_to(_ROOT).as_posix().startswith(PORTABLE_SUITES):
        metafunc.parametrize("forced_paths", list(FORCED_PATHS), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The portable paths of PORTABLE_SUITES run under ``pool`` only (what they change)."""
    dropped = [item for item in items if _portable_but_not_pool(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _portable_but_not_pool(item)]


def _portable_but_not_pool(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("forced_paths", "native") == "native":
        return False
    return "pool" not in callspec.id.split("-")


@pytest.fixture(autouse=True)
def forced_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment switches of the paths this test runs on (FORCED_PATHS)."""
    name: str = getattr(request, "param", "native")
    for key, value in FORCED_PATHS[name].items():
        monkeypatch.setenv(key, value)
    return name


def need_tool(name: str) -> str:
    """Path of an external tool; skip the test without it (fail under THREADLOOM_REQUIRE_TOOLS)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if REQUIRE_TOOLS:
            pytest.fail(message + " and THREADLOOM_REQUIRE_TOOLS=1")
        pytest.skip(message)
    return path


def nginx_conf(prefix: object, http_block: str, error_log: str = "stderr notice") -> str:
    """A whole nginx.conf for a test: no daemon, one worker, every path under ``prefix``,
    and ``http_block`` (the test's ``server``/``upstream`` blocks) inside ``http``."""
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {error_log};
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http_block}
}}
"""


def talk(address: object, message: bytes = b"hi", timeout: float = 5.0) -> bytes:
    """Connect, send, read until the server closes: the tutorial's exchange from the client side."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout * timeout_factor())
        sock.connect(address)
        sock.sendall(message)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(autouse=True)
def collector_thresholds_kept() -> Iterator[None]:
    """A server serving in this process sets the collector's thresholds (--gc-threshold):
    the tests after it run with the process's own again."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.fixture(autouse=True)
def no_thread_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every server a test starts must have stopped its threads when the test ends.

    Tests marked `shared_server` talk to a module-scoped server whose pools grow lazily
    while they run; its threads are checked when the module's server stops instead.
    """
    if request.node.get_closest_marker("shared_server"):
        yield
        return
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5 * timeout_factor()
    while True:
        leaked = [
            t
            for t in set(threading.enumerate()) - before
            if t.is_alive() and t.name.startswith("threadloom")
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
