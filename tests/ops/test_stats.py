"""The request counters: status classes and latency buckets come out as they went in."""

from __future__ import annotations

import threading

from threadloom.stats import LATENCY_BOUNDS, Stats


def test_classes_and_buckets_from_several_threads() -> None:
    stats = Stats()
    seen = [(200, 0.0001), (204, 0.0005), (404, 0.0006), (503, 0.003), (99, 7.0), (700, 5.0)]

    def count() -> None:
        for status, seconds in seen:
            stats.request(status, seconds)

    threads = [threading.Thread(target=count) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    classes, counts, seconds, _ = stats.totals()
    assert classes == [6, 0, 6, 0, 3, 3]  # other (99 and 700), 1xx .. 5xx
    expected = [0] * (len(LATENCY_BOUNDS) + 1)
    for bucket in (0, 0, 1, 3, 13, 12):  # a bound is in its own bucket (<=); 7 s is +Inf
        expected[bucket] += 3
    assert counts == expected
    assert abs(seconds - 3 * sum(s for _, s in seen)) < 1e-9
    snapshot = stats.snapshot()
    assert snapshot["requests_total"] == 18
    assert snapshot["requests_by_class"] == {"1xx": 0, "2xx": 6, "3xx": 0, "4xx": 3, "5xx": 3}
