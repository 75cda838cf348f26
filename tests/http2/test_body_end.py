"""A request body whose END_STREAM comes alone, after the app took the rest, as httpx sends it.

httpx (``test_real_clients.py``) found it: it sends the body's DATA frames, then an empty
DATA frame with END_STREAM. When the app had taken every byte before that frame came, the
ASGI ``receive`` under asyncio took the end for a disconnect: the app never got its
``more_body: False`` and the stream hung.
"""

from __future__ import annotations

import time

import pytest

from tests.http2.client import Answer, H2Client
from tests.http2.test_h2_basic import CASES, _id, serving
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
