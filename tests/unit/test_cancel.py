"""cancel.Worker: a thread whose end can still be waited for after an interrupt."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import pytest

from zeroimage.cancel import Worker


class _Alarm(Exception):
    pass


def _raise(signum: int, frame: FrameType | None) -> None:
    raise _Alarm


def test_wait_outlasts_an_interrupted_wait() -> None:
    """Thread.join, interrupted like this, marks the thread ended while it still runs (3.11);
    a Worker's second wait still waits for the real end."""
    finished = threading.Event()

    def slow() -> None:
        time.sleep(2)  # far beyond the alarm, however late the alarm comes
        finished.set()

    worker = Worker(slow, "slow")
    previous = signal.signal(signal.SIGALRM, _raise)
    try:
        worker.start()
        with pytest.raises(_Alarm):
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            worker.wait()
        assert not worker.done
        worker.wait()
        assert finished.is_set() and worker.done
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_worker_never_started_is_not_waited_for() -> None:
    worker = Worker(lambda: None, "never")
    worker.wait()  # returns: there is nothing to wait for
    assert not worker.done
