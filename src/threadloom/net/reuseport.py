"""``--reuse-port`` under a supervisor: hold the port, let each worker listen on its own.

With SO_REUSEPORT every worker binds and listens on a socket of its own and the kernel
spreads new connections between them, instead of all workers waking on one shared socket.
The supervisor still binds first, so a port in use is reported in one line before any
worker starts and ``:0`` resolves to one real port for all of them. Its socket is bound but
never listens, so the kernel never hands it a connection; it only keeps the port reserved
while workers come and go.
"""

from __future__ import annotations

import errno
import socket

from threadloom.errors import ConfigError
from threadloom.net.listeners import parse_bind


def reserve(text: str) -> tuple[socket.socket, str]:
    """Bind ``text`` with SO_REUSEPORT without listening; the socket and the real address."""
    spec = parse_bind(text)
    try:
        infos = socket.getaddrinfo(
            spec.host, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise ConfigError(f"cannot listen on {text}: unknown host {spec.host!r}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(f"cannot listen on {text}: {str(reason).lower()}") from None
    host, port = sock.getsockname()[:2]
    return sock, (f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}")
