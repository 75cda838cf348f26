"""Counters (``threadloom.stats``) and the operations port (``--metrics-bind``)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tests.ops.ops_apps import app
from tests.ops.support import Proc, address, get, terminate
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.metrics import render
from threadloom.models import model_class
from threadloom.stats import LATENCY_BOUNDS, STATS, Load, Stats, merge
from threadloom.testing import MODELS, running_server

Spawn = Callable[..., Proc]


def scrape(where: object) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value}."""
    status, text = get(where, "/metrics")  # type: ignore[arg-type]
    assert status == 200, text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


# -- Stats, without any server ---------------------------------------------------------------


def test_counts_from_many_threads_add_up_exactly() -> None:
    stats = Stats()

    def work() -> None:
        for i in range(2000):
            stats.opened()
            stats.request(200 if i % 4 else 503, 0.002)
            stats.closed()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = stats.snapshot()
    assert snap["requests_total"] == 16000
    assert snap["requests_by_class"] == {"1xx": 0, "2xx": 12000, "3xx": 0, "4xx": 0, "5xx": 4000}
    assert snap["open_connections"] == 0
    assert sum(snap["latency_counts"]) == 16000
    assert snap["latency_counts"][LATENCY_BOUNDS.index(0.0025)] == 16000
    assert snap["latency_sum_seconds"] == pytest.approx(32.0)


def test_finished_threads_are_folded_without_losing_counts() -> None:
    stats = Stats()
    for _ in range(200):  # a thread per connection, as the threads model does
        thread = threading.Thread(target=stats.request, args=(404, 0.0))
        thread.start()
        thread.join()
    assert stats.snapshot()["requests_by_class"]["4xx"] == 200
    assert len(stats._shards) < 64


def test_load_sources_and_rate() -> None:
    stats = Stats()

    class Model:
        def load(self) -> Load:
            return Load(threads=10, busy=3, queued=7)

    model = Model()
    stats.add_source(model.load)
    snap = stats.snapshot()
    assert (snap["busy_threads"], snap["idle_threads"], snap["queue_depth"]) == (3, 7, 7)
    assert snap["rss_bytes"] > 0
    stats.remove_source(model.load)
    assert stats.snapshot()["idle_threads"] == 0
    for _ in range(5):
        stats.request(200, 0.001)
    time.sleep(0.1)
    # five requests since the first snapshot, at least 0.1 s ago
    assert 0.0 < stats.snapshot()["requests_per_second"] <= 5 / 0.1


def test_merge_sums_workers() -> None:
    one, two = Stats(), Stats()
    one.request(200, 0.001)
    two.request(500, 2.0)
    two.opened()
    total = merge([one.snapshot(), two.snapshot()])
    assert total["requests_total"] == 2
    assert total["requests_by_class"]["5xx"] == 1
    assert total["open_connections"] == 1
    assert sum(total["latency_counts"]) == 2
    assert total["latency_bounds"] == list(LATENCY_BOUNDS)


def test_prometheus_text() -> None:
    stats = Stats()
    stats.request(201, 0.004)
    text = render(stats.snapshot(), {"worker_restarts": 2, "workers": 4}).decode()
    assert 'threadloom_requests_total{status="2xx"} 1.0' in text
    assert 'threadloom_request_duration_seconds_bucket{le="0.005"} 1.0' in text
    assert 'threadloom_request_duration_seconds_bucket{le="0.0025"} 0.0' in text
    assert "threadloom_worker_restarts_total 2.0" in text
    assert "threadloom_workers 4.0" in text
    for gauge in ("open_connections", "busy_threads", "idle_threads", "queue_depth"):
        assert f"threadloom_{gauge} " in text


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="--max-requests needs --workers"):
        Config(max_requests=10).validated()
    for name in ("workers", "max_requests_jitter", "shutdown_delay"):
        with pytest.raises(ConfigError, match="must not be negative"):
            Config(**{name: -1}).validated()


