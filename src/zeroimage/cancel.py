"""Interrupts that must not be lost.

The CLI's signal handlers record SIGINT/SIGTERM here as well as raising. Python can swallow an
exception raised while it runs a finaliser or a weakref callback ("Exception ignored in ..."), so
every point that commits an output (renaming a file into place, putting a manifest) calls
:func:`check` first: an interrupted build never leaves an output behind.
"""

from __future__ import annotations

import signal
import threading

from zeroimage.errors import Interrupted

_pending: int | None = None


def request(signum: int) -> None:
    global _pending
    _pending = signum


def check() -> None:
    """Raise Interrupted if a signal arrived, even one whose exception was swallowed."""
    if _pending is not None:
        raise Interrupted(_pending)


def start_thread(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGINT and SIGTERM held back until it runs (it keeps them blocked,
    so they always reach the main thread). An interrupt raised inside ``Thread.start`` breaks
    CPython's own bookkeeping: the new thread then dies printing a KeyError traceback."""
    if threading.current_thread() is not threading.main_thread():
        thread.start()
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
