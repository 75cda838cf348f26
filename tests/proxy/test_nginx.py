"""A real nginx in front, setting X-Forwarded-For: honoured only from the trusted address."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_tool, nginx_conf
from tests.proxy import apps
from threadloom.testing import MODELS, running_server, timeout_factor

SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_bind {source};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
"""


@contextmanager
def nginx_in_front(backend: int, source: str, prefix: Path) -> Iterator[tuple[str, int]]:
    """nginx on a loopback port we bound: it inherits the listening socket (the ``NGINX``
    variable of its binary upgrade), so requests wait in the backlog until it is ready, and
    the test never polls. (nginx 1.22 crashes with inherited sockets under
    ``master_process off``, so it keeps its master process, in the foreground.)"""
    binary = need_tool("nginx")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    conf = prefix / "nginx.conf"
    server = SERVER.format(port=port, backend=backend, source=source)
    conf.write_text(nginx_conf(prefix, server, error_log=f"{prefix}/error.log warn"))
    env = {**os.environ, "NGINX": f"{listener.fileno()};"}
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        env=env,
        pass_fds=(listener.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener.close()  # nginx has its own copy now
    try:
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=10 * timeout_factor())


def through(address: tuple[str, int], client: str, headers: dict[str, str]) -> Any:
    conn = http.client.HTTPConnection(
        *address, timeout=10 * timeout_factor(), source_address=(client, 0)
    )
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_nginx_x_forwarded_for(model: str, tmp_path: Path) -> None:
    app = apps.asgi_whoami if model == "asgi" else apps.whoami
    with running_server(
        app, model="asyncio" if model == "asgi" else model, access_log=False, request_id=True
    ) as server:
        backend = server.addresses[0][1]
        with nginx_in_front(backend, "127.0.0.1", tmp_path) as address:
            seen = through(address, "127.0.0.5", {"X-Forwarded-For": "6.6.6.6"})
            # nginx appended the client it saw; the client's own entry proves nothing
            assert seen["remote"] == "127.0.0.5"
            assert seen["scheme"] == "https"
            assert seen["host"] == "127.0.0.1"
            assert seen["request_id"] and len(seen["request_id"]) == 32  # nginx's $request_id
        untrusted = tmp_path / "untrusted"
        untrusted.mkdir()
        with nginx_in_front(backend, "127.0.0.2", untrusted) as address:
            seen = through(address, "127.0.0.5", {})
            assert seen["remote"] == "127.0.0.2"  # the proxy is not in --forwarded-allow-ips
            assert seen["scheme"] == "http"
