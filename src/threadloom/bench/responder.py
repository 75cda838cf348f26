"""A do-nothing responder: the fastest a server can answer, to measure the load generator.

``python -m threadloom.bench.responder --port P [--ws]`` answers every HTTP request with a canned
``Hello, world!`` (or echoes every WebSocket frame) without parsing more than it must. The bench
runs the load generator against it, on the same CPUs as the servers, and calls what it reaches
the generator's ceiling: a server measured close to that figure may be faster than the figure
says, because the client, not the server, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import cast

from threadloom.bench import wsframes
from threadloom.bench.loadgen import loop_factory

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"


class HttpResponder(asyncio.Protocol):
    """Counts request heads (the bench sends GETs without bodies) and answers each."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :] if heads else data
        if heads and self.transport is not None:
            self.transport.write(RESPONSE * heads)


class WsResponder(asyncio.Protocol):
    """Completes the handshake, then echoes every data frame unmasked."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.transport.write(_switching(bytes(self.buffer[:end])))
            del self.buffer[: end + 4]
            self.upgraded = True
        replies = [
            wsframes.encode(opcode, payload)
            for _, opcode, payload in wsframes.decode(self.buffer)
            if opcode in (wsframes.OP_TEXT, wsframes.OP_BINARY)
        ]
        if replies:
            self.transport.write(b"".join(replies))


def _switching(head: bytes) -> bytes:
    """The 101 answer to an Upgrade request head."""
    key = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + wsframes.accept_key(key) + b"\r\n\r\n"
    )


async def serve(port: int, ws: bool) -> None:
    """Serve on 127.0.0.1:port until killed."""
    loop = asyncio.get_running_loop()
    protocol = WsResponder if ws else HttpResponder
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Run the responder (the bench kills it when done)."""
    parser = argparse.ArgumentParser(prog="python -m threadloom.bench.responder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    factory, _ = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port, args.ws))
    return 0


if __name__ == "__main__":
    sys.exit(main())
