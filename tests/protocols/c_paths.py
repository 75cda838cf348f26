"""The one rule for tests of the C fast paths: skipped when they are switched off, and when
they are not built (except under THREADLOOM_REQUIRE_TOOLS=1, where that is a failure)."""

from __future__ import annotations

import os

import pytest

from threadloom.protocols.http1 import speedups

SWITCHED_OFF = os.environ.get("THREADLOOM_PURE_PYTHON", "") in ("1", "true", "yes")
C_PATHS_ONLY = [
    pytest.mark.skipif(SWITCHED_OFF, reason="THREADLOOM_PURE_PYTHON=1: the C paths are off"),
    pytest.mark.skipif(
        not speedups.ACTIVE and os.environ.get("THREADLOOM_REQUIRE_TOOLS") != "1",
        reason="the C extensions are not built (no C compiler at install time)",
    ),
]
