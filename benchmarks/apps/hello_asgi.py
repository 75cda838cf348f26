"""hello: 13 bytes of text/plain; what the server itself costs per request (ASGI form)."""

from appkit import plain_asgi
from payloads import HELLO

app = plain_asgi(HELLO)
