"""The operations port (``--metrics-bind``): ``/metrics``, ``/healthz`` and ``/readyz``.

It is a separate listener, never the app's port, so a scrape or a probe can neither be
routed to the app nor queue behind it, and it stays up while the app's listeners drain.

Theory of operation
-------------------
:class:`Endpoint` is a tiny non-blocking HTTP responder driven by whatever selector loop
owns it: every descriptor it registers carries a callback ``f(mask)`` as its selector data,
and the loop calls :meth:`Endpoint.sweep` each turn to drop clients that dawdle. A
single-process server runs it on its own thread (:class:`Operations`); a supervisor runs it
in its own single-threaded loop, because a supervisor must never have threads when it forks.
Each request gets one response and the connection closes.

:class:`Health` is what a load balancer sees. ``/readyz`` answers 200 once the server
serves and 503 ``draining`` from the moment SIGTERM arrives; ``/healthz`` answers 200 while
the process is fine and 503 ``draining`` once it is going away. With ``--shutdown-delay S``
the server keeps serving S seconds after turning 503 (:meth:`Operations.drain`), so a
balancer stops sending traffic before anything is refused.

``/metrics`` is Prometheus text rendered by prometheus-client (the ``metrics`` extra) from a
:mod:`threadloom.stats` snapshot; a supervisor passes the sum of its workers' snapshots.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.net.listeners import Listener, bind
from threadloom.net.waker import Waker
from threadloom.stats import STATS

log = logging.getLogger("threadloom.metrics")

#: A probe or scrape must send its request within this long.
CLIENT_TIMEOUT_S = 5.0
MAX_REQUEST_HEAD = 8192
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
REASONS |= {431: "Request Header Fields Too Large", 500: "Internal Server Error"}
REASONS |= {503: "Service Unavailable"}
#: What ``/metrics`` renders: a snapshot (or a sum of them) plus supervisor facts.
Collect = Callable[[], tuple[Mapping[str, Any], Mapping[str, float]]]


def require_prometheus() -> None:
    """Fail at start-up, in one line, when ``--metrics-bind`` is given without the extra."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(
            "--metrics-bind needs prometheus-client: pip install 'threadloom[metrics]'"
        )


class Health:
    """Liveness and readiness, as ``/healthz`` and ``/readyz`` report them."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self._ready = ready
        #: Set on SIGTERM: both probes answer 503 from then on.
        self.draining = False

    def liveness(self) -> tuple[int, bytes]:
        return (503, b"draining\n") if self.draining else (200, b"ok\n")

    def readiness(self) -> tuple[int, bytes]:
        if self.draining:
            return 503, b"draining\n"
        return (200, b"ready\n") if self._ready() else (503, b"starting\n")


class _Client:
    __slots__ = ("deadline", "inbox", "outbox", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = b""
        self.outbox = b""


class Endpoint:
    """``/metrics``, ``/healthz``, ``/readyz`` on one listener, driven by a selector loop."""

    def __init__(self, listener: Listener, health: Health, collect: Collect) -> None:
        self.listener = listener
        self.health = health
        self.collect = collect
        self._selector: selectors.BaseSelector | None = None
        self._clients: dict[socket.socket, _Client] = {}

    @property
    def url(self) -> str:
        return f"http://{self.listener.url}"

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Register with the loop's selector; selector data are callbacks ``f(mask)``."""
        self._selector = selector
        selector.register(self.listener.sock, selectors.EVENT_READ, self._accept)

    def sweep(self, now: float) -> float | None:
        """Drop clients past their deadline; seconds until the next deadline, if any."""
        for client in [c for c in self._clients.values() if c.deadline <= now]:
            self._drop(client)
        if not self._clients:
            return None
        return max(min(c.deadline for c in self._clients.values()) - now, 0.0)

    def close(self) -> None:
        """Stop serving: close the listener and every client."""
        for client in list(self._clients.values()):
            self._drop(client)
        if self._selector is not None:
            self._selector.unregister(self.listener.sock)
            self._selector = None
        self.listener.close()

    def abandon(self) -> None:
        """In a forked worker: close our copies of the sockets, touching nothing shared."""
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()
        self.listener.sock.close()

    def _accept(self, mask: int) -> None:
        assert self._selector is not None
        for _ in range(16):
            try:
                sock, _ = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("metrics accept failed: %s", exc)
                return
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + CLIENT_TIMEOUT_S)
            self._clients[sock] = client
            self._selector.register(
                sock, selectors.EVENT_READ, functools.partial(self._on_client, client)
            )

    def _on_client(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_READ and not client.outbox:
            try:
                data = client.sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(client)
                return
            client.inbox += data
            end = client.inbox.find(b"\r\n\r\n")
            if end < 0 and len(client.inbox) <= MAX_REQUEST_HEAD:
                return
            client.outbox = self._respond(client.inbox) if end >= 0 else _response(431, b"")
        self._send(client)

    def _send(self, client: _Client) -> None:
        assert self._selector is not None
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client)
            return
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._drop(client)
        else:
            self._selector.modify(
                client.sock, selectors.EVENT_WRITE, functools.partial(self._on_client, client)
            )

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock, None)
        if self._selector is not None:
            self._selector.unregister(client.sock)
        client.sock.close()

    def _respond(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(400, b"bad request\n")
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"GET or HEAD only\n")
        if path == b"/metrics":
            try:
                snapshot, extra = self.collect()
                status, body, kind = 200, render(snapshot, extra), content_type()
            except Exception:
                log.exception("rendering /metrics failed")
                status, body, kind = 500, b"metrics failed\n", "text/plain"
        elif path == b"/healthz":
            (status, body), kind = self.health.liveness(), "text/plain"
        elif path == b"/readyz":
            (status, body), kind = self.health.readiness(), "text/plain"
        else:
            status, body, kind = 404, b"try /metrics, /healthz or /readyz\n", "text/plain"
        return _response(status, b"" if method == b"HEAD" else body, kind, len(body))


