"""WebSocket echo throughput: 32-byte binary messages, 32 connections x 8 in flight.

    .venv/bin/python benchmarks/ws_echo.py                     # every server, 3 rounds
    .venv/bin/python benchmarks/ws_echo.py --servers threadloom-asyncio,websockets --rounds 5

Each server runs in its own process pinned to CPU 0 (``taskset -c 0``); this script is the
client, pinned to CPU 1. The client is a bare asyncio protocol (uvloop when installed) that
sends pre-built masked frames and counts echoed frames by their 2-byte header, so it costs
far less per message than any server; its own ceiling is printed (a server that answers
without work). Servers are measured in turn, A B C A B C, and medians are quoted. No
compression: the client does not offer it, as the issue's figure for the websockets library
(about 55k msg/s) was measured.

The peer, the ``websockets`` library's asyncio server on uvloop, runs from the project's
``.venv`` (websockets is a dev dependency) so the comparison uses the same Python.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

uvloop: ModuleType | None
try:
    import uvloop
except ImportError:  # the standard loop then; the client ceiling row shows what it costs
    uvloop = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
MESSAGE = os.urandom(32)
# A client frame: FIN + binary, MASK + length 32, a zero mask key (legal, and the XOR is a
# no-op, so the frame is built once), then the payload.
FRAME = bytes([0x82, 0x80 | 32]) + b"\0\0\0\0" + MESSAGE
ECHO_LEN = 2 + 32  # the server's unmasked frame

SERVERS_PY = '''
import asyncio, sys

async def async_echo(ws):
    async for m in ws:
        await ws.send(m)

def echo(ws):
    for m in ws:
        ws.send(m)

async def websockets_main(port):
    import websockets
    async def handler(ws):
        async for m in ws:
            await ws.send(m)
    async with websockets.serve(handler, "127.0.0.1", port, compression=None):
        await asyncio.Future()

async def null_main(port):
    """The client's ceiling: answers each 38-byte frame with a 34-byte one, no parsing."""
    reply_one = bytes([0x82, 32]) + bytes(32)
    class Null(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t; self.head = True; self.buf = 0
        def data_received(self, data):
            if self.head:
                self.head = False
                key = data.split(b"Sec-WebSocket-Key: ")[1].split(b"\\r\\n")[0]
                import base64, hashlib
                guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                acc = base64.b64encode(hashlib.sha1(key + guid).digest())
                self.t.write(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n"
                             b"Connection: Upgrade\\r\\nSec-WebSocket-Accept: " + acc
                             + b"\\r\\n\\r\\n")
                return
            self.buf += len(data)
            n, self.buf = divmod(self.buf, 38)
            self.t.write(reply_one * n)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Null, "127.0.0.1", port)
    await asyncio.Future()

if __name__ == "__main__":
    import uvloop
    kind, port = sys.argv[1], int(sys.argv[2])
    uvloop.run({"websockets": websockets_main, "null": null_main}[kind](port))
'''


def server_command(name: str, port: int, app_dir: str) -> list[str]:
    bind = f"127.0.0.1:{port}"
    common = ["--bind", bind, "--no-access-log", "--no-ws-per-message-deflate"]
    tl = [PYTHON, "-m", "threadloom", "serve"]
    commands = {
        "threadloom-asyncio": [*tl, "ws_servers:async_echo", "--model", "asyncio", *common],
        "threadloom-threads": [*tl, "ws_servers:echo", "--model", "threads", *common],
        "threadloom-pool": [*tl, "ws_servers:echo", "--model", "pool", "--threads", "32", *common],
        "websockets": [PYTHON, f"{app_dir}/ws_servers.py", "websockets", str(port)],
        "null": [PYTHON, f"{app_dir}/ws_servers.py", "null", str(port)],
    }
    return ["taskset", "-c", "0", *commands[name]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class EchoClient(asyncio.Protocol):
    """One connection: handshake, then keep ``depth`` messages in flight and count echoes."""

    def __init__(self, depth: int, counter: list[int], ready: asyncio.Future[None]) -> None:
        self.depth = depth
        self.counter = counter
        self.ready = ready
        self.handshaken = False
        self.pending = b""
        self.partial = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16))
        self.transport.write(  # type: ignore[attr-defined]
            b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self.pending += data
            head, sep, rest = self.pending.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"handshake refused: {head[:80]!r}")
            self.handshaken = True
            self.transport.write(FRAME * self.depth)  # type: ignore[attr-defined]
            if not self.ready.done():
                self.ready.set_result(None)
            data = rest
        total = self.partial + len(data)
        done, self.partial = divmod(total, ECHO_LEN)
        if done:
            self.counter[0] += done
            self.transport.write(FRAME * done)  # type: ignore[attr-defined]


async def drive(port: int, connections: int, depth: int, warmup: float, duration: float) -> float:
    loop = asyncio.get_running_loop()
    counter = [0]
    readies = []
    for _ in range(connections):
        ready: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(
            lambda r=ready: EchoClient(depth, counter, r), "127.0.0.1", port
        )
        readies.append(ready)
    await asyncio.wait_for(asyncio.gather(*readies), 10)
    await asyncio.sleep(warmup)
    start_count, start = counter[0], time.perf_counter()
    await asyncio.sleep(duration)
    return (counter[0] - start_count) / (time.perf_counter() - start)


def measure(name: str, args: argparse.Namespace, app_dir: str) -> float:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": app_dir}
    proc = subprocess.Popen(
        server_command(name, port, app_dir),
        env=env,
        cwd=app_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(port)
        run = drive(port, args.connections, args.depth, args.warmup, args.duration)
        return uvloop.run(run) if uvloop is not None else asyncio.run(run)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--servers", default="threadloom-asyncio,threadloom-threads,threadloom-pool,websockets"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--depth", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        print("taskset is needed (util-linux)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {1})
    names = ["null", *args.servers.split(",")]
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "ws_servers.py").write_text(SERVERS_PY)
        results: dict[str, list[float]] = {name: [] for name in names}
        for round_no in range(args.rounds):
            for name in names:
                rate = measure(name, args, app_dir)
                results[name].append(rate)
                print(f"round {round_no + 1}: {name}: {rate:,.0f} msg/s", file=sys.stderr)
    base = statistics.median(results["websockets"]) if results.get("websockets") else None
    print(
        f"\n{args.connections} connections x {args.depth} in flight, 32-byte binary echo, "
        f"{args.rounds} rounds x {args.duration:g} s, server CPU 0, client CPU 1\n"
    )
    print("| server | msg/s (median) | min-max | x websockets |")
    print("|---|---:|---:|---:|")
    for name in names:
        rates = results[name]
        ratio = f"{statistics.median(rates) / base:.2f}x" if base else "-"
        label = "client ceiling (null server)" if name == "null" else name
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(f"| {label} | {statistics.median(rates):,.0f} | {spread} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
