"""Micro-benchmarks of the sans-I/O WebSocket core: unmasking options and per-message costs.

    .venv/bin/python benchmarks/ws_core_micro.py             # about a minute
    .venv/bin/python benchmarks/ws_core_micro.py --quick     # about 8 s, noisier

No sockets: this measures the core alone (what the engine pays per message on top of its
I/O), so figures are upper bounds for the whole server. Each figure is timed ``--repeat``
times; the table shows the best run (least disturbed by other load) and the median, with
the spread between them. The machine, Python and the unmasker in use are printed first.

Part 1 compares the ways to unmask a payload (RFC 6455 5.3), which decided
``frames.unmask``: one big-integer XOR, four ``bytes.translate`` lanes, the pure-Python
mix the core uses without an accelerator, and C accelerators that happen to be installed
(``websockets.speedups``, ``wsaccel``). Part 2 times the core's operations per message,
with the accelerator (if any) and with pure Python, and, for scale, the same 32-byte echo
through the ``websockets`` library's own sans-I/O ``ServerProtocol``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from threadloom.protocols.websocket import (
    DeflateParams,
    Message,
    WebSocketConnection,
    frames,
)
from threadloom.protocols.websocket import connection as ws_connection

websockets: ModuleType | None
try:  # the peer, and its C unmasker (a dev dependency of threadloom, not a runtime one)
    import websockets
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
    from websockets.server import ServerProtocol
    from websockets.speedups import apply_mask
except ImportError:
    websockets = None

XorMaskerSimple: Any
try:
    from wsaccel.xormask import XorMaskerSimple  # type: ignore[import-not-found,no-redef]
except ImportError:
    XorMaskerSimple = None

KEY = b"\x12\x34\x56\x78"
SIZES = [2, 32, 125, 1024, 4096, 16384, 65536, 1 << 20]


def measure(fn: Callable[[], object], per_call: int, repeat: int, budget: float) -> list[float]:
    """Seconds per operation for ``repeat`` runs of about ``budget`` seconds each."""
    fn()  # warm caches and lazily made objects
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(budget / once))
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        runs.append((time.perf_counter() - start) / (loops * per_call))
    return runs


def cell(runs: list[float]) -> str:
    best, median = min(runs), statistics.median(runs)
    return f"{best * 1e6:9.3f} us ({median * 1e6:.3f}, +{(median / best - 1) * 100:.0f}%)"


def masked(b0: int, payload: bytes) -> bytes:
    head = frames.frame_head(b0, len(payload), masked=True)
    return head + KEY + frames._pure_unmask(payload, KEY)


def unmaskers() -> dict[str, Callable[[bytes, bytes], bytes]]:
    found: dict[str, Callable[[bytes, bytes], bytes]] = {
        "int-xor": frames._unmask_int,
        "translate-lanes": frames._unmask_lanes,
        "pure (core's mix)": frames._pure_unmask,
    }
    if websockets is not None:
        found["websockets.speedups (C)"] = apply_mask
    if XorMaskerSimple is not None:
        found["wsaccel (C)"] = lambda data, mask: XorMaskerSimple(mask).process(data)
    return found


def bound(f: Callable[[bytes, bytes], bytes], data: bytes) -> Callable[[], object]:
    return lambda: f(data, KEY)


def part1(repeat: int, budget: float) -> None:
    print("\n## 1. Unmasking, per call: best (median, spread)\n")
    impls = unmaskers()
    print("| bytes | " + " | ".join(impls) + " |")
    print("|---:|" + "---:|" * len(impls))
    for size in SIZES:
        data = os.urandom(size)
        row = [cell(measure(bound(f, data), 1, repeat, budget)) for f in impls.values()]
        print(f"| {size} | " + " | ".join(row) + " |")


def echo_case(conn: WebSocketConnection, wire: bytes) -> Callable[[], object]:
    receive, send = conn.receive_data, conn.send_message

    def run() -> None:
        for event in receive(wire):
            send(event.data)  # type: ignore[union-attr]

    return run


def core_cases() -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (one call, messages per call)."""
    text32 = masked(0x81, b"x" * 32)
    bin32 = masked(0x82, os.urandom(32))
    pipelined = text32 * 100
    deflate = DeflateParams()
    z = zlib.compressobj(wbits=-15)
    kib = (b'{"user": "ada", "text": "hello there", "n": 12345} ' * 20)[:1024]
    compressed = masked(0xC1, (z.compress(kib) + z.flush(zlib.Z_SYNC_FLUSH))[:-4])
    one_mib = os.urandom(1 << 20)
    big = masked(0x82, one_mib)
    big_pieces = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    receiver = WebSocketConnection(max_message_size=2 << 20)
    sender = WebSocketConnection()

    def receive_1mib() -> None:
        for piece in big_pieces:
            receiver.receive_data(piece)

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "echo 32 B text (receive_data + send_message)": (
            echo_case(WebSocketConnection(), text32),
            1,
        ),
        "echo 32 B binary": (echo_case(WebSocketConnection(), bin32), 1),
        "receive 32 B text only": (lambda: receiver.receive_data(text32), 1),
        "send_message 32 B text only": (lambda: sender.send_message("x" * 32), 1),
        "receive 100 x 32 B text in one read, per message": (
            lambda: receiver.receive_data(pipelined),
            100,
        ),
        "echo 32 B text, deflate agreed (small: not compressed)": (
            echo_case(WebSocketConnection(deflate=deflate), text32),
            1,
        ),
        "echo 1 KiB JSON-ish text, compressed both ways": (
            echo_case(WebSocketConnection(deflate=deflate), compressed),
            1,
        ),
        "receive 1 MiB binary in 64 KiB reads, per message": (receive_1mib, 1),
        "send_message 1 MiB binary": (lambda: sender.send_message(one_mib), 1),
    }
    return cases


