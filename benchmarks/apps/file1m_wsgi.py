"""file1m: a 1 MiB file from disk (WSGI form).

Through ``environ["wsgi.file_wrapper"]`` when the server offers one, which is how a WSGI app
asks for the server's fastest file path (often ``sendfile``); else the app reads the file in
64 KiB blocks itself, as PEP 3333 suggests.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO
from wsgiref.types import StartResponse, WSGIEnvironment

from appkit import headers
from payloads import FILE_BLOCK, FILE_NAME, FILE_SIZE

PATH = Path(__file__).with_name(FILE_NAME)
HEADERS = headers("application/octet-stream", FILE_SIZE)


def read_blocks(file: BinaryIO) -> Iterator[bytes]:
    """The file in blocks, closed when done (or when the server closes the iterator)."""
    with file:
        while block := file.read(FILE_BLOCK):
            yield block


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Open per request, as a static view does; the server closes what it is handed."""
    start_response("200 OK", HEADERS)
    file = PATH.open("rb")
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(file, FILE_BLOCK)  # type: ignore[no-any-return]
    return read_blocks(file)
