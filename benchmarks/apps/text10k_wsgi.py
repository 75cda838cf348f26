"""10k: 10 KiB of text/plain, where copying the body starts to weigh against parsing (WSGI form)."""

from appkit import plain_wsgi
from payloads import TEXT_10K

app = plain_wsgi(TEXT_10K)
