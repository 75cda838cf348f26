"""``threadloom bench --quick`` end to end: real servers, real load, real files.

One run on a small matrix (three models, ``io`` and ``idle``, the quick preset's connection
counts) is shared by the tests of this module; it takes about a minute here. The
tests check the shape of results.json, that the charts are real pictures, that the report
names every model, and that the ``io`` verdict at 64 connections, single far behind pool and
asyncio, is what the figures say, and only because they say it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image

from threadloom.bench.verdict import FAR, decide, fmt_rate
from threadloom.testing import timeout_factor

MODELS = ("single", "pool", "asyncio")
WORKLOADS = ("io", "idle")
CONNECTIONS = (8, 64)  # the --quick preset's
STATUSES = {"ok", "timeout", "errors", "failed", "unavailable"}
REQUIRED = {
    "model": str,
    "workload": str,
    "connections": int,
    "status": str,
    "rps": (float, int, type(None)),
    "p50_ms": (float, int, type(None)),
    "p99_ms": (float, int, type(None)),
    "errors": (int, type(None)),
    "rss_mb": (float, int, type(None)),
    "threads": (int, type(None)),
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(400 * timeout_factor()))]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """Run the bench once for the whole module: (out folder, results, stderr)."""
    out = tmp_path_factory.mktemp("bench")
    argv = [sys.executable, "-m", "threadloom", "bench", "--quick", "--out", str(out)]
    argv += ["--models", ",".join(MODELS), "--workloads", ",".join(WORKLOADS)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300 * timeout_factor(),
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    return out, results, done.stderr


def test_results_json_has_every_cell_with_the_required_fields(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, results, _ = run
    cells = [(r["model"], r["workload"], r["connections"]) for r in results["rows"]]
    expected = [(m, w, c) for w in WORKLOADS for m in MODELS for c in CONNECTIONS]
    assert sorted(cells) == sorted(expected)
    for row in results["rows"]:
        for key, kind in REQUIRED.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["status"] in STATUSES
        if row["status"] in ("ok", "timeout", "errors"):
            assert row["rps"] is not None and row["rss_mb"] > 0 and row["threads"] >= 1
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["gil"] in ("on", "off")
    assert results["generator"]["http"]
    assert set(results["verdicts"]) == set(WORKLOADS)


def test_idle_rows_carry_memory_per_connection(run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = run
    idle = [r for r in results["rows"] if r["workload"] == "idle" and r["status"] == "ok"]
    assert {r["model"] for r in idle} >= {"pool", "asyncio"}
    assert all(r["mem_per_conn_kb"] is not None for r in idle)
    single = [r for r in results["rows"] if r["workload"] == "idle" and r["model"] == "single"]
    # single serves one connection until it closes: the others never get their first answer
    assert all(r["status"] == "timeout" for r in single)


def _png_pixels(path: Path) -> Any:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return image.imread(path)


def test_charts_are_real_pictures(run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, _ = run
    expected = {"io", "idle", "memory"}
    assert expected <= set(results["charts"])
    for name in expected:
        pixels = _png_pixels(out / results["charts"][name])
        height, width = pixels.shape[:2]
        assert width >= 600 and height >= 300
        flat = pixels[..., :3].reshape(-1, 3)
        assert flat.std() > 0.05, f"{name} is blank"
        assert len(np.unique(flat, axis=0)) > 50, f"{name} has almost no colours"


def test_report_names_every_model_and_the_machine(run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, stderr = run
    report = (out / "report.md").read_text()
    for model in MODELS:
        assert f"| {model} |" in report, model
    for workload in WORKLOADS:
        assert f"## {workload}:" in report
    machine = results["machine"]
    assert f"{machine['cores']} cores" in report and f"GIL {machine['gil']}" in report
    assert "The tutorial's table, measured" in report
    assert "io.png" in report
    assert "report in" in stderr


def _section(report: str, workload: str) -> str:
    return report.split(f"## {workload}:", 1)[1].split("\n## ", 1)[0]


def test_io_at_64_connections_single_is_far_behind_because_the_figures_say_so(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    out, results, _ = run
    at64 = {
        r["model"]: r for r in results["rows"] if r["workload"] == "io" and r["connections"] == 64
    }
    single, pool, aio = at64["single"], at64["pool"], at64["asyncio"]
    # the figures: pool and asyncio answered everyone; single at most a fifth of either
    assert pool["status"] == "ok" and aio["status"] == "ok"
    assert single["rps"] is not None
    assert single["rps"] < FAR * min(pool["rps"], aio["rps"]), (single, pool, aio)
    # the verdict, as data and in words, says what the figures say
    verdict = results["verdicts"]["io"]
    assert verdict["connections"] == 64
    assert "single" in verdict["far_behind"]
    assert "single" not in verdict["pick"]
    section = _section((out / "report.md").read_text(), "io")
    assert f"single is far behind: {fmt_rate(single['rps'])} req/s" in section


FIGURES = ("rps", "p50_ms", "p90_ms", "p99_ms", "status", "note", "errors", "client_bound")


def _swap(rows: list[dict[str, Any]], a: str, b: str, workload: str) -> list[dict[str, Any]]:
    """The rows with models ``a`` and ``b`` trading their figures for ``workload``."""
    index = {(r["model"], r["connections"]): r for r in rows if r["workload"] == workload}
    swapped = copy.deepcopy(rows)
    for row in swapped:
        if row["workload"] == workload and row["model"] in (a, b):
            source = index[(b if row["model"] == a else a, row["connections"])]
            row.update({key: source[key] for key in FIGURES})
    return swapped


def test_verdicts_follow_the_figures_not_fixed_text(run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = run
    rows = results["rows"]
    assert decide("io", "http", rows).as_dict() == results["verdicts"]["io"]
    winner = results["verdicts"]["io"]["pick"][0]
    # Give single the winner's figures and the winner single's: the verdict turns around.
    turned = decide("io", "http", _swap(rows, "single", winner, "io"))
    assert turned.pick[0] == "single"
    assert winner in turned.far_behind and "single" not in turned.far_behind
    assert f"{winner} is far behind" in turned.text and "single is far behind" not in turned.text
