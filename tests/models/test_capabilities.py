"""What each model declares about itself, and the places that must derive from the registry.

Code outside ``models/`` asks a model's class what it can do; it never compares names. These
tests hold the declarations to DESIGN.md's "Model semantics" and docs/architecture.md's
"Models", and check that every list of models and every message naming them comes from the
one registry (:data:`threadloom.config.MODELS`).
"""

from __future__ import annotations

import http.client
from typing import Any

import pytest

from tests.models import handlers
from threadloom import testing
from threadloom.bench import plan, runner
from threadloom.cli import build_parser
from threadloom.config import MODELS, Config
from threadloom.errors import ConfigError
from threadloom.interfaces.websocket import WSGIWithWebSocket
from threadloom.models import model_class, model_flags, models_where
from threadloom.models.threads import ThreadsModel
from threadloom.server import Server

#: model: (runs_coroutines, serves_concurrently, runs_sync_on_pool), as the docs describe them:
#: single serves one connection at a time; threads gives each connection a thread; pool feeds
#: --threads workers; asyncio runs coroutines on one loop and sync code on --threads threads.
DOCUMENTED = {
    "single": (False, False, False),
    "threads": (False, True, False),
    "pool": (False, True, True),
    "asyncio": (True, True, True),
}


@pytest.mark.parametrize("name", MODELS)
def test_capabilities_are_what_the_docs_say(name: str) -> None:
    cls = model_class(name)
    assert cls.name == name
    declared = (cls.runs_coroutines, cls.serves_concurrently, cls.runs_sync_on_pool)
    assert declared == DOCUMENTED[name]


def test_every_model_is_documented_here() -> None:
    """A new model must say what it can do: add it to DOCUMENTED (and to the docs)."""
    assert tuple(DOCUMENTED) == tuple(MODELS)


def test_every_list_of_models_comes_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    names = tuple(MODELS)
    assert names == testing.MODELS
    assert models_where(lambda cls: cls.serves_concurrently) == testing.CONCURRENT_MODELS
    assert (*names, plan.WORKERS) == plan.MODELS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    assert "--model {" + ",".join(names) + "}" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not one of " + ", ".join(names)):
        Config(model="fibers").validated()


def test_the_coroutine_message_names_the_default_registry() -> None:
    server = Server(handlers.handle_streams, model="pool")
    with pytest.raises(ConfigError, match=r"it needs --model asyncio, not --model pool$"):
        server.load()


def test_messages_naming_models_are_built_from_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Had ``threads`` learnt to run coroutines, every message would offer it too."""
    monkeypatch.setattr(ThreadsModel, "runs_coroutines", True)
    able = "--model threads or --model asyncio"
    assert model_flags(models_where(lambda cls: cls.runs_coroutines)) == able
    with pytest.raises(ConfigError, match=rf"needs {able}, not --model single$"):
        Server(handlers.handle_streams, model="single").load()
    Server(handlers.handle_streams, model="threads").load()  # now it fits
    workload = plan.app_workload("m:app", "asgi", is_async=True)
    assert runner._unavailable_reason(workload, "pool") == (
        "an async app runs only under the threads or asyncio models"
    )


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def _async_ws(ws: Any) -> None:
    await ws.close()


def test_an_async_part_the_signature_hides_is_refused_by_the_model() -> None:
    """A WSGI app with an async websocket_handler: the service says it needs a loop."""
    app = WSGIWithWebSocket(_hello, _async_ws)
    server = Server(app, model="threads", bind=("127.0.0.1:0",))
    with pytest.raises(ConfigError, match=r"async websocket_handler.*needs --model asyncio"):
        server.start()
    assert server.listeners == []


def _multithread(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(environ["wsgi.multithread"]).encode()]


@pytest.mark.parametrize("name", MODELS)
def test_wsgi_multithread_is_asked_of_the_model(name: str) -> None:
    with testing.running_server(_multithread, model=name, access_log=False) as server:
        host, port = server.addresses[0]
        conn = http.client.HTTPConnection(host, port, timeout=10 * testing.timeout_factor())
        try:
            conn.request("GET", "/")
            body = conn.getresponse().read()
        finally:
            conn.close()
    assert body == str(model_class(name).serves_concurrently).encode()
