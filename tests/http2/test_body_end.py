"""The end of a request body, as httpx sends it (``test_real_clients.py`` found both).

httpx sends a body's DATA frames, then an empty DATA frame with END_STREAM. When the app
had taken every byte before that frame came, the ASGI ``receive`` under asyncio took the
end for a disconnect: the app never got its ``more_body: False`` and the stream hung.

And when the last DATA frame and the end came just after a WSGI app's reader found nothing
buffered, the reader saw ``complete`` and stopped: the app got the body short of its last
chunk (another thread feeds an HTTP/2 body, unlike HTTP/1.1's).
"""

from __future__ import annotations

import time

import pytest

from tests.http2.client import Answer, H2Client
from tests.http2.test_h2_basic import CASES, _id, serving
from threadloom.engine.body import BodyReader
from threadloom.protocols.http1 import Request, RequestBody
from threadloom.testing import timeout_factor

BODY = b"x" * 65_535  # the whole window: a sync app gets the request then, as an async one at once


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_the_end_of_the_body_alone_after_the_app_took_the_rest(case: tuple[str, str]) -> None:
    with serving(*case) as address, H2Client(address) as client:
        conn = client.conn
        stream_id = conn.get_next_available_stream_id()
        head = [(":method", "POST"), (":path", "/echo"), (":scheme", "http")]
        conn.send_headers(stream_id, [*head, (":authority", "localhost")])
        client.answers[stream_id] = Answer()
        client.started[stream_id] = time.monotonic()
        for at in range(0, len(BODY), 16_384):  # the largest frame by default
            conn.send_data(stream_id, BODY[at : at + 16_384])
        client._flush()
        # the window given back says the app has taken the bytes and waits for more
        deadline = time.monotonic() + 10 * timeout_factor()
        while conn.local_flow_control_window(stream_id) == 0:
            assert time.monotonic() < deadline and not client.closed, "no WINDOW_UPDATE"
            client._receive_once(1)
        conn.end_stream(stream_id)  # an empty DATA frame with END_STREAM
        client._flush()
        answer = client.wait(stream_id)[0]
    assert answer.status == 200 and answer.body == BODY


class LateSource:
    """A body source whose first ``take`` finds nothing, and the last bytes and the end
    arrive just after it (as when the connection's owner feeds them from another thread)."""

    def __init__(self, request: Request) -> None:
        self.body = request.body
        self.takes = 0

    def receive_more(self, body: RequestBody) -> bool:
        raise AssertionError("the body is complete: nothing to wait for")

    def send(self, data: bytes) -> None:
        raise AssertionError("no 100 Continue here")

    def take(self, body: RequestBody, size: int) -> bytes:
        self.takes += 1
        data = body.take(size)
        if self.takes == 1:  # the owner, just after: the last chunk, then the end
            body.chunks.append(b"the end")
            body.buffered += len(b"the end")
            body.complete = True
        return data


@pytest.mark.parametrize("how", ["read", "readline"])
def test_the_reader_takes_bytes_that_came_with_the_end(how: str) -> None:
    """pool, threads and asyncio's WSGI pool lost a body's last chunk this way (httpx's
    uploads, ``test_real_clients.py``): 200, with a short body."""
    request = Request()
    reader = BodyReader(request, LateSource(request))
    assert getattr(reader, how)() == b"the end"
    assert reader.read() == b"" and not reader.failed
