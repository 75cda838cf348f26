"""Tutorial section 7: asyncio streams, ``handle_client(reader, writer)``, unchanged.

    threadloom serve tutorial_7_asyncio:handle_client --model asyncio --bind 127.0.0.1:8080

(run from this folder), or ``python tutorial_7_asyncio.py``. uvloop is used when installed
(``--loop asyncio`` to choose the standard loop).
"""


async def handle_client(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    print(f"Received: {message}")

    writer.write("Hello from server!".encode())
    await writer.drain()
    writer.close()


if __name__ == "__main__":
    import threadloom

    threadloom.serve(handle_client, model="asyncio", bind="127.0.0.1:8080")
