"""Worker threads wait their turn (``SCHED_BATCH``) where an I/O thread wakes them, and only there.

``pool``'s workers and ``asyncio``'s threads for sync code are woken by the thread that does
the I/O (portable.worker_waits_its_turn says why they should not preempt it); that thread
keeps the default policy, and so do ``threads`` and ``single``, whose threads do their own
I/O. ``THREADLOOM_WORKER_SCHED=normal`` turns it off.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from threadloom import portable
from threadloom.testing import MODELS, running_server

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's; elsewhere nothing changes"
)

#: model: whether the WSGI app runs on a worker that an I/O thread wakes
WOKEN_BY_AN_IO_THREAD = {"single": False, "threads": False, "pool": True, "asyncio": True}


def policy_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Answers the scheduling policy of the thread that runs it."""
    body = str(os.sched_getscheduler(0)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app_policy(address: tuple[str, int]) -> int:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", "/")
        answer = conn.getresponse()
        assert answer.status == 200
        return int(answer.read())
    finally:
        conn.close()


def serving_thread_policy() -> int:
    """The policy of the thread the testing kit serves on (pool's I/O thread, the loop)."""
    (thread,) = [t for t in threading.enumerate() if t.name == "threadloom-test-server"]
    assert thread.native_id is not None
    return os.sched_getscheduler(thread.native_id)


@pytest.mark.parametrize("model", MODELS)
def test_only_workers_woken_by_an_io_thread_wait_their_turn(model: str) -> None:
    expected = os.SCHED_BATCH if WOKEN_BY_AN_IO_THREAD[model] else os.SCHED_OTHER
    with running_server(policy_app, model=model) as server:
        assert app_policy(server.addresses[0]) == expected
        assert serving_thread_policy() == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread, untouched


@pytest.mark.parametrize("model", [m for m in MODELS if WOKEN_BY_AN_IO_THREAD[m]])
def test_the_switch_keeps_the_default_policy(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(portable.WORKER_SCHED_ENV, "normal")
    with running_server(policy_app, model=model) as server:
        assert app_policy(server.addresses[0]) == os.SCHED_OTHER


def test_a_refusal_leaves_the_thread_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox may forbid the call: the worker keeps its policy and serves."""

    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert portable.worker_waits_its_turn() is False
    with running_server(policy_app, model="pool") as server:
        assert app_policy(server.addresses[0]) == os.SCHED_OTHER
