"""1k: 1 KiB of text/plain (WSGI form)."""

from appkit import plain_wsgi
from payloads import TEXT_1K

app = plain_wsgi(TEXT_1K)
