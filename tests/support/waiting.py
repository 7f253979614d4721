"""Bounded waits for tests: a regression that blocks fails with a message, never hangs the run.

:func:`wait_for` polls a condition until a deadline; :func:`bounded` runs a call that may block
(a write into a full pipe, a read that waits for more) in a helper thread and fails if it has not
returned in time. The helper thread is a daemon, so a call that never returns cannot keep the
test process from exiting either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20, interval: float = 0.002) -> None:
    """Return once ``condition()`` is true; ``AssertionError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Background(Generic[T]):
    """A call running in a daemon thread: :meth:`result` waits for it, within a bound."""

    def __init__(self, action: Callable[[], T], name: str) -> None:
        self.name = name
        self._outcome: list[T] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._outcome.append(action())
            except BaseException as exc:  # handed to the waiting test by result()
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def running_after(self, seconds: float) -> bool:
        """Whether the call is still running (blocked) ``seconds`` from now."""
        self._thread.join(seconds)
        return self._thread.is_alive()

    def result(self, timeout: float = 10) -> T:
        """What the call returned; re-raises what it raised; ``AssertionError`` if it is still
        running after ``timeout`` s."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"{self.name} still blocked after {timeout} s")
        if self._error:
            raise self._error[0]
        return self._outcome[0]


def bounded(action: Callable[[], T], what: str, timeout: float = 10) -> T:
    """``action()``, run in a helper thread; ``AssertionError`` naming ``what`` if it has not
    returned within ``timeout`` s (it would have blocked the test forever)."""
    return Background(action, what).result(timeout)
