"""The retry piece on its own: what is retried, how long it waits (backoff with jitter,
Retry-After capped), when it stops (tries, deadline, a fault judged final), and that the body of a
reply it drops is read only up to its bound before the reply is closed."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import httpx
import pytest

from zeroimage.errors import NetworkError
from zeroimage.transports.registry.replies import MAX_REPLY_BODY
from zeroimage.transports.registry.retry import Fault, Retrier, retry_after_seconds

REQUEST = httpx.Request("GET", "https://registry.test/v2/")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def retrier(clock: Clock, **kwargs: float) -> Retrier:
    return Retrier(sleep=clock.sleep, clock=clock, **kwargs)  # type: ignore[arg-type]


def answers(*statuses: int, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
    for status in statuses:
        yield httpx.Response(status, headers=headers, request=REQUEST)


def transient(exc: httpx.TransportError) -> Fault:
    return Fault(NetworkError(f"cannot reach registry.test: {exc}"), retryable=True)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    clock = Clock()
    replies = answers(status, 200)
    assert retrier(clock).send(lambda: next(replies), transient).status_code == 200
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize("status", [200, 201, 401, 404, 400, 501])
def test_other_statuses_are_returned_at_once(status: int) -> None:
    clock = Clock()
    replies = answers(status, 200)
    assert retrier(clock).send(lambda: next(replies), transient).status_code == status
    assert clock.sleeps == []


def test_backoff_doubles_with_jitter_down_to_half_and_is_capped() -> None:
    clock = Clock()
    calls = 0

    def failing() -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused")

    with pytest.raises(NetworkError, match="cannot reach registry.test") as failed:
        retrier(clock, max_attempts=8, deadline=1000, base_backoff=0.25, max_backoff=2).send(failing, transient)
    assert calls == 8 and len(clock.sleeps) == 7
    assert isinstance(failed.value.__cause__, httpx.ConnectError)  # the last fault, as its cause
    for attempt, slept in enumerate(clock.sleeps, start=1):
        delay = min(2.0, 0.25 * 2 ** (attempt - 1))
        assert delay / 2 <= slept <= delay


def test_retry_after_is_honoured_when_longer_and_capped() -> None:
    clock = Clock()
    replies = iter(
        [
            httpx.Response(503, headers={"Retry-After": "3"}),
            httpx.Response(429, headers={"Retry-After": "3600"}),
            httpx.Response(200),
        ]
    )
    assert retrier(clock, max_backoff=8).send(lambda: next(replies), transient).status_code == 200
    assert clock.sleeps == [3, 8]


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(later, now=1_000_000) == 30
    assert retry_after_seconds(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(unreadable) is None


def test_the_deadline_makes_the_next_try_the_last() -> None:
    clock = Clock()
    calls = 0

    def slow_failure() -> httpx.Response:
        nonlocal calls
        calls += 1
        clock.now += 15  # each try takes 15 s
        return httpx.Response(503)

    response = retrier(clock, max_attempts=100, deadline=40).send(slow_failure, transient)
    assert response.status_code == 503  # the last reply is the caller's
    assert calls == 4  # tries start at 0, 15+, 30+ and 45+ s: the one past the deadline is the last


def test_a_fault_judged_final_is_raised_at_once() -> None:
    clock = Clock()
    calls = 0

    def stalled() -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("stalled")

    final = NetworkError("the transfer stalled")
    with pytest.raises(NetworkError) as raised:
        retrier(clock).send(stalled, lambda exc: Fault(final, retryable=False))
    assert raised.value is final and calls == 1 and clock.sleeps == []


def test_without_retries_a_request_is_sent_once() -> None:
    clock = Clock()
    replies = answers(503, 200)
    assert retrier(clock).send(lambda: next(replies), transient, retry=False).status_code == 503
    assert clock.sleeps == []


def test_a_dropped_reply_is_read_within_its_bound_and_closed() -> None:
    """The body of a 503 is read (up to the bound) so that its connection can serve the retry; an
    endless one is not read past the bound."""
    pulled = 0
    closed: list[bool] = []

    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            nonlocal pulled
            while True:
                pulled += 4096
                yield bytes(4096)

        def close(self) -> None:
            closed.append(True)

    replies = iter([httpx.Response(503, stream=Endless()), httpx.Response(200)])
    assert retrier(Clock()).send(lambda: next(replies), transient).status_code == 200
    assert closed == [True]
    assert MAX_REPLY_BODY < pulled <= MAX_REPLY_BODY + 4096
