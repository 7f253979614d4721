"""How long work reports on itself without printing: whoever runs a build supplies a Reporter.

Library code calls ``reporter.task(...)`` around long work (compressing, uploading,
downloading) and ``reporter.warn(...)`` for things the user should know. The default reporter
does nothing, so the library is silent when imported and used from Python; the CLI's prints
(``zeroimage.cli.reporters``); :class:`CallbackReporter` hands every step to a function as an
:class:`Event`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol


class Task(Protocol):
    def advance(self, amount: int) -> None: ...

    def __enter__(self) -> Task: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Reporter(Protocol):
    """Receives what a build has to say. Methods may be called from several threads at once."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the build."""
        ...

    def notice(self, message: str) -> None:
        """Something the build did on the user's behalf that they should know of."""
        ...

    def info(self, message: str) -> None:
        """A step of the work, shown with --verbose or in logs."""
        ...

    def task(self, description: str, total: int | None) -> Task:
        """A long piece of work measured in bytes; ``total`` is None when unknown."""
        ...


class _NullTask:
    def advance(self, amount: int) -> None:
        pass

    def __enter__(self) -> _NullTask:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class NullReporter:
    """Reports nothing: the default outside the CLI."""

    def warn(self, message: str) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def task(self, description: str, total: int | None) -> Task:
        return _NullTask()


EventKind = Literal["warning", "notice", "info", "started", "progress", "finished", "failed"]


@dataclass(frozen=True)
class Event:
    """One thing a build says: a warning or a step (``message``), or news of a long task — its
    description in ``message``, the bytes ``done`` so far and the ``total`` (None if unknown)."""

    kind: EventKind
    message: str
    done: int = 0
    total: int | None = None


class CallbackReporter:
    """A Reporter that hands every event to ``callback`` (from whichever thread the work runs
    in; calls are serialised). Progress events come at most once per ``step`` bytes."""

    def __init__(self, callback: Callable[[Event], None], step: int = 8 << 20) -> None:
        self._callback = callback
        self._step = step
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._callback(event)

    def warn(self, message: str) -> None:
        self.emit(Event("warning", message))

    def notice(self, message: str) -> None:
        self.emit(Event("notice", message))

    def info(self, message: str) -> None:
        self.emit(Event("info", message))

    def task(self, description: str, total: int | None) -> Task:
        return _CallbackTask(self, description, total)


class _CallbackTask:
    def __init__(self, reporter: CallbackReporter, description: str, total: int | None) -> None:
        self._reporter = reporter
        self._description = description
        self._total = total
        self._done = 0
        self._told = 0

    def __enter__(self) -> _CallbackTask:
        self._reporter.emit(Event("started", self._description, 0, self._total))
        return self

    def advance(self, amount: int) -> None:
        self._done += amount
        if self._done - self._told >= self._reporter._step:
            self._told = self._done
            self._reporter.emit(Event("progress", self._description, self._done, self._total))

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        ended: EventKind = "finished" if kind is None else "failed"
        self._reporter.emit(Event(ended, self._description, self._done, self._total))
