"""The server's TLS context, built once from ``--certfile`` and friends.

Built at start-up, before anything is served, so a missing file, a key that does not match
its certificate or a bad cipher string is one line on stderr, never a failure at the first
client. The context is shared by every listener and connection; the engine does each
handshake (:mod:`threadloom.engine.tls`).

Defaults: TLS 1.2 and 1.3 only, OpenSSL's default ciphers, no compression, a fresh key
share per handshake, server cipher preference, and ALPN ``http/1.1`` for HTTP servers (a
client offering only ``h2`` still gets HTTP/1.1: the handshake goes on without ALPN). With
``--ca-certs`` clients must present a certificate that chains to those CAs (and only
those: the system's store is never loaded for client certificates), or may when
``--ssl-cert-reqs optional``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from threadloom.config import Config
from threadloom.errors import ConfigError


def server_context(config: Config, alpn: bool = True, h2: bool = False) -> ssl.SSLContext | None:
    """The TLS context ``config`` asks for, or None for plain TCP; ConfigError if unusable.

    ``alpn``: offer HTTP by ALPN; ``h2``: HTTP/2 too, first (``--http`` says which)."""
    if not config.certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    _load(context.load_cert_chain, "--certfile/--keyfile", config.certfile, config.keyfile or None)
    if config.ssl_ciphers:
        _load(context.set_ciphers, "--ssl-ciphers", config.ssl_ciphers)
    if config.ca_certs:
        _load(context.load_verify_locations, "--ca-certs", config.ca_certs)
        required = config.ssl_cert_reqs == "required"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    if alpn:
        context.set_alpn_protocols(alpn_protocols(config.http if h2 else "1"))
    return context


def _load(action: Callable[..., object], what: str, *args: object) -> None:
    """Run one loading step; turn its failure into a ConfigError naming the option."""
    try:
        action(*args)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc.filename or args[0]}: no such file") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"{what}: cannot use {args[0]!s}: {reason}") from None


def alpn_protocols(http: str) -> list[str]:
    """What ALPN offers for ``--http``: ``h2`` before ``http/1.1``, as browsers prefer."""
    return {"1": ["http/1.1"], "2": ["h2"]}.get(http, ["h2", "http/1.1"])
