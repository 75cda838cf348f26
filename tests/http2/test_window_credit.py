"""WINDOW_UPDATEs that give back the window of our DATA frames are not a flood; others are.

HAProxy in front (``test_real_clients.py``) found it: on a busy upstream connection it
sends about one connection WINDOW_UPDATE per response, which counted as control frames
made a proxy under load look like a flood (CVE-2019-9512 family) and get GOAWAY
ENHANCE_YOUR_CALM after a thousand responses.
"""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes

from tests.http2.client import H2Client
from tests.http2.test_h2_basic import CASES, _id, serving
from threadloom.engine.h2_core import CONTROL_FRAMES_MAX


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_window_update_per_response_is_not_a_flood(case: tuple[str, str]) -> None:
    with serving(*case) as address, H2Client(address) as client:
        for _ in range(CONTROL_FRAMES_MAX // 50 + 5):
            ids = [client.request("/") for _ in range(50)]
            answers = client.wait(*ids)
            assert [a.status for a in answers] == [200] * 50
            for answer in answers:  # as HAProxy does: the connection's window, per response
                client.conn.increment_flow_control_window(len(answer.body))
            client._flush()
        assert client.goaway is None and not client.closed


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_window_updates_for_nothing_sent_are_a_flood(case: tuple[str, str]) -> None:
    with serving(*case) as address, H2Client(address) as client:
        for _ in range(CONTROL_FRAMES_MAX + 1):
            client.conn.increment_flow_control_window(1)
        client._flush()
        client.wait(timeout=5)
        while not client.closed and client.goaway is None:
            client._receive_once(5)
        assert client.goaway is not None
        assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
