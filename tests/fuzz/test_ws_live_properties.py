"""Property tests of WebSocket beyond the core's own (tests/protocols/test_ws_properties.py):
the fuzz target's invariants under hypothesis, and live servers fed any bytes after a
handshake: whatever arrives, the server writes whole frames, ends with a Close or simply
closes, and never hangs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import apps, wsraw
from tests.fuzz.ws_target import frames_of, one_input
from threadloom.server import Server
from threadloom.testing import running_server, timeout_factor

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_any_bytes_same_outcome_however_cut(data: bytes) -> None:
    one_input(data)


@pytest.fixture(scope="module", params=["pool", "asyncio"])
def live(request: pytest.FixtureRequest) -> Iterator[Server]:
    handler = apps.ws_echo_async if request.param == "asyncio" else apps.ws_echo
    with running_server(
        handler, model=str(request.param), access_log=False, ws_max_size=4096, threads=4
    ) as server:
        yield server


def _frame_stream(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            b0 = draw(st.sampled_from([0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8A, 0x88, 0xC1]))
            parts.append(wsraw.frame(b0 & 0x0F, draw(st.binary(max_size=200)), fin=b0 >= 0x80))
        else:
            parts.append(draw(st.binary(max_size=30)))
    return b"".join(parts)


@pytest.mark.slow
@pytest.mark.shared_server
@settings(SETTINGS, max_examples=40)
@given(stream=st.composite(_frame_stream)())
def test_live_server_writes_whole_frames_then_closes(live: Server, stream: bytes) -> None:
    sock = wsraw.handshake(live.addresses[0])
    with sock:
        sock.settimeout(5 * timeout_factor())
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)  # then EOF: the server must end the connection
        except OSError:
            pass
        raw = bytearray()
        try:
            while chunk := sock.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    frames = frames_of(bytes(raw))  # whole frames only (asserted inside)
    assert all(b0 & 0x0F != 0x8 for b0, _ in frames[:-1]), "frames after the server's Close"