def _response(status: int, body: bytes, kind: str = "text/plain", length: int = -1) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body) if length < 0 else length}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST  # noqa: PLC0415 - an optional extra

    return str(CONTENT_TYPE_LATEST)


def render(snapshot: Mapping[str, Any], extra: Mapping[str, float]) -> bytes:
    """Prometheus text for a :mod:`threadloom.stats` snapshot (summed over workers)."""
    from prometheus_client import generate_latest  # noqa: PLC0415 - an optional extra
    from prometheus_client.core import (  # noqa: PLC0415
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    requests = CounterMetricFamily(
        "threadloom_requests", "HTTP requests answered, by status class", labels=["status"]
    )
    for status, count in snapshot["requests_by_class"].items():
        requests.add_metric([status], count)
    cumulative, buckets = 0, []
    for bound, count in zip(
        [*snapshot["latency_bounds"], "+Inf"], snapshot["latency_counts"], strict=True
    ):
        cumulative += count
        buckets.append((str(bound), cumulative))
    latency = HistogramMetricFamily(
        "threadloom_request_duration_seconds",
        "Time from handing a request to the app to the end of its response",
        buckets=buckets,
        sum_value=snapshot["latency_sum_seconds"],
    )
    families: list[Metric] = [requests, latency]
    gauges = {
        "open_connections": "Open client connections",
        "busy_threads": "Threads running app code now",
        "idle_threads": "Threads waiting for work",
        "queue_depth": "Requests waiting for a thread",
        "rss_bytes": "Resident memory of the serving processes",
    }
    for key, text in gauges.items():
        name = "threadloom_resident_memory_bytes" if key == "rss_bytes" else f"threadloom_{key}"
        families.append(GaugeMetricFamily(name, text, value=snapshot[key]))
    families.append(
        CounterMetricFamily(
            "threadloom_h2_floods_refused",
            "HTTP/2 connections closed for a flood of resets or control frames",
            value=snapshot.get("h2_floods_refused", 0),
        )
    )
    by_protocol = CounterMetricFamily(
        "threadloom_requests_by_protocol",
        "Requests answered, by HTTP version",
        labels=["protocol"],
    )
    for protocol, count in snapshot.get("requests_by_protocol", {}).items():
        by_protocol.add_metric([protocol], count)
    families.append(by_protocol)
    families.append(
        CounterMetricFamily(
            "threadloom_slow_readers_dropped",
            "Connections dropped for reading a response slower than --min-send-rate",
            value=snapshot.get("slow_readers_dropped", 0),
        )
    )
    families.append(
        CounterMetricFamily(
            "threadloom_worker_restarts",
            "Worker processes that died and were restarted",
            value=extra.get("worker_restarts", 0),
        )
    )
    if "workers" in extra:
        families.append(
            GaugeMetricFamily("threadloom_workers", "Worker processes alive", extra["workers"])
        )
    return generate_latest(_Families(families))


class _Families:
    """A prometheus-client collector that yields metric families made beforehand."""

    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Any]:
        return self.families


def collect_local() -> tuple[Mapping[str, Any], Mapping[str, float]]:
    """This process's snapshot (no supervisor: no restarts)."""
    return STATS.snapshot(), {}


class Operations:
    """A single-process server's ops: the endpoint thread, health, ``--shutdown-delay``."""

    def __init__(self, config: Config, ready: Callable[[], bool]) -> None:
        self.config = config
        self.health = Health(ready)
        self.endpoint: Endpoint | None = None
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None
        self._waker: Waker | None = None
        self._stopping = False
        if config.metrics_bind:
            require_prometheus()
            listener = bind(config.metrics_bind)
            self.endpoint = Endpoint(listener, self.health, collect_local)
            log.info("metrics, health and readiness on %s", self.endpoint.url)

    def begin(self) -> None:
        """Start answering probes and scrapes (on a thread of its own)."""
        if self.endpoint is None or self._thread is not None:
            return
        self._waker = Waker()
        self._thread = threading.Thread(
            target=self._loop, args=(self.endpoint, self._waker), name="threadloom-metrics"
        )
        self._thread.daemon = True
        self._thread.start()

    def drain(self, stop: Callable[[], None]) -> None:
        """SIGTERM: probes answer 503 now; ``stop`` runs after ``--shutdown-delay`` seconds."""
        self.health.draining = True
        delay = self.config.shutdown_delay
        if delay <= 0 or self._timer is not None:
            stop()
            return
        log.info("/readyz answers 503 now; serving %gs more before draining", delay)
        self._timer = threading.Timer(delay, stop)
        self._timer.name = "threadloom-shutdown-delay"
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Cancel a pending delay and stop the endpoint (after the server has stopped)."""
        if self._timer is not None:
            self._timer.cancel()
        self._stopping = True
        if self._thread is not None and self._waker is not None:
            self._waker.wake()
            self._thread.join()
            self._waker.close()
            self._thread = None
        elif self.endpoint is not None:
            self.endpoint.listener.close()

    def _loop(self, endpoint: Endpoint, waker: Waker) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(waker.fileno(), selectors.EVENT_READ, lambda mask: waker.drain())
            endpoint.attach(selector)
            while not self._stopping:
                for key, mask in selector.select(endpoint.sweep(time.monotonic())):
                    key.data(mask)
            endpoint.close()
