"""``threadloom bench`` as users type it: its flags, its one-line errors, and ``--app``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from threadloom.testing import timeout_factor

ROOT = Path(__file__).parent.parent.parent


def bench(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadloom", "bench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout * timeout_factor(),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_help_lists_the_flags_of_the_contract() -> None:
    done = bench("--help")
    assert done.returncode == 0
    for flag in ("--quick", "--models", "--workloads", "--connections", "--duration", "--out"):
        assert flag in done.stdout
    assert "--app" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "pool,fibers"], "unknown model 'fibers' (choose from single, threads"),
        (["--workloads", "nap"], "unknown workload 'nap'"),
        (["--connections", "8,many"], "--connections takes numbers separated by commas"),
        (["--connections", "0"], "--connections must be between 1 and"),
        (["--duration", "0.1"], "--duration must be between"),
        (["--rounds", "0"], "--rounds must be between 1 and 50"),
        (["--app", "nosuchmodule:app"], "cannot import 'nosuchmodule'"),
        (["--app", "tests.bench.apps:missing"], "has no attribute 'missing'"),
        (["--app", "tests.bench.apps:wsgi_app", "--workloads", "io"], "--app replaces"),
        (["--generator", "gatling"], "invalid choice: 'gatling'"),
    ],
)
def test_mistakes_are_one_line_without_a_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = bench(*args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("threadloom") and message in lines[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_app_benches_the_users_own_handler(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--app", "tests.bench.apps:wsgi_app", "--models", "single,pool,asyncio"]
    args += ["--connections", "4", "--duration", "1", "--rounds", "1", "--out", str(out)]
    args += ["--generator", "builtin"]  # the built-in client for HTTP rounds too
    done = bench(*args, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in results["rows"]}
    assert {r["workload"] for r in rows.values()} == {"app"}
    assert rows["pool"]["status"] == rows["asyncio"]["status"] == "ok"
    assert rows["pool"]["rps"] > 0 and rows["single"]["status"] == "timeout"
    report = (out / "report.md").read_text()
    assert "your app tests.bench.apps:wsgi_app (wsgi)" in report
    assert "built-in (" in results["generator"]["http"]


@pytest.mark.slow
def test_an_async_app_is_unavailable_off_the_event_loop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--app", "tests.bench.apps:asgi_app", "--models", "pool,asyncio"]
    args += ["--connections", "2", "--duration", "1", "--rounds", "1", "--out", str(out)]
    done = bench(*args, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["pool"]["status"] == "unavailable" and rows["pool"]["rps"] is None
    assert "only under the asyncio model" in rows["pool"]["note"]
    assert rows["asyncio"]["status"] == "ok"
    assert "pool: unavailable: an async app runs only" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_raw_tutorial_handler_is_benched_with_the_tutorials_exchange(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--app", "tests.bench.apps:handle_client", "--models", "threads", "--connections", "2"]
    args += ["--duration", "1", "--rounds", "1", "--out", str(out)]
    done = bench(*args, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = json.loads((out / "results.json").read_text())["rows"]
    assert row["status"] == "ok" and row["rps"] > 0


@pytest.mark.slow
def test_the_h2_workload_loads_http2_with_h2load(tmp_path: Path) -> None:
    """``--workloads h2``: hello world over HTTP/2, h2load's figures in the report."""
    from tests.conftest import need_tool

    need_tool("h2load")
    out = tmp_path / "out"
    args = ["--workloads", "h2", "--models", "pool,asyncio", "--connections", "4"]
    args += ["--duration", "1", "--rounds", "1", "--out", str(out)]
    done = bench(*args, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for model in ("pool", "asyncio"):
        assert rows[model]["workload"] == "h2" and rows[model]["status"] == "ok", rows[model]
        assert rows[model]["rps"] > 0
