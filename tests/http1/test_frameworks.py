"""Real frameworks, as users write them, under every model: the tutorial's Flask app, Django."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from threadloom.loading import import_app
from threadloom.testing import MODELS, running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.parametrize("model", MODELS)
def test_tutorial_flask_app(model: str) -> None:
    pytest.importorskip("flask")
    app = import_app("tutorial_5_flask:app")
    with running_server(app, model=model, access_log=False) as server:
        host, port = server.addresses[0]
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            for _ in range(5):
                response = client.get("/")
                assert response.status_code == 200
                assert response.text == "Hello from Multi-threaded Flask Server!"
            assert client.get("/missing").status_code == 404


@pytest.mark.parametrize("model", MODELS)
def test_django_project(model: str) -> None:
    pytest.importorskip("django")
    app = import_app("django_site.wsgi:application")
    with running_server(app, model=model, access_log=False) as server:
        host, port = server.addresses[0]
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            assert client.get("/").text == "Hello from Django on threadloom!"
            echoed = json.loads(client.post("/echo?a=1", content=b"x" * 5000).text)
            assert echoed == {
                "method": "POST",
                "path": "/echo",
                "query": {"a": "1"},
                "body": "x" * 5000,
            }
            assert client.get("/nope").status_code == 404
    assert "django" in sys.modules
