"""A throwaway CA (trustme) and its certificates, as files the server loads."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

trustme = pytest.importorskip("trustme")


@dataclass
class TLSFiles:
    """PEM files: the CA, the server's chain + key, and a client certificate."""

    ca: object
    ca_pem: Path
    server_pem: Path
    server_cert: Path
    server_key: Path
    client_pem: Path

    def client_context(self, alpn: bool = True, with_cert: bool = False) -> ssl.SSLContext:
        """A client context that trusts only the throwaway CA, offering HTTP/1.1 by ALPN as
        an HTTP/1.1 client does (one that offers h2 gets it: tests/http2)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if alpn:
            context.set_alpn_protocols(["http/1.1"])
        if with_cert:
            context.load_cert_chain(str(self.client_pem))
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    client = ca.issue_cert("client@example.test")
    files = TLSFiles(
        ca,
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server-cert.pem",
        folder / "server-key.pem",
        folder / "client.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_pem))
    server.private_key_and_cert_chain_pem.write_to_path(str(files.server_pem))
    server.private_key_pem.write_to_path(str(files.server_key))
    for n, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(files.server_cert), append=n > 0)
    client.private_key_and_cert_chain_pem.write_to_path(str(files.client_pem))
    return files
