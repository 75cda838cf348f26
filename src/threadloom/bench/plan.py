"""What a bench run measures: models, workloads, connection counts, durations.

Every choice of the run lives in one frozen :class:`Plan`, built from the command line, so the
runner, the report and ``results.json`` all read the same settings. The two presets are here:
the full matrix (a few minutes) and ``--quick`` (under three minutes on a two-core machine).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from threadloom.config import Config
from threadloom.models import MODELS as REGISTRY
from threadloom.models import model_class

#: The bench's own column: ``WORKERS_MODEL`` in two worker processes (``--workers``).
WORKERS = "workers"
WORKERS_MODEL = "pool"
#: Every model, then the workers column.
MODELS = (*REGISTRY, WORKERS)
_APPS = "threadloom.bench.workloads"


def served_model(model: str) -> str:
    """The ``--model`` a bench column runs."""
    return WORKERS_MODEL if model == WORKERS else model


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload: its two forms and how it is loaded.

    ``load`` is ``http`` (wrk or the built-in client), ``h2`` (h2load), ``ws`` (WebSocket
    echo), ``raw`` (the
    tutorial's connect-send-reply exchange) or ``idle`` (idle connections plus one client).
    """

    name: str
    load: str
    sync_app: str | None
    async_app: str | None
    summary: str
    interface: str | None = None
    builtin: bool = True

    def app_for(self, model: str) -> str | None:
        """The form a model runs: async where it runs coroutines (a sync one runs on its pool),
        else sync."""
        if model_class(served_model(model)).runs_coroutines:
            return self.async_app or self.sync_app
        return self.sync_app


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "http", f"{_APPS}:hello_wsgi", f"{_APPS}:hello_asgi", "trivial response"),
        Workload(
            "io",
            "http",
            f"{_APPS}:io_wsgi",
            f"{_APPS}:io_asgi",
            "waits 10 ms, like a database call",
        ),
        Workload(
            "cpu", "http", f"{_APPS}:cpu_wsgi", f"{_APPS}:cpu_asgi", "about 1 ms of pure Python"
        ),
        Workload(
            "ws",
            "ws",
            f"{_APPS}:echo_sync",
            f"{_APPS}:echo_async",
            "WebSocket echo of 32-byte messages",
            interface="websocket",
        ),
        Workload(
            "h2",
            "h2",
            f"{_APPS}:hello_wsgi",
            f"{_APPS}:hello_asgi",
            "hello over HTTP/2 (h2load, 10 streams per connection)",
        ),
        Workload(
            "idle",
            "idle",
            f"{_APPS}:hello_wsgi",
            f"{_APPS}:hello_asgi",
            "N idle keep-alive connections held open; one client measures",
        ),
    )
}

#: The load each interface of a user's app gets under ``--app``.
APP_LOADS = {"wsgi": "http", "asgi": "http", "websocket": "ws", "raw": "raw"}


def app_workload(target: str, interface: str, is_async: bool) -> Workload:
    """The user's own handler as the one workload of the run."""
    return Workload(
        name="app",
        load=APP_LOADS[interface],
        sync_app=None if is_async else target,
        async_app=target if is_async else None,
        summary=f"your app {target} ({interface}{', async' if is_async else ''})",
        interface=interface,
        builtin=False,
    )


def workers_supported() -> bool:
    """Whether ``threadloom serve`` has ``--workers`` yet (the ``workers`` model needs it)."""
    return WORKERS in {f.name for f in dataclasses.fields(Config)}


@dataclass(frozen=True, slots=True)
class Plan:
    """One run's matrix and method."""

    models: tuple[str, ...] = MODELS
    workloads: tuple[Workload, ...] = tuple(WORKLOADS.values())
    connections: tuple[int, ...] = (1, 16, 64, 256)
    duration: float = 1.0
    rounds: int = 3
    #: Seconds of warm-up before each connection count, by the built-in client, which also
    #: counts the connections that got no answer (wrk cannot).
    warmup: float = 1.0
    generator: str = "auto"
    quick: bool = False
    timeout: float = 2.0
    #: Seconds the one client of ``idle`` measures in each round.
    idle_window: float = 1.0

    @property
    def cells(self) -> int:
        """Model x workload x connections: what the progress display counts."""
        return len(self.models) * len(self.workloads) * len(self.connections)


FULL = Plan()
QUICK = Plan(
    connections=(8, 64),
    duration=1.0,
    rounds=3,
    warmup=0.4,
    quick=True,
    idle_window=0.3,
)
