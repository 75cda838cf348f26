"""What the adversarial tests share: a server in a process of its own, and ways to watch it.

A test that measures a server's memory, CPU or descriptors, lowers its descriptor limit or
signals it must not share a process with pytest, so :class:`ServerProcess` runs
``python -m threadloom serve`` on port 0 and reads the real port from its start-up line.
Its stderr is drained by a thread (a chatty server must never block on a full pipe) and
kept for the test to inspect.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from threadloom.testing import timeout_factor

ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r" serving .* on 127\.0\.0\.1:(\d+)")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
_TICKS = os.sysconf("SC_CLK_TCK")
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class ServerProcess:
    """``threadloom serve APP --model MODEL [args]`` in a child process (module docstring)."""

    def __init__(self, app: str, model: str, *args: str) -> None:
        self.model = model
        self.command = [
            sys.executable,
            "-m",
            "threadloom",
            "serve",
            app,
            "--model",
            model,
            "--bind",
            "127.0.0.1:0",
            "--no-access-log",
            *args,
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, name="test-stderr", daemon=True)
        self._reader.start()
        if not self._ready.wait(30 * timeout_factor()) or not self.port:
            self.kill()
            raise RuntimeError("the server did not start:\n" + self.stderr)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = _SERVING.search(line)
            if found:
                self.port = int(found[1])
                self._ready.set()
        self._ready.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status; raises subprocess.TimeoutExpired if it is still running."""
        assert self.proc is not None
        status = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return status

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def peak_kib(self) -> int:
        return peak_kib(self.pid)

    def fds(self) -> int:
        return sockets(self.pid)

    def threads(self) -> int:
        return threads(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def rss_kib(pid: int) -> int:
    """Resident memory of a process now (``/proc/PID/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KIB


def kernel_tcp_mib() -> float:
    """The kernel's memory for TCP buffers now, the whole machine's (``/proc/net/sockstat``,
    in pages): what a server's send buffers pin beyond its own RSS."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    raise AssertionError("/proc/net/sockstat has no TCP line")


def sockets(pid: int) -> int:
    """Sockets a process holds (other descriptors come and go with imports and logging)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return count


def peak_kib(pid: int) -> int:
    """The most resident memory a process has had (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM: line")


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def spent_cpu(pid: int, seconds: float) -> float:
    """CPU seconds ``pid`` burns while the caller sleeps ``seconds``: a spin shows up here."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def status_of(address: Any, raw: bytes = GET, timeout: float = 5.0) -> int:
    """Send one request on a fresh connection; the status of the answer (0: none)."""
    try:
        with socket.create_connection(address, timeout=timeout * timeout_factor()) as sock:
            sock.sendall(raw)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return 0
                head += chunk
            return int(head.split(b" ", 2)[1])
    except OSError:
        return 0


def served_within(address: Any, seconds: float, raw: bytes = GET) -> tuple[int, float]:
    """(status, seconds taken) of one request; gives up after ``seconds`` * the factor."""
    started = time.monotonic()
    status = status_of(address, raw, timeout=seconds)
    return status, time.monotonic() - started


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` (tests only: the server never polls) until true or fail."""
    deadline = time.monotonic() + timeout * timeout_factor()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout``, whatever it
    sends before that (a 408, the rest of a response)."""
    sock.settimeout(timeout * timeout_factor())
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


#: Slow readers connect at this many a second (as slowhttptest's -r; 50 by default).
RAMP = 100
#: What each slow reader asks for, twice, pipelined.
BIG = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


_TCP_ESTABLISHED = 1


def _established(sock: socket.socket) -> bool:
    """Whether the server still holds the connection. A reset (how a slow reader is
    dropped) leaves the bytes already received readable, which at 32 bytes a second would
    take minutes to reach: the kernel's TCP state says it at once."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == _TCP_ESTABLISHED


class SlowReaders:
    """Connections with a 4 KiB receive buffer that pipeline two requests for the big
    response, then read 32 bytes from each, once a second, on one thread (over TLS when
    given a client ``context``)."""

    def __init__(
        self, address: tuple[str, int], count: int, context: ssl.SSLContext | None = None
    ) -> None:
        self.address = address
        self.count = count
        self.context = context
        self.socks: list[socket.socket] = []
        self.closed: set[socket.socket] = set()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._attack, name="test-slow-readers")
        self._thread.start()

    def _attack(self) -> None:
        """Connect at RAMP connections a second (as slowhttptest's -r), then read."""
        started = time.monotonic()
        for n in range(self.count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(self.address)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.address[0])
            sock.sendall(BIG + BIG)
            sock.setblocking(False)
            self.socks.append(sock)
            time.sleep(max(started + (n + 1) / RAMP - time.monotonic(), 0.0))
        self.connected.set()
        while not self._stop.wait(1.0):
            for sock in self.socks:
                if sock in self.closed:
                    continue
                try:
                    if not sock.recv(32) or not _established(sock):
                        self.closed.add(sock)
                except (BlockingIOError, ssl.SSLWantReadError):
                    pass  # (TLS: the rest of a record has not come yet)
                except OSError:
                    self.closed.add(sock)

    def all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.closed) < len(self.socks) and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.closed) == len(self.socks)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.connected.set()
        for sock in self.socks:
            sock.close()
