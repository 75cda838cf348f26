"""Run HTTP/2 tests under each core (``THREADLOOM_H2_CORE``): ``h2``, and ``ngh2`` where it
is installed (the ``http2-fast`` extra).

A module (or a conftest) that imports :func:`each_h2_core` gets every test once per core; with
``THREADLOOM_H2_CORE`` set in the environment, only under that one. The core is read per
connection, so an in-process server made inside the test, or shared by the module's tests,
uses it. A server *process* takes the environment it starts with: a module whose tests
share one defines a module-scoped ``each_h2_core`` over :func:`core_params` instead (see
``tests/http2/test_attacks.py``), so that its tests run under one core, then the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from threadloom.protocols.http2 import CORE_ENV, CORES, ngh2_installed


def core_params() -> list[object]:
    """The cores to run under, as ``pytest.param`` (ngh2 skipped where not installed)."""
    chosen = os.environ.get(CORE_ENV, "").strip().lower()
    names = [chosen] if chosen else list(CORES)
    return [
        pytest.param(
            name,
            id=name,
            marks=pytest.mark.skipif(
                name == "ngh2" and not ngh2_installed(),
                reason="ngh2 is not installed (pip install 'threadloom[http2-fast]')",
            ),
        )
        for name in names
    ]


@pytest.fixture(params=core_params(), autouse=True)
def each_h2_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The HTTP/2 core this run of the test uses."""
    monkeypatch.setenv(CORE_ENV, request.param)
    yield request.param
