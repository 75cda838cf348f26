"""hello: 13 bytes of text/plain; what the server itself costs per request (WSGI form)."""

from appkit import plain_wsgi
from payloads import HELLO

app = plain_wsgi(HELLO)
