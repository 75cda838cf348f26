"""X-Forwarded-* from a trusted peer (127.0.0.1) and an untrusted one (127.0.0.2)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.proxy import apps
from threadloom.errors import ConfigError
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

FORWARDED = {
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "app.example",
}


def ask(server: Server, source: str, headers: dict[str, str]) -> dict[str, Any]:
    host, port = server.addresses[0]
    conn = http.client.HTTPConnection(
        host, port, timeout=5 * timeout_factor(), source_address=(source, 0)
    )
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        seen: dict[str, Any] = json.loads(response.read())
        return seen
    finally:
        conn.close()


def serving(model: str, **options: Any) -> Any:
    app = apps.asgi_whoami if model == "asgi" else apps.whoami
    return running_server(app, model="asyncio" if model == "asgi" else model, **options)


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_honoured_from_a_trusted_proxy_only(model: str) -> None:
    with serving(model, access_log=False) as server:
        port = server.addresses[0][1]
        trusted = ask(server, "127.0.0.1", FORWARDED)
        assert trusted["remote"] == "203.0.113.7"  # the rightmost hop that is not a proxy
        assert trusted["scheme"] == "https"
        assert trusted["host"] == "app.example"
        untrusted = ask(server, "127.0.0.2", FORWARDED)
        assert untrusted["remote"] == "127.0.0.2"
        assert untrusted["scheme"] == "http"
        assert untrusted["host"] == f"127.0.0.1:{port}"
        plain = ask(server, "127.0.0.1", {})
        assert plain["remote"] == "127.0.0.1"


@pytest.mark.parametrize("model", ["pool", "asgi"])
def test_allow_list_networks_and_star(model: str) -> None:
    with serving(model, access_log=False, forwarded_allow_ips="127.0.0.0/30") as server:
        assert ask(server, "127.0.0.2", FORWARDED)["remote"] == "203.0.113.7"
    with serving(model, access_log=False, forwarded_allow_ips="*") as server:
        # everyone is trusted, so the walk goes to the leftmost entry
        assert ask(server, "127.0.0.2", FORWARDED)["remote"] == "6.6.6.6"
    with serving(model, access_log=False, forwarded_allow_ips="10.0.0.1") as server:
        assert ask(server, "127.0.0.1", FORWARDED)["remote"] == "127.0.0.1"


def test_junk_is_ignored_even_from_a_trusted_proxy() -> None:
    with serving("pool", access_log=False) as server:
        seen = ask(
            server,
            "127.0.0.1",
            {"X-Forwarded-For": "unknown", "X-Forwarded-Proto": "ftp", "X-Forwarded-Host": "a b"},
        )
        assert seen["remote"] == "127.0.0.1" and seen["scheme"] == "http"
        assert seen["host"].startswith("127.0.0.1:")


def test_asgi_websocket_behind_a_trusted_proxy() -> None:
    from websockets.sync.client import connect

    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with running_server(apps.asgi_ws_whoami, model="asyncio", access_log=False) as server:
        host, port = server.addresses[0]
        with connect(f"ws://{host}:{port}/", additional_headers=headers) as ws:
            assert ws.recv() == "203.0.113.7 wss"


def test_a_bad_allow_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="forwarded-allow-ips"):
        Server(apps.whoami, forwarded_allow_ips="10.0.0.0/8,bogus", bind=("127.0.0.1:0",)).start()


def test_cli_flags(tmp_path: Path) -> None:
    """The flags exist, reach Config, and a bad certificate is one line, exit status 2."""
    flags = "--proxy-protocol --forwarded-allow-ips * --request-id --access-log-format json"
    command = [sys.executable, "-m", "threadloom", "serve", "tests.proxy.apps:whoami"]
    command += ["--bind", "127.0.0.1:0", "--certfile", str(tmp_path / "none.pem")]
    command += [*flags.split(), "--ssl-cert-reqs", "optional"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30 * timeout_factor(),
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no such file" in done.stderr
