"""A chat room: every message goes to every connected client. Both forms, one file.

Blocking code, a thread per connection (``pool`` lends each chatter one of ``--threads``):

    threadloom serve chat:chat --model pool --threads 64 --bind 127.0.0.1:8765

asyncio, one loop for every chatter:

    threadloom serve chat:chat_async --model asyncio --bind 127.0.0.1:8765

Try it with two terminals running ``python -m websockets ws://127.0.0.1:8765``.
"""

import threading

members = set()
members_lock = threading.Lock()  # the sync room is shared by many threads


def chat(ws):
    with members_lock:
        members.add(ws)
    try:
        for message in ws:
            with members_lock:
                everyone = list(members)
            for member in everyone:
                try:
                    member.send(message)
                except Exception:
                    pass  # that member is leaving; its own thread cleans up
    finally:
        with members_lock:
            members.discard(ws)


async_members = set()


async def chat_async(ws):
    async_members.add(ws)
    try:
        async for message in ws:
            for member in list(async_members):
                try:
                    await member.send(message)
                except Exception:
                    pass
    finally:
        async_members.discard(ws)
