"""Python time per hello-world WSGI request in the thread models' HTTP session, no sockets.

    .venv/bin/python benchmarks/session_micro.py            # about 15 s
    THREADLOOM_PURE_PYTHON=1 .venv/bin/python benchmarks/session_micro.py

Feeds wrk's request to an ``HTTPSession`` and serves it, with a stand-in socket whose
``send`` only counts: what is timed is the Python (and our C) a request costs on top of the
kernel's recv and send. It also times the parts: ``feed`` (parse and queue), the WSGI runner
alone (environ, app, response), and the whole ``feed`` + ``serve``. Each figure is the best
of five runs of 200,000 requests (the least disturbed by other load). BENCHMARKS.md
("Where the time goes") explains how these figures relate to req/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from threadloom.config import Config
from threadloom.engine.body import EMPTY_INPUT
from threadloom.engine.http import HTTPSession
from threadloom.engine.http1_core import HTTPSettings
from threadloom.interfaces.wsgi import WSGIRunner
from threadloom.protocols.http1 import Request
from threadloom.protocols.http1.speedups import ACTIVE

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8101\r\n\r\n"  # what wrk sends
COUNT = 200_000
CLIENT = ("127.0.0.1", 5555)


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


class CountingSocket:
    """The few socket methods the session calls; ``send`` takes everything at once."""

    sent = 0

    def setblocking(self, flag: bool) -> None:
        pass

    def send(self, data: bytes) -> int:
        self.sent += 1
        return len(data)

    def close(self) -> None:
        pass


def best_of(runs: int, work: Callable[[], None]) -> float:
    """Seconds per request, best of ``runs``."""
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best / COUNT


def main() -> None:
    runner = WSGIRunner(
        hello, server_name="127.0.0.1", server_port="8101", url_scheme="http", multithread=True
    )
    settings = HTTPSettings(Config(access_log=False), runner=runner)
    session = HTTPSession(settings, CountingSocket(), CLIENT)  # type: ignore[arg-type]
    queued = session.core.conn.requests

    def feed_only() -> None:
        for _ in range(COUNT):
            session.feed(REQUEST)
            queued.clear()

    def feed_and_serve() -> None:
        for _ in range(COUNT):
            session.feed(REQUEST)
            session.serve()

    requests: list[Request] = []
    for _ in range(COUNT):
        session.feed(REQUEST)
        requests.append(queued.popleft())

    def runner_only() -> None:
        for request in requests:
            runner.run(request, EMPTY_INPUT, session, CLIENT)

    feed_and_serve()  # warm the caches (status lines, header lines, environ keys)
    print(f"C fast paths: {'on' if ACTIVE else 'off'}")
    for name, work in (
        ("feed (parse, queue)", feed_only),
        ("WSGI runner alone", runner_only),
        ("feed + serve", feed_and_serve),
    ):
        print(f"{name:22s} {best_of(5, work) * 1e6:6.2f} us/request")


if __name__ == "__main__":
    main()
