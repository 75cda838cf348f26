"""io: 10 ms of waiting per request, as on a database, then hello (WSGI form).

The thread blocks in ``time.sleep`` as it would in a blocking driver, so throughput is bounded
by how many requests a server keeps in flight at once, not by its per-request cost.
"""

import time
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from appkit import headers
from payloads import HELLO, IO_SLEEP_S

HEADERS = headers("text/plain", len(HELLO))


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Wait, then answer like hello."""
    time.sleep(IO_SLEEP_S)
    start_response("200 OK", HEADERS)
    return [HELLO]
