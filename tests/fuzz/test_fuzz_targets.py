"""The atheris targets, in CI: every seed replayed through each, then a short atheris run.

The long runs (minutes to hours, growing a corpus) are documented in RELIABILITY.md.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS
from tests.fuzz import http1_target, http1c_target, ws_target
from tests.fuzz.runner import export

TARGETS = {"http1": http1_target, "http1c": http1c_target, "ws": ws_target}

HERE = Path(__file__).parent
#: Seconds of coverage-guided fuzzing per target in CI.
SHORT_RUN_S = 2


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=list(TARGETS))
def test_seeds_replay_cleanly(target: object) -> None:
    seeds = target.seeds()  # type: ignore[attr-defined]
    assert len(seeds) >= 40
    for data in seeds:
        target.one_input(data)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_short_atheris_run(name: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "atheris is not installed (pip install atheris; Linux x86-64 wheels)"
        if REQUIRE_TOOLS:
            pytest.fail(message + " and THREADLOOM_REQUIRE_TOOLS=1")
        pytest.skip(message)
    corpus = tmp_path / "corpus"
    export(TARGETS[name], corpus)  # start from the seeds, not from nothing
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "runner.py"),
            name,
            "--atheris",
            f"-max_total_time={SHORT_RUN_S}",
            "-max_len=4096",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr
