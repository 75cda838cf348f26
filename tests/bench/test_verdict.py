"""Verdicts from figures: the same code must pick whichever model the numbers favour."""

from __future__ import annotations

from typing import Any

import pytest

from threadloom.bench.report import cell
from threadloom.bench.verdict import decide, fmt_ms, fmt_rate


def row(
    model: str,
    connections: int,
    rps: float | None,
    p99: float | None = 5.0,
    status: str = "ok",
    workload: str = "io",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "model": model,
        "workload": workload,
        "connections": connections,
        "status": status,
        "note": extra.pop("note", ""),
        "rps": rps,
        "p50_ms": p99 / 2 if p99 else None,
        "p99_ms": p99,
        "errors": 0,
        "rss_mb": 30.0,
        "threads": extra.pop("threads", 10),
        "client_bound": False,
        **extra,
    }


def test_the_fastest_clean_model_is_picked_and_laggards_are_placed() -> None:
    rows = [
        row("single", 64, 90.0, status="timeout", note="63 of 64 connections never answered"),
        row("threads", 64, 5400.0),
        row("pool", 64, 950.0),
        row("asyncio", 64, 5800.0),
        row("workers", 64, 3000.0),
    ]
    v = decide("io", "http", rows)
    assert v.pick == ["asyncio", "threads"]  # threads is within 10%
    assert v.far_behind == ["single", "pool"]
    assert v.behind == ["workers"]
    assert v.not_clean == {"single": "timeout"}
    assert "single is far behind: 90.0 req/s (64x less), and it timed out: 63 of 64" in v.text
    assert "pool is far behind: 950 req/s (6x less)" in v.text


@pytest.mark.parametrize("fast", ["single", "threads", "pool", "asyncio", "workers"])
def test_whichever_model_has_the_figures_wins(fast: str) -> None:
    models = ["single", "threads", "pool", "asyncio", "workers"]
    rows = [row(m, 64, 10_000.0 if m == fast else 1_000.0) for m in models]
    v = decide("io", "http", rows)
    assert v.pick == [fast]
    assert sorted(v.far_behind) == sorted(m for m in models if m != fast)
    assert v.text.startswith(f"**Pick {fast}**: at 64 connections, {fast} 10.0k req/s")


def test_a_row_that_timed_out_is_never_picked_however_fast() -> None:
    rows = [row("single", 16, 50_000.0, status="timeout"), row("pool", 16, 9_000.0)]
    v = decide("hello", "http", [dict(r, workload="hello") for r in rows])
    assert v.pick == ["pool"]
    assert "single" in v.not_clean


def test_ties_are_ordered_by_p99() -> None:
    rows = [row("pool", 8, 1000.0, p99=9.0), row("asyncio", 8, 950.0, p99=2.0)]
    assert decide("io", "http", rows).pick == ["asyncio", "pool"]


def test_the_verdict_uses_the_most_connections_with_a_clean_figure() -> None:
    rows = [
        row("pool", 1, 100.0),
        row("pool", 16, 900.0),
        row("pool", 256, 950.0, status="errors", note="errors under load: read 3"),
        row("asyncio", 1, 95.0),
        row("asyncio", 16, 1500.0),
        row("asyncio", 256, None, status="failed", note="crashed"),
    ]
    v = decide("io", "http", rows)
    assert v.connections == 16 and v.pick == ["asyncio"]
    assert "grew 16x from 1 to 16 connections" in v.text


def test_flat_throughput_is_explained_as_cpu_bound() -> None:
    rows = [row("pool", 1, 800.0, p99=1.5), row("pool", 64, 820.0, p99=90.0)]
    text = decide("cpu", "http", [dict(r, workload="cpu") for r in rows]).text
    assert "stayed flat from 1 to 64 connections (p99 went from 1.50 ms to 90 ms)" in text


def test_unavailable_and_failed_models_are_not_ranked() -> None:
    rows = [
        row("pool", 64, 900.0),
        row("workers", 64, None, status="unavailable", note="needs --workers"),
        row("threads", 64, None, status="failed", note="exited while starting"),
    ]
    v = decide("io", "http", rows)
    assert v.pick == ["pool"] and v.far_behind == []
    assert "workers" not in v.text
    assert "threads could not be measured" in v.text


def test_no_clean_figure_means_no_pick() -> None:
    v = decide("io", "http", [row("single", 64, 90.0, status="timeout")])
    assert v.pick == [] and "nothing to pick" in v.text


def test_idle_picks_the_least_memory_per_connection() -> None:
    rows = [
        row("threads", 256, 5000.0, workload="idle", mem_per_conn_kb=20.5, threads=258),
        row("asyncio", 256, 9000.0, workload="idle", mem_per_conn_kb=4.0, threads=1),
        row("pool", 256, 8000.0, workload="idle", mem_per_conn_kb=1.5, threads=11),
        row("single", 256, 0.0, p99=None, status="timeout", workload="idle", note="255 of 256"),
    ]
    v = decide("idle", "idle", rows)
    assert v.pick == ["pool"]
    assert "asyncio 4.0 KiB per connection (1 thread)" in v.text
    assert "single timed out: 255 of 256" in v.text


def test_formats() -> None:
    assert fmt_rate(None) == "-" and fmt_rate(53.46) == "53.5" and fmt_rate(958.2) == "958"
    assert fmt_rate(12_345.0) == "12.3k"
    assert fmt_ms(0.123) == "0.12 ms" and fmt_ms(72.4) == "72 ms" and fmt_ms(None) == "-"
    assert cell(row("pool", 64, 950.0, p99=72.0)) == "950 · 72 ms"
    assert cell(row("single", 64, 90.0, p99=14.0, status="timeout")) == "90.0 · 14 ms · timed out"
    assert cell(row("workers", 64, None, status="unavailable")) == "n/a"


def test_a_model_that_timed_out_near_the_winner_is_named_but_not_ranked() -> None:
    rows = [
        row("pool", 64, 432.0, workload="cpu"),
        row("asyncio", 64, 390.0, status="timeout", workload="cpu", note="19 of 64 waited"),
    ]
    v = decide("cpu", "http", rows)
    assert v.pick == ["pool"] and v.far_behind == [] and v.not_clean == {"asyncio": "timeout"}
    assert "asyncio timed out: 19 of 64 waited. It is not ranked (390 req/s)." in v.text
