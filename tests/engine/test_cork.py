"""The cork (engine/cork.py) on a real event loop: who holds, when it lets go, in what order."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from threadloom.engine import cork as cork_module
from threadloom.engine.cork import Cork, cork_for


class Writer:
    """A connection's writer as the cork sees it: it notes when it is told to release."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def release_held(self) -> None:
        self.log.append(self.name)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def end_of_pass(loop: asyncio.AbstractEventLoop) -> None:
    """Let the loop finish the pass it is in (the callbacks queued so far run)."""
    loop.run_until_complete(asyncio.sleep(0))


def test_the_first_write_of_a_pass_goes_at_once_and_the_rest_at_its_end(
    loop: asyncio.AbstractEventLoop,
) -> None:
    log: list[str] = []
    cork = Cork(loop)
    assert cork.hold(Writer("first", log)) is False  # it writes itself, now
    assert cork.hold(Writer("a", log)) and cork.hold(Writer("b", log))
    assert log == []
    end_of_pass(loop)
    assert log == ["a", "b"]  # in the order they began holding
    assert cork.since == 0.0
    assert cork.hold(Writer("next pass", log)) is False  # a new pass: first again


def test_holding_the_most_releases_them_all(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cork_module, "HOLD_MOST", 3)
    log: list[str] = []
    cork = Cork(loop)
    cork.hold(Writer("first", log))
    for name in "abc":
        cork.hold(Writer(name, log))
    assert log == ["a", "b", "c"]  # the third made it three: released before the pass ends


def test_a_request_beginning_late_releases_what_waits(loop: asyncio.AbstractEventLoop) -> None:
    log: list[str] = []
    cork = Cork(loop)
    cork.hold(Writer("first", log))
    cork.hold(Writer("a", log))
    cork.begin(cork.since + cork_module.HOLD_MOST_S / 2)
    assert log == []
    cork.begin(cork.since + cork_module.HOLD_MOST_S * 2)
    assert log == ["a"]


def test_only_back_to_back_requests_make_the_loop_busy(loop: asyncio.AbstractEventLoop) -> None:
    cork = Cork(loop)
    cork.ended = 100.0
    cork.begin(100.0 + cork_module.BUSY_GAP_S / 2)
    assert cork.busy
    cork.begin(100.0 + cork_module.BUSY_GAP_S * 5)  # a lone request on a quiet loop
    assert not cork.busy


def small_pass(cork: Cork, loop: asyncio.AbstractEventLoop, log: list[str]) -> None:
    """A pass whose first response went at once and that held one more."""
    cork.hold(Writer("first", log))
    cork.hold(Writer("a", log))  # fewer than HOLD_LEAST: not worth a pass-end callback
    end_of_pass(loop)


def test_small_passes_in_a_row_pause_holding(loop: asyncio.AbstractEventLoop) -> None:
    log: list[str] = []
    cork = Cork(loop)
    for _ in range(cork_module.SMALL_PASSES):
        cork.ended = 100.0
        cork.begin(100.0)
        assert cork.busy  # (not cooling yet)
        small_pass(cork, loop, log)
    cork.ended = 100.0
    for _ in range(cork_module.COOL_BEGINS):
        cork.begin(100.0)  # back to back, but cooling
        assert not cork.busy
    cork.begin(100.0)
    assert cork.busy


def test_a_full_pass_between_small_ones_keeps_holding(loop: asyncio.AbstractEventLoop) -> None:
    """A small pass now and then (64 busy clients) must not pause holding."""
    log: list[str] = []
    cork = Cork(loop)
    for _ in range(cork_module.SMALL_PASSES * 3):
        for _ in range(cork_module.SMALL_PASSES - 1):
            small_pass(cork, loop, log)
        cork.hold(Writer("first", log))
        for n in range(cork_module.HOLD_LEAST):
            cork.hold(Writer(f"w{n}", log))
        end_of_pass(loop)
        cork.ended = 100.0
        cork.begin(100.0)
        assert cork.busy


def test_one_cork_per_loop_and_none_left_after_it(loop: asyncio.AbstractEventLoop) -> None:
    other = asyncio.new_event_loop()
    assert cork_for(loop) is cork_for(loop)
    assert cork_for(loop) is not cork_for(other)
    gone = weakref.ref(other)
    other.close()
    del other
    gc.collect()
    assert gone() is None  # a test process makes hundreds of loops: none may be kept
