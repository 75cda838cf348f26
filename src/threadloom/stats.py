"""Process-wide counters for metrics, logs and the demo: cheap to bump, correct without the GIL.

Theory of operation
-------------------
Every thread that counts gets its own :class:`_Shard` (found through a ``threading.local``),
and only that thread ever writes to it, so the hot path takes no lock and never contends,
even on a free-threaded CPython. A reader sums the shards. Gauges that go up on one thread
and down on another (open connections) are kept as two monotonic counts, ``opened`` and
``closed``, whose difference is the gauge. Shards of threads that have ended are folded into
one retired shard now and then, so a thread-per-connection model does not grow the list
without bound.

What a model knows better than a counter (worker threads, how many are busy, how deep its
queue is) it reports itself: it registers a *load source*, a callable returning a
:class:`Load`, which :meth:`Stats.snapshot` calls and sums.

:meth:`Stats.snapshot` returns a plain dict (JSON-ready) so that the metrics endpoint, a
supervisor collecting from its workers (:func:`merge`) and the browser demo all read the
same thing, and none of them depends on prometheus-client.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

#: Upper bounds (seconds) of the request latency histogram; one more bucket is +Inf.
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Status classes counted; index ``status // 100``; index 0 holds anything outside 100-599.
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
#: Requests-per-second is measured over at least this many seconds between snapshots.
RATE_WINDOW_S = 1.0
#: Latency buckets: one per bound, and +Inf.
_COLUMNS = len(LATENCY_BOUNDS) + 1
_FIRST_BOUND = LATENCY_BOUNDS[0]
#: Registering this many shards triggers a sweep of the shards of finished threads.
_SWEEP_EVERY = 64


class Load(NamedTuple):
    """What a model reports about its threads: how many, how many busy, how many queued."""

    threads: int
    busy: int
    queued: int


LoadSource = Callable[[], Load]


class _Shard:
    """One thread's counts; written by that thread only.

    Requests are counted in one grid, a row per status class and a column per latency
    bucket: one list increment per request instead of two (this runs for every request).
    """

    __slots__ = (
        "closed",
        "floods",
        "grid",
        "h2_requests",
        "opened",
        "seconds",
        "slow_readers",
        "thread",
    )

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        self.grid = [0] * (len(STATUS_CLASSES) * _COLUMNS)
        self.seconds = 0.0
        self.opened = 0
        self.closed = 0
        self.slow_readers = 0
        self.floods = 0
        self.h2_requests = 0

    def add_to(self, total: _Shard) -> None:
        for i, n in enumerate(self.grid):
            total.grid[i] += n
        total.seconds += self.seconds
        total.opened += self.opened
        total.closed += self.closed
        total.slow_readers += self.slow_readers
        total.floods += self.floods
        total.h2_requests += self.h2_requests

    @property
    def classes(self) -> list[int]:
        """Requests per status class (index ``status // 100``, 0 for the rest)."""
        return [
            sum(self.grid[row * _COLUMNS : (row + 1) * _COLUMNS])
            for row in range(len(STATUS_CLASSES))
        ]

    @property
    def counts(self) -> list[int]:
        """Requests per latency bucket."""
        return [sum(self.grid[column::_COLUMNS]) for column in range(_COLUMNS)]


class Stats:
    """Counters for one process (use the module's :data:`STATS`)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._shards: list[_Shard] = []
        self._retired = _Shard(None)
        self._registered = 0
        self._sources: list[weakref.WeakMethod[LoadSource] | LoadSource] = []
        self._samples: deque[tuple[float, int]] = deque()
        #: Called after every counted request when set (a worker's ``--max-requests`` budget).
        self.on_request: Callable[[], None] | None = None

    # -- the hot path: one thread-local lookup and a few increments -----------------------------

    def request(self, status: int, seconds: float) -> None:
        """A response was sent (or refused) with ``status`` after ``seconds``."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        row = status // 100 if 100 <= status < 600 else 0
        column = 0 if seconds <= _FIRST_BOUND else bisect_left(LATENCY_BOUNDS, seconds)
        shard.grid[row * _COLUMNS + column] += 1
        shard.seconds += seconds
        hook = self.on_request
        if hook is not None:
            hook()

    def opened(self) -> None:
        """A connection was accepted."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard.opened += 1

    def closed(self) -> None:
        """A connection was closed."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard.closed += 1

    def slow_reader(self) -> None:
        """A connection was dropped for reading its response too slowly (--min-send-rate)."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard.slow_readers += 1

    def flood(self) -> None:
        """An HTTP/2 connection was closed for a flood (GOAWAY ENHANCE_YOUR_CALM)."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard.floods += 1

    def h2_request(self) -> None:
        """One of the requests counted by :meth:`request` came over HTTP/2."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard.h2_requests += 1

    def _register(self) -> _Shard:
        shard = _Shard(threading.current_thread())
        self._local.shard = shard
        with self._lock:
            self._shards.append(shard)
            self._registered += 1
            if self._registered % _SWEEP_EVERY == 0:
                self._fold_finished()
        return shard

    def _fold_finished(self) -> None:
        """Fold shards of ended threads into the retired one (caller holds the lock)."""
        alive = []
        for shard in self._shards:
            if shard.thread is None or shard.thread.is_alive():
                alive.append(shard)
            else:
                shard.add_to(self._retired)
        self._shards = alive

    # -- load sources --------------------------------------------------------------------------

    def add_source(self, source: LoadSource) -> None:
        """Report ``source()`` in snapshots until removed (bound methods are held weakly)."""
        ref: weakref.WeakMethod[LoadSource] | LoadSource = (
            weakref.WeakMethod(source) if hasattr(source, "__self__") else source
        )
        with self._lock:
            self._sources.append(ref)

    def remove_source(self, source: LoadSource) -> None:
        """Stop reporting ``source``."""
        with self._lock:
            self._sources = [r for r in self._sources if _resolve(r) not in (None, source)]

    def _load(self) -> Load:
        with self._lock:
            sources = [_resolve(r) for r in self._sources]
        threads = busy = queued = 0
        for source in sources:
            if source is not None:
                load = source()
                threads += load.threads
                busy += min(load.busy, load.threads)
                queued += load.queued
        return Load(threads, busy, queued)

    # -- reading -------------------------------------------------------------------------------

    def totals(self) -> tuple[list[int], list[int], float, int]:
        """Status-class counts, latency bucket counts, latency sum, open connections."""
        total = self._total()
        return total.classes, total.counts, total.seconds, max(total.opened - total.closed, 0)

    def _total(self) -> _Shard:
        total = _Shard(None)
        with self._lock:
            self._fold_finished()
            self._retired.add_to(total)
            for shard in self._shards:
                shard.add_to(total)
        return total

    def snapshot(self) -> dict[str, Any]:
        """Everything, as a JSON-ready dict (see the module docstring)."""
        total = self._total()
        classes, counts, seconds = total.classes, total.counts, total.seconds
        open_connections = max(total.opened - total.closed, 0)
        requests = sum(classes)
        load = self._load()
        return {
            "open_connections": open_connections,
            "requests_total": requests,
            "requests_by_class": dict(zip(STATUS_CLASSES[1:], classes[1:], strict=True)),
            "busy_threads": load.busy,
            "idle_threads": max(load.threads - load.busy, 0),
            "queue_depth": load.queued,
            "rss_bytes": rss_bytes(),
            "requests_per_second": self._rate(requests),
            "latency_bounds": list(LATENCY_BOUNDS),
            "latency_counts": counts,
            "latency_sum_seconds": seconds,
            "slow_readers_dropped": total.slow_readers,
            "h2_floods_refused": total.floods,
            "requests_by_protocol": {
                "HTTP/1.x": requests - total.h2_requests,
                "HTTP/2": total.h2_requests,
            },
        }

    def _rate(self, requests: int) -> float:
        """Requests per second since the newest snapshot at least RATE_WINDOW_S old."""
        now = time.monotonic()
        with self._lock:
            samples = self._samples
            samples.append((now, requests))
            while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW_S:
                samples.popleft()
            then, before = samples[0]
        elapsed = now - then
        return round((requests - before) / elapsed, 1) if elapsed > 0.05 else 0.0


def _resolve(ref: weakref.WeakMethod[LoadSource] | LoadSource) -> LoadSource | None:
    if isinstance(ref, weakref.WeakMethod):
        return ref()
    return ref


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum snapshots of several processes (a supervisor's workers) into one."""
    if not snapshots:
        return Stats().snapshot() | {"rss_bytes": 0, "requests_per_second": 0.0}
    merged = dict(snapshots[0])
    for key in ("requests_by_class", "requests_by_protocol"):
        merged[key] = dict(merged.get(key, {}))
    merged["latency_counts"] = list(merged["latency_counts"])
    for snap in snapshots[1:]:
        for key, value in snap.items():
            if key in ("requests_by_class", "requests_by_protocol"):
                for cls, n in value.items():
                    merged[key][cls] = merged[key].get(cls, 0) + n
            elif key == "latency_counts":
                merged[key] = [a + b for a, b in zip(merged[key], value, strict=True)]
            elif key != "latency_bounds" and isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
    merged["requests_per_second"] = round(merged["requests_per_second"], 1)
    return merged


def counters_only(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot with its gauges zeroed: what an exited worker still adds to the totals."""
    gauges = ("open_connections", "busy_threads", "idle_threads", "queue_depth", "rss_bytes")
    return snapshot | dict.fromkeys(gauges, 0) | {"requests_per_second": 0.0}


#: The process's counters: the engine and the models count here.
STATS = Stats()
