"""A public testing kit: run a real server on a free port inside a ``with`` block.

    with running_server(handle_client, model="pool") as server:
        host, port = server.addresses[0]
        ...

The server binds port 0 *before* it starts serving, so the port is known and no test ever
races a server that is not listening yet. Leaving the block stops it gracefully and waits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadloom.models import MODELS as REGISTRY
from threadloom.models import models_where
from threadloom.server import Server

#: Every model, for parametrizing behaviour tests.
MODELS = tuple(REGISTRY)
#: Models that run sync handlers on threads and can serve clients concurrently.
CONCURRENT_MODELS = models_where(lambda cls: cls.serves_concurrently)


def timeout_factor() -> float:
    """``THREADLOOM_TIMEOUT_FACTOR`` scales test timeouts on slow machines (default 1)."""
    return float(os.environ.get("THREADLOOM_TIMEOUT_FACTOR", "1"))


@contextmanager
def running_server(app: Any, model: str = "pool", **options: Any) -> Iterator[Server]:
    """Start ``app`` under ``model`` on 127.0.0.1 port 0 in a thread; stop it on exit."""
    options.setdefault("bind", ("127.0.0.1:0",))
    options.setdefault("graceful_timeout", 5.0)
    # a test process starts hundreds of servers: freezing its objects each time would keep
    # the garbage of the tests before for good (the subprocess tests freeze as users do)
    options.setdefault("gc_freeze", False)
    options.setdefault("gc_threshold", 0)  # (nor change the test process's collector)
    server = Server(app, model=model, **options)
    server.start()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve, name="threadloom-test-server", daemon=True)
    thread.start()
    assert server.model is not None
    while not server.model.ready.wait(0.01):
        if not thread.is_alive():
            raise failure[0] if failure else RuntimeError("the server stopped before serving")
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=server.config.graceful_timeout + 10 * timeout_factor())
        if thread.is_alive():
            raise RuntimeError("the server did not stop in time")
