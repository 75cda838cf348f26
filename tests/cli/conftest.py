"""Every server a CLI test starts (``tests.cli.test_cli.threadloom``) is ended after the
test, whatever its outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.test_cli import STARTED


@pytest.fixture(autouse=True)
def end_started_servers() -> Iterator[None]:
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
