"""The slow-read attack over TLS, under every model: the records a reader has not taken
wait for it (one piece of ciphertext each), its thread is free, and it is dropped once
below ``--min-send-rate`` (tests/adversarial/test_slow_readers.py has the plain case)."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.adversarial.support import ServerProcess
from tests.adversarial.test_slow_readers import ATTACKED, HELLO, READERS, attack_with_slow_readers
from tests.tls.conftest import TLSFiles
from threadloom.testing import MODELS


def tls_probe(address: tuple[str, int], context: ssl.SSLContext) -> tuple[int, float]:
    """(status, seconds) of one GET /hello on a new TLS connection, handshake included."""
    started = time.monotonic()
    try:
        with context.wrap_socket(
            socket.create_connection(address, timeout=5),
            server_hostname=address[0],
        ) as sock:
            sock.sendall(HELLO)
            head = sock.recv(64)
    except OSError:
        return 0, time.monotonic() - started
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_slow_tls_readers_hold_no_worker_and_are_dropped(model: str, tls: TLSFiles) -> None:
    context = tls.client_context(alpn=False)
    files = ("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key))
    with ServerProcess("tests.adversarial.apps:eight_mib", model, *ATTACKED, *files) as server:
        report = attack_with_slow_readers(
            server,
            3 if model == "single" else READERS,
            lambda: tls_probe(server.address, context),
            context,
        )
    print(f"{model} over TLS: {report}")
