"""Listening sockets: parse ``--bind`` addresses, bind them once, accept without spinning.

A listener is bound before any model starts, so a port-in-use error is reported to the user
before anything runs, and so tests can bind port 0 and learn the real port. Models only ever
call :func:`accept`, which turns the kernel's accept errors into three outcomes: a new
connection, "nothing there" (another thread won the race, or the peer vanished before we
accepted it), or "out of descriptors, back off" -- never an exception that could kill an
accept loop, and never a busy loop.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from threadloom import portable
from threadloom.errors import ConfigError

log = logging.getLogger("threadloom.net")

BACKLOG = 2048
#: errno values that mean "the process or system ran out of descriptors".
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: errno values that mean "this one connection failed before we got it"; accept again later.
TRANSIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
#: How long an accept loop waits after running out of descriptors before trying again.
FD_BACKOFF_S = 0.1


@dataclass(frozen=True, slots=True)
class BindSpec:
    """A parsed ``--bind`` value."""

    family: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    text: str = ""


class Listener:
    """One bound, listening, non-blocking socket and how to show its address."""

    def __init__(self, sock: socket.socket, spec: BindSpec) -> None:
        self.sock = sock
        self.spec = spec
        #: Shared with other processes (a supervisor's workers; an ``fd://`` socket from
        #: systemd or the reloader): never shut it down, which would stop it listening in
        #: every process, and never unlink its unix path. Closing only drops our descriptor.
        self.shared = spec.family == "fd"
        sock.setblocking(False)

    @property
    def address(self) -> Any:
        """The bound address (a (host, port) tuple for TCP, a path for unix sockets)."""
        return self.sock.getsockname()

    @property
    def url(self) -> str:
        """A human-readable address, with the real port when 0 was asked for."""
        if self.sock.family == portable.AF_UNIX:
            return f"unix:{self.sock.getsockname()}"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        """Stop listening; the kernel refuses new connections from now on."""
        try:
            self.sock.close()
        finally:
            if self.spec.family == "unix" and not self.shared:
                _unlink_socket_file(self.spec.path)


def parse_bind(text: str) -> BindSpec:
    """Parse ``host:port``, ``[v6]:port``, ``:port``, ``unix:/path`` or ``fd://N``."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"bad address {text!r}: unix: needs a path")
        if portable.AF_UNIX is None:
            raise ConfigError(f"cannot listen on {text}: no unix sockets on this platform")
        return BindSpec("unix", path=path, text=text)
    if text.startswith("fd://"):
        try:
            return BindSpec("fd", fd=int(text[5:]), text=text)
        except ValueError:
            raise ConfigError(f"bad address {text!r}: fd:// needs a number") from None
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"bad address {text!r}: expected [ipv6]:port")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"bad address {text!r}: expected host:port")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"bad address {text!r}: port must be a number from 0 to 65535")
    return BindSpec("tcp", host=host, port=int(port_text), text=text)


def reuse_port_available(asked: bool) -> bool:
    """Whether ``--reuse-port`` (``asked``) can be honoured: where SO_REUSEPORT is missing
    (Windows) it is ignored, said once in the log, and every socket binds without it."""
    global _reuse_port_warned
    if asked and portable.REUSE_PORT is None and not _reuse_port_warned:
        _reuse_port_warned = True
        log.warning("--reuse-port ignored: this platform has no SO_REUSEPORT")
    return asked and portable.REUSE_PORT is not None


_reuse_port_warned = False


def bind(text: str, reuse_port: bool = False) -> Listener:
    """Bind and listen on one address, or raise ConfigError saying why not.

    ``reuse_port`` sets SO_REUSEPORT on TCP sockets, so several processes may each bind the
    same address and the kernel spreads connections between them (where the platform has
    it: :func:`reuse_port_available`).
    """
    reuse_port = reuse_port_available(reuse_port)
    spec = parse_bind(text)
    try:
        if spec.family == "unix":
            sock = _bind_unix(spec.path)
        elif spec.family == "fd":
            sock = _adopt_fd(spec.fd)
        else:
            sock = _bind_tcp(spec.host, spec.port, reuse_port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise ConfigError(f"cannot listen on {text}: {reason.lower()}") from None
    return Listener(sock, spec)


def _bind_tcp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"unknown host {host!r}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if portable.REUSE_ADDRESS:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and portable.REUSE_PORT is not None:
            sock.setsockopt(socket.SOL_SOCKET, portable.REUSE_PORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(path: str) -> socket.socket:
    _unlink_socket_file(path)
    sock = socket.socket(portable.AF_UNIX or 0, socket.SOCK_STREAM)  # (parse_bind checked)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _adopt_fd(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise OSError(errno.ENOTSOCK, f"descriptor {fd} is not a stream socket")
    sock.listen(BACKLOG)
    return sock


def _unlink_socket_file(path: str) -> None:
    """Remove a stale unix socket file, but never a regular file someone cares about."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


class OutOfDescriptors(Exception):
    """Accept failed because descriptors ran out: the caller must back off, not retry at once."""


def accept(listener: Listener) -> tuple[socket.socket, Any] | None:
    """Accept one connection; None if there was nothing to take.

    Raises :class:`OutOfDescriptors` on EMFILE/ENFILE so the caller can pause that listener
    for :data:`FD_BACKOFF_S` instead of spinning on a socket that stays readable.
    """
    try:
        sock, addr = listener.sock.accept()
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno in OUT_OF_FDS:
            raise OutOfDescriptors(os.strerror(exc.errno or 0)) from None
        if exc.errno in TRANSIENT:
            return None
        raise
    if sock.family != portable.AF_UNIX:
        tune_connection(sock)
    else:
        addr = addr or listener.url
    return sock, addr


#: The most a connection's kernel send buffer holds that the peer has not yet been sent
#: (``TCP_NOTSENT_LOWAT``). Without it the kernel's autotuning lets each connection take
#: megabytes at once: a few hundred slow readers of a large response then pinned about
#: 4 MB of kernel memory each, and under ``asyncio`` the loop spent its time copying into
#: those buffers (a normal client waited 50-175 ms). Past this the socket reports itself
#: full and the rest waits, unjoined, in the connection's own writer; a fast reader loses
#: nothing measurable (RELIABILITY.md).
UNSENT_MAX = 128 * 1024


def tune_connection(sock: socket.socket) -> None:
    """Options for an accepted TCP connection: no Nagle delay (responses are written
    whole), and :data:`UNSENT_MAX` where the platform has it."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if portable.TCP_NOTSENT_LOWAT is not None:
        sock.setsockopt(socket.IPPROTO_TCP, portable.TCP_NOTSENT_LOWAT, UNSENT_MAX)
