"""``--timeout-request``'s race, decided by :class:`Deadline`, on a fake clock: the client
gets the app's response or the 503, never both, whichever comes first."""

from __future__ import annotations

from threadloom.engine.request_timeout import Deadline

T0 = 500.0


class Expiries:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, deadline: Deadline) -> None:
        self.count += 1


def test_the_deadline_is_the_timeout_after_the_request_began() -> None:
    deadline = Deadline(30.0, Expiries(), now=T0)
    assert deadline.began == T0 and deadline.at == T0 + 30.0


def test_a_response_begun_in_time_wins_and_the_timeout_no_longer_applies() -> None:
    expiries = Expiries()
    deadline = Deadline(30.0, expiries, now=T0)
    assert deadline.start_response()
    assert not deadline.expire()  # (a stream, a long download: never cut by this timeout)
    assert expiries.count == 0 and not deadline.expired
    assert deadline.start_response()  # the app may go on sending


def test_the_timeout_wins_once_and_the_app_may_not_send_after_it() -> None:
    expiries = Expiries()
    deadline = Deadline(30.0, expiries, now=T0)
    assert deadline.expire()
    assert deadline.expired and expiries.count == 1
    assert not deadline.start_response()  # its late response is discarded
    assert not deadline.expire()  # the 503 is sent once
    assert expiries.count == 1


def test_an_app_that_returned_can_no_longer_time_out() -> None:
    expiries = Expiries()
    deadline = Deadline(30.0, expiries, now=T0)
    deadline.finish()
    assert not deadline.expire() and expiries.count == 0
