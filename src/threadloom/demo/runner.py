"""``threadloom`` with no APP: the page (HTTP + WebSocket) and the tutorial's TCP hello.

Two servers in one process, under the same model:

* the page, on the ``--bind`` addresses (default ``127.0.0.1:8000``);
* the tutorial's hello handler (``Hello from server!``), on the *last* ``--bind`` when two
  or more are given, else on the page's port + 1 (``127.0.0.1:8001`` by default; port 0
  stays 0, and a unix or ``fd://`` address gets no hello unless a second ``--bind`` names
  one). The hello speaks raw TCP, so it is never TLS and never serves ``--metrics-bind``.

Threads: each open WebSocket holds a thread under ``pool`` (and under ``asyncio``, whose
sync pool runs the handlers), and each tab holds two (figures and chat). Unless ``--threads``
or ``THREADLOOM_THREADS`` says otherwise, the page's server gets :data:`DEMO_THREADS`, enough
for a few tabs plus their bursts; the hello keeps the tutorial's 10.
"""

from __future__ import annotations

import logging

from threadloom.config import Config
from threadloom.demo.live import DemoSockets
from threadloom.demo.web import DemoInfo, DemoWeb
from threadloom.errors import ConfigError
from threadloom.interfaces.websocket import WSGIWithWebSocket
from threadloom.models import model_class
from threadloom.net.listeners import parse_bind
from threadloom.server import Server, run_with_signals

log = logging.getLogger("threadloom.demo")

HELLO_APP = "threadloom.demo.hello:handle_client"
#: Threads of the page's server when the user did not choose: a few tabs, two sockets each.
DEMO_THREADS = 32


class DemoApp(WSGIWithWebSocket):
    """The page's app: HTTP routes and the two WebSockets on one port, under any model."""

    def __init__(self, info: DemoInfo) -> None:
        super().__init__(DemoWeb(info), DemoSockets(info))
        self.__name__ = "the threadloom demo"  # how the start-up log line names it


def split_binds(binds: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """The page's addresses and the hello's (None: no hello), per the module docstring."""
    if len(binds) >= 2:
        return binds[:-1], binds[-1]
    spec = parse_bind(binds[0])
    if spec.family != "tcp" or spec.port == 65535:
        return binds, None
    port = spec.port + 1 if spec.port else 0
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return binds, f"{host}:{port}"


def browser_url(address: str, tls: bool) -> str:
    """The page's URL for a person: a wildcard host becomes loopback."""
    if address.startswith("unix:"):
        return address
    host, _, port = address.rpartition(":")
    return f"{'https' if tls else 'http'}://{_loopback(host)}:{port}/"


def _loopback(host: str) -> str:
    """Where a person on this machine reaches a wildcard address."""
    return {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)


class Demo:
    """The demo's two servers, started together and stopped together."""

    def __init__(self, config: Config, threads_given: bool = False) -> None:
        self.config = config
        self.threads = config.threads if threads_given else DEMO_THREADS
        self.page_binds, self.hello_bind = split_binds(config.bind)
        self.hello: Server | None = None
        self.page: Server | None = None

    @property
    def servers(self) -> list[Server]:
        """The page's server first, then the hello's (when there is one)."""
        return [s for s in (self.page, self.hello) if s is not None]

    def start(self) -> None:
        """Bind both (hello first: the page shows its address); ConfigError on any mistake."""
        try:
            hello_address = self._start_hello()
            info = DemoInfo(self.config.model, self.threads, hello_address)
            self.page = Server(
                DemoApp(info), self.config.replace(bind=self.page_binds, threads=self.threads)
            )
            self.page.start()
        except ConfigError:
            self.close()
            raise
        self._announce(self.page.urls[0], hello_address)

    def _announce(self, page_address: str, hello_address: str) -> None:
        """The one line a person needs: where to point the browser (and the hello)."""
        if model_class(self.config.model).runs_sync_on_pool and self.threads < 4:
            log.warning("a tab holds 2 of the %d threads; its bursts may wait", self.threads)
        url = browser_url(page_address, bool(self.config.certfile))
        hello = f"; the tutorial's TCP hello: printf hi | nc {_nc(hello_address)}"
        log.info("threadloom demo: open %s in a browser%s", url, hello if hello_address else "")

    def _start_hello(self) -> str:
        if self.hello_bind is None:
            log.info("no TCP hello: give a second --bind for it")
            return ""
        config = self.config.replace(
            bind=(self.hello_bind,),
            metrics_bind="",
            certfile="",
            keyfile="",
            ca_certs="",
            ssl_ciphers="",
        )
        self.hello = Server(HELLO_APP, config)
        self.hello.start()
        return self.hello.urls[0]

    def close(self) -> None:
        """Release listeners of servers that started but will never serve."""
        for server in self.servers:
            for listener in server.listeners:
                listener.close()


def _nc(address: str) -> str:
    if address.startswith("unix:"):
        return f"-U {address[5:]}"
    host, _, port = address.rpartition(":")
    return f"{_loopback(host).strip('[]')} {port}"


def run_demo(config: Config, threads_given: bool = False) -> int:
    """Serve the demo until SIGTERM/SIGINT; returns the exit status."""
    demo = Demo(config, threads_given)
    demo.start()
    return run_with_signals(*demo.servers)