def websockets_echo() -> Callable[[], object] | None:
    """The same 32-byte echo through websockets' sans-I/O server, for scale."""
    if websockets is None:
        return None
    proto = ServerProtocol(state=State.OPEN)
    wire = masked(0x81, b"x" * 32)

    def run() -> None:
        proto.receive_data(wire)
        for frame in proto.events_received():
            assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT
            proto.send_text(frame.data)
        proto.data_to_send()

    return run


def part2(repeat: int, budget: float) -> None:
    accelerated = frames.unmask is not frames._pure_unmask
    variants = [("core", frames.unmask)]
    if accelerated:
        variants.append(("core, pure-Python unmask", frames._pure_unmask))
    print("\n## 2. Core operations, per message: best (median, spread) -> messages/s at best\n")
    print("| operation | " + " | ".join(name for name, _ in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    results: dict[str, list[str]] = {}
    for _, unmask in variants:
        ws_connection.unmask = unmask  # type: ignore[attr-defined]  # the hot loop's name
        try:
            for name, (fn, per_call) in core_cases().items():
                runs = measure(fn, per_call, repeat, budget)
                results.setdefault(name, []).append(f"{cell(runs)} -> {1 / min(runs):,.0f}/s")
        finally:
            ws_connection.unmask = frames.unmask  # type: ignore[attr-defined]
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(row) + " |")
    peer = websockets_echo()
    if peer is not None and websockets is not None:
        runs = measure(peer, 1, repeat, budget)
        print(
            f"| peer: websockets {websockets.__version__} ServerProtocol, echo 32 B text | "
            + f"{cell(runs)} -> {1 / min(runs):,.0f}/s |" * len(variants)
        )


def check() -> None:
    """The cases must do what their names say before their times mean anything."""
    conn = WebSocketConnection()
    assert conn.receive_data(masked(0x81, b"x" * 32)) == [Message("x" * 32)]
    for f in unmaskers().values():
        assert f(b"\x00" * 9, KEY) == (KEY * 3)[:9]


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs; Python {platform.python_version()} "
        f"({platform.python_implementation()}), zlib {zlib.ZLIB_RUNTIME_VERSION}; "
        f"core unmask = {frames.UNMASK_IMPL}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per timed run")
    parser.add_argument("--quick", action="store_true", help="3 runs of 0.05 s")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.budget = 3, 0.05
    check()
    print(f"# WebSocket core micro-benchmarks\n\n{machine()}")
    print(f"{args.repeat} runs of ~{args.budget} s per figure.")
    part1(args.repeat, args.budget)
    part2(args.repeat, args.budget)


if __name__ == "__main__":
    main()
