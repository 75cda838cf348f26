"""1k: 1 KiB of text/plain (ASGI form)."""

from appkit import plain_asgi
from payloads import TEXT_1K

app = plain_asgi(TEXT_1K)
