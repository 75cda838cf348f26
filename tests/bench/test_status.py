"""How a round's figures become a status: errors, timeouts, starved connections."""

from __future__ import annotations

from typing import Any

from threadloom.bench.runner import _judge


def sample(requests: int, starved: int | None, **errors: int) -> dict[str, Any]:
    counts = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    non_2xx = errors.pop("non_2xx", 0)
    counts.update(errors)
    return {
        "requests": requests,
        "requests_per_s": float(requests),
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 4.0,
        "mean_ms": 1.0,
        "errors": counts,
        "non_2xx": non_2xx,
        **({} if starved is None else {"starved": starved}),
    }


def test_statuses_in_order_of_what_went_wrong() -> None:
    assert _judge(sample(0, 0), 4, 2.0, None)["status"] == "timeout"
    assert _judge(sample(10, 0, read=1), 4, 2.0, None)["status"] == "errors"
    assert _judge(sample(10, 0, non_2xx=10), 4, 2.0, None)["status"] == "errors"
    timed_out = _judge(sample(10, 0, timeout=3), 4, 2.0, None)
    assert timed_out["status"] == "timeout"
    assert timed_out["note"] == "3 requests waited longer than 2 s"
    assert _judge(sample(9000, 7), 8, 2.0, None)["note"] == (
        "7 of 8 connections got no answer within 2 s while the server answered the others"
    )
    assert _judge(sample(900, 0), 4, 2.0, None)["status"] == "ok"
    assert _judge(sample(900, None), 4, 2.0, None)["status"] == "ok"  # wrk cannot tell
