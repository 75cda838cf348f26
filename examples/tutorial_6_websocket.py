"""Tutorial section 6: a WebSocket handler, ``handle_client(websocket, path)``, unchanged.

    threadloom serve tutorial_6_websocket:handle_client --model asyncio --bind 127.0.0.1:8765

(run from this folder), or ``python tutorial_6_websocket.py``. The tutorial starts its own
event loop in a thread to run this; threadloom runs it on the asyncio model instead, with
permessage-deflate, keep-alive pings and a 1 MiB message limit by default.
"""


async def handle_client(websocket, path):
    async for message in websocket:
        print(f"Received: {message}")
        await websocket.send(f"Server received: {message}")


if __name__ == "__main__":
    import threadloom

    threadloom.serve(handle_client, model="asyncio", bind="127.0.0.1:8765")
