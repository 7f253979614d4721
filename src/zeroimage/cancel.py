"""Interrupts that must not be lost, and work that can be stopped from another thread.

The CLI's signal handlers record SIGINT/SIGTERM here (:func:`request`) as well as raising. Python
can swallow an exception raised while it runs a finaliser or a weakref callback ("Exception ignored
in ..."), so every point that commits an output (renaming a file into place, putting a manifest)
calls :func:`check` first: an interrupted build never leaves an output behind. The library itself
installs no signal handler; used from Python, nothing is pending unless a caller calls
:func:`request`.

A :class:`Cancellation` stops one piece of background work (a layer being compressed) from any
thread; a :class:`Worker` is a thread whose end can be waited for across an interrupt.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from zeroimage.errors import Interrupted

_pending: int | None = None


def request(signum: int) -> None:
    global _pending
    _pending = signum


def check() -> None:
    """Raise Interrupted if a signal arrived, even one whose exception was swallowed."""
    if _pending is not None:
        raise Interrupted(_pending)


class Cancellation:
    """The stop switch of one piece of work, settable from any thread: the work checks
    :meth:`is_set` between steps, and hooks (:meth:`on_set`) wake whatever it may be waiting on
    (a full :class:`~zeroimage.layers.feed.MemoryPipe`). Setting it twice, or hooking late, is
    harmless."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_set(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
            already = self._event.is_set()
        if already:
            hook()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()


def start_thread(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGINT and SIGTERM held back until it runs (it keeps them blocked,
    so they always reach the main thread). An interrupt raised inside ``Thread.start`` breaks
    CPython's own bookkeeping: the new thread then dies printing a KeyError traceback. Where
    signal masks do not exist (Windows), the thread is simply started."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        thread.start()
        return
    held = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        thread.start()
    finally:
        mask(signal.SIG_SETMASK, held)


class Worker:
    """A daemon thread whose end can be waited for even across an interrupt.

    ``Thread.join`` cannot: in CPython 3.11 a join interrupted by a signal handler's exception
    releases the running thread's state lock and marks it ended (the bpo-45274 handling), so a
    later join returns while it still runs. :meth:`wait` waits on an event the thread sets
    when it is done, and not at all for a thread never started (interrupted before)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._done = threading.Event()

        def run() -> None:
            try:
                target()
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, name=name, daemon=True)

    def start(self) -> None:
        start_thread(self._thread)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, interruptible: bool = False) -> None:
        """Wait for the thread to end. ``interruptible``: in the main thread, an interrupt that
        arrived meanwhile and was left pending is raised within a tenth of a second (never while
        cleaning up, which must wait for the thread whatever happens)."""
        if self._thread.ident is None:  # never started: start_thread is never interrupted half-way
            return
        check_pending = interruptible and threading.current_thread() is threading.main_thread()
        while not self._done.wait(0.1):
            if check_pending:
                check()
