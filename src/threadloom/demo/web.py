"""The demo's HTTP side: the page, its static files, and endpoints that make load to watch.

Routes (GET and HEAD only; a table, not a chain of ifs):

* ``/`` the page (``static/index.html`` with the model filled in), ``/demo.css``, ``/demo.js``;
* ``/hello`` answers at once, ``/sleep?ms=N`` holds its thread N ms (I/O-like work),
  ``/cpu?ms=N`` spins pure Python for N ms (CPU work, which the GIL serialises): the three
  workloads of the tutorial's comparison table, for the page's burst buttons;
* ``/stats`` the live figures as JSON, for ``curl`` and for the page under ``single``.

Under ``single`` every response says ``Connection: close``: the model serves one connection
at a time, so a browser's idle keep-alive connection would otherwise lock every other
connection out until ``--timeout-keep-alive`` ran down.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from threadloom.models import model_class
from threadloom.stats import STATS

#: Bounds of the load endpoints, so a stray request cannot hold a thread for long.
MAX_SLEEP_MS = 5000
MAX_CPU_MS = 2000

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_STATIC = {"/": "index.html", "/demo.css": "demo.css", "/demo.js": "demo.js"}
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the page shows about the server it runs on."""

    model: str
    threads: int
    #: Address of the tutorial's TCP hello (``host:port``), or "" when there is none.
    hello: str = ""
    #: One connection at a time: the page polls instead of holding WebSockets (asked of the
    #: model's class).
    single: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "single", not model_class(self.model).serves_concurrently)


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: status, content type, body."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, status: int, text: str) -> Reply:
        return cls(status, "text/plain; charset=utf-8", text.encode())


def figures(info: DemoInfo) -> dict[str, Any]:
    """The live figures: the process's counters plus what the page needs to label them."""
    snapshot = STATS.snapshot()
    return snapshot | {"model": info.model, "threads": info.threads, "time": time.time()}


def load_static(info: DemoInfo) -> dict[str, Reply]:
    """Read the page's files from the package once; fill the page's ``{{name}}`` slots."""
    folder = resources.files("threadloom.demo") / "static"
    slots = {"model": info.model, "threads": str(info.threads), "hello": info.hello}
    replies = {}
    for route, name in _STATIC.items():
        text = (folder / name).read_text(encoding="utf-8")
        if name == "index.html":
            for key, value in slots.items():
                text = text.replace("{{" + key + "}}", html.escape(value))
        suffix = name[name.rfind(".") :]
        replies[route] = Reply(200, _TYPES[suffix], text.encode())
    return replies


def milliseconds(query: str, limit: int) -> int:
    """``ms`` from a query string, 0..limit; ValueError with a message for the client."""
    values = parse_qs(query).get("ms", ["0"])
    try:
        ms = int(values[0])
    except ValueError:
        ms = -1
    if not 0 <= ms <= limit:
        raise ValueError(f"ms must be a whole number from 0 to {limit}")
    return ms


def burn_cpu(ms: int) -> int:
    """Spin pure Python until this thread has used ``ms`` ms of CPU; returns the loop turns.

    CPU time, not wall time: threads that share the GIL each wait their turn, so a burst of
    these takes longer the more run at once, which is what the page wants a person to see.
    """
    end = time.thread_time() + ms / 1000
    turns = 0
    while time.thread_time() < end:
        for _ in range(1000):
            turns += 1
    return turns


class DemoWeb:
    """The WSGI app behind the page (see the module docstring)."""

    def __init__(self, info: DemoInfo) -> None:
        self.info = info
        self.static = load_static(info)
        self.routes: dict[str, Callable[[str], Reply]] = {
            "/hello": self.hello,
            "/sleep": self.sleep,
            "/cpu": self.cpu,
            "/stats": self.stats,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        reply = self.reply(environ["REQUEST_METHOD"], environ["PATH_INFO"], environ)
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("Cache-Control", "no-cache"),
        ]
        if reply.status == 405:
            headers.append(("Allow", "GET, HEAD"))
        if self.info.single:
            headers.append(("Connection", "close"))
        start_response(f"{reply.status} {_REASONS[reply.status]}", headers)
        return [reply.body]

    def reply(self, method: str, path: str, environ: dict[str, Any]) -> Reply:
        """Route one request."""
        if method not in ("GET", "HEAD"):
            return Reply.text(405, "the demo answers GET and HEAD\n")
        if path in self.static:
            return self.static[path]
        handler = self.routes.get(path)
        if handler is None:
            return Reply.text(404, f"nothing at {path}; try /, /hello, /sleep, /cpu, /stats\n")
        try:
            return handler(environ.get("QUERY_STRING", ""))
        except ValueError as exc:
            return Reply.text(400, f"{exc}\n")

    def hello(self, query: str) -> Reply:
        """What the tutorial's handler says, over HTTP."""
        return Reply.text(200, "Hello from server!")

    def sleep(self, query: str) -> Reply:
        """Hold this thread without using the CPU, as a slow database call would."""
        ms = milliseconds(query, MAX_SLEEP_MS)
        time.sleep(ms / 1000)
        return Reply.text(200, f"slept {ms} ms\n")

    def cpu(self, query: str) -> Reply:
        """Keep the CPU busy in Python: threads take turns on the GIL, so this queues."""
        ms = milliseconds(query, MAX_CPU_MS)
        turns = burn_cpu(ms)
        return Reply.text(200, f"spun {ms} ms of CPU ({turns} loop turns)\n")

    def stats(self, query: str) -> Reply:
        """The figures the live feed pushes, once."""
        return Reply(200, "application/json", json.dumps(figures(self.info)).encode())
