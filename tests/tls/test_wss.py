"""WebSocket over TLS (wss://) under every model, with the websockets client."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from tests.tls.conftest import TLSFiles
from tests.tls.test_tls import ALL_LOOPS, model_and_options, tls_options
from tests.ws import handlers
from threadloom.testing import running_server, timeout_factor

#: Seconds for the TLS and WebSocket handshakes. 5 s timed out once in a clean-clone CI run
#: (the pure-Python pass, asyncio-stdlib, 2026-12-06) and passed 31 reruns here: a wider
#: bound tells a stall on a loaded machine from a handshake that never comes.
OPEN_TIMEOUT = 15


@pytest.mark.parametrize("model", ALL_LOOPS)
def test_wss_echo(model: str, tls: TLSFiles) -> None:
    model, options = model_and_options(model, tls, access_log=False)
    with running_server(handlers.echo, model=model, **options) as server:
        host, port = server.addresses[0]
        context = tls.client_context(alpn=False)
        opening = OPEN_TIMEOUT * timeout_factor()
        with connect(f"wss://{host}:{port}/", ssl=context, open_timeout=opening) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"
            big = "é" * 100_000  # compressed, fragmented, many TLS records
            ws.send(big)
            assert ws.recv() == big


def test_wss_asgi_app(tls: TLSFiles) -> None:
    options = tls_options(tls)
    with running_server(handlers.asgi_app, model="asyncio", access_log=False, **options) as server:
        host, port = server.addresses[0]
        context = tls.client_context(alpn=False)
        opening = OPEN_TIMEOUT * timeout_factor()
        with connect(f"wss://{host}:{port}/", ssl=context, open_timeout=opening) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"
