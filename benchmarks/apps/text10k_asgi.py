"""10k: 10 KiB of text/plain, where copying the body starts to weigh against parsing (ASGI form)."""

from appkit import plain_asgi
from payloads import TEXT_10K

app = plain_asgi(TEXT_10K)
