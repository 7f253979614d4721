"""Retries of one request: which failures are worth another try, how long to wait, when to stop.

A reply of 408, 429 or 5xx and a transport fault (a refused or reset connection, a cut reply) are
transient: the request is sent again after an exponential backoff with jitter (half the delay
fixed, half random), or after what the registry's ``Retry-After`` asks when that is longer, both
capped at ``max_backoff``. Tries stop after ``max_attempts``, or once ``deadline`` seconds have
passed since the first, and the last reply or fault is the caller's.

Which faults are transient is the caller's to say (:data:`Judge`): the client retries a stall
once only, never a refused certificate, never TLS spoken to a plain-HTTP server. An unwanted
reply's short body is read before the retry (:func:`~.replies.release`), so that its kept-alive
connection serves the next try.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from zeroimage.transports.http import httpx
from zeroimage.transports.registry.options import ClientOptions
from zeroimage.transports.registry.replies import release

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Fault:
    """What a transport fault means: the error to report, and whether another try may help."""

    error: Exception
    retryable: bool


#: Tells what a transport fault means for the request that met it.
Judge = Callable[["httpx.TransportError"], Fault]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds, or an HTTP date); None when it asks
    nothing that can be read."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text[:9])
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Retrier:
    """Sends a request again while its failure is transient (see the module's rules). Holds no
    state between requests: one retrier serves every thread of a client."""

    def __init__(
        self,
        max_attempts: int = 5,
        deadline: float = 40.0,
        base_backoff: float = 0.25,
        max_backoff: float = 8.0,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_options(cls, options: ClientOptions, sleep: Sleep = time.sleep) -> Retrier:
        return cls(options.max_attempts, options.retry_deadline, options.base_backoff, options.max_backoff, sleep)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """How long to wait before try ``attempt + 1``."""
        delay = min(self.max_backoff, self.base_backoff * 2.0 ** min(max(attempt - 1, 0), 32))
        delay = delay / 2 + random.uniform(0, delay / 2)
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            delay = min(max(delay, asked), self.max_backoff)
        return delay

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        """Wait before try ``attempt + 1``: exponential backoff with jitter, or what the
        registry's ``Retry-After`` asks (both capped)."""
        self._sleep(self.delay(attempt, retry_after))

    def send(self, attempt: Callable[[], httpx.Response], judge: Judge, retry: bool = True) -> httpx.Response:
        """The (streamed) reply of ``attempt``, called again while it fails in a transient way;
        ``retry=False`` sends once. A fault that is not retried raises its judged error."""
        started = self._clock()
        tries = 0
        while True:
            tries += 1
            last = not retry or tries >= self.max_attempts or self._clock() - started > self.deadline
            try:
                response = attempt()
            except httpx.TransportError as exc:
                fault = judge(exc)
                if last or not fault.retryable:
                    raise fault.error from exc
                self.pause(tries)
                continue
            if response.status_code in RETRYABLE_STATUS and not last:
                retry_after = response.headers.get("retry-after")
                release(response)
                self.pause(tries, retry_after)
                continue
            return response