# -- the endpoint of a single-process server, under every model ------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_counters_move_with_traffic(model: str) -> None:
    open_before = STATS.snapshot()["open_connections"]
    with running_server(app, model=model, metrics_bind="127.0.0.1:0") as server:
        assert server.ops is not None and server.ops.endpoint is not None
        ops = address(server.ops.endpoint.listener.url)
        where = server.addresses[0]
        assert get(ops, "/readyz") == (200, "ready\n")
        assert get(ops, "/healthz") == (200, "ok\n")
        before = scrape(ops)
        for _ in range(5):
            assert get(where)[0] == 200
        assert get(where, "/missing")[0] == 404
        ok = 'threadloom_requests_total{status="2xx"}'
        missing = 'threadloom_requests_total{status="4xx"}'
        count = "threadloom_request_duration_seconds_count"
        with socket.create_connection(where) as held:  # an open, idle connection
            held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held.recv(4096).startswith(b"HTTP/1.1 200")
            # a request is counted just after its response is sent, by the thread that sent
            # it (under `threads`, one a connection, in any order): wait for all seven
            deadline = time.monotonic() + 5
            after = scrape(ops)
            while after[count] - before[count] < 7 and time.monotonic() < deadline:
                time.sleep(0.02)
                after = scrape(ops)
        assert after[ok] - before[ok] == 6
        assert after[missing] - before[missing] == 1
        assert after[count] - before[count] == 7
        assert after["threadloom_open_connections"] >= 1
        idle = after["threadloom_idle_threads"] + after["threadloom_busy_threads"]
        assert idle >= (10 if model_class(model).runs_sync_on_pool else 1)
        assert get(ops, "/nothing")[0] == 404
    # every connection the test opened is counted closed once the server has stopped
    assert STATS.snapshot()["open_connections"] == open_before


def test_bad_requests_to_the_endpoint() -> None:
    with running_server(app, model="pool", metrics_bind="127.0.0.1:0") as server:
        assert server.ops is not None and server.ops.endpoint is not None
        host, port = address(server.ops.endpoint.listener.url)  # type: ignore[misc]
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("POST", "/metrics", body=b"x")
        assert conn.getresponse().status == 405
        conn.close()
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"nonsense\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400")


# -- the supervisor sums its workers ---------------------------------------------------------


def test_metrics_cover_every_worker_and_count_restarts(spawn: Spawn) -> None:
    args = ("--workers", "2", "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0")
    proc = spawn("ops_apps:app", *args)
    ops = address(proc.expect(r"health and readiness on http://(\S+)")[1])
    pids = [int(proc.expect(r"worker (\d+) ready")[1]) for _ in range(2)]
    where = address(proc.serving())
    answered = {int(get(where)[1]) for _ in range(40)}
    samples = scrape(ops)
    assert samples['threadloom_requests_total{status="2xx"}'] == 40
    assert samples["threadloom_workers"] == 2
    assert samples["threadloom_idle_threads"] + samples["threadloom_busy_threads"] == 20
    os.kill(pids[0] if pids[0] in answered else pids[1], signal.SIGKILL)
    proc.expect(r"starting another")
    proc.expect(r"worker \d+ ready")
    samples = scrape(ops)
    assert samples["threadloom_worker_restarts_total"] == 1
    assert samples['threadloom_requests_total{status="2xx"}'] == 40  # the dead one's count stays
    assert get(ops, "/readyz") == (200, "ready\n")
    terminate(proc)


def test_missing_extras_are_one_line_errors(spawn: Spawn) -> None:
    for module, flag, needs in (
        ("prometheus_client", "--metrics-bind=127.0.0.1:0", "prometheus-client"),
        ("watchfiles", "--reload", "watchfiles"),
    ):
        code = (
            f"import sys; sys.modules[{module!r}] = None; from threadloom.cli import main; "
            f"sys.exit(main(['serve', 'ops_apps:app', {flag!r}, '--bind', '127.0.0.1:0']))"
        )
        proc = spawn(argv=[sys.executable, "-c", code])
        status, text = proc.finish()
        assert status == 2
        assert re.fullmatch(rf"threadloom: error: .*needs {needs}: pip install .*", text), text
