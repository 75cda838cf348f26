"""The bytes each workload puts on the wire, in one place for the apps and the harness alike.

The apps (benchmarks/apps, copied next to this module into the run's temporary directory) build
their responses from these constants, and the harness's probe checks every server's answer
against the same constants, so a WSGI form and an ASGI form cannot drift apart unnoticed.
Standard library only: every server imports it, from either venv.
"""

from __future__ import annotations

HELLO = b"Hello, world!"
# Plain text bodies of exactly 1 KiB and 10 KiB: printable, so a wrong answer reads clearly.
TEXT_1K = (b"0123456789abcdef" * 64)[:1024]
TEXT_10K = (b"0123456789abcdef" * 640)[: 10 * 1024]
JSON_DOC = {"message": "Hello, world!", "id": 1, "tags": ["bench", "json"], "ok": True}
# The POST body wrk sends (post64k.lua builds the same bytes) and the apps echo back.
POST_SIZE = 64 * 1024
POST_BODY = b"x" * POST_SIZE
FILE_NAME = "file1m.bin"
FILE_SIZE = 1024 * 1024
FILE_BLOCK = 64 * 1024
IO_SLEEP_S = 0.010


def file_bytes() -> bytes:
    """The content of the 1 MiB file: every byte value, repeated, so that a server that mangles
    binary data (a text-mode read, a stripped NUL) fails the probe."""
    return bytes(range(256)) * (FILE_SIZE // 256)
