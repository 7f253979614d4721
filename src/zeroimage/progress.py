"""How long work reports on itself without printing: the CLI supplies a Reporter that does.

Library code calls ``reporter.task(...)`` around long work (compressing, uploading,
downloading) and ``reporter.warn(...)`` for things the user should know. The default reporter
does nothing, so the library is silent when imported and used from Python.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol


class Task(Protocol):
    def advance(self, amount: int) -> None: ...

    def __enter__(self) -> Task: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Reporter(Protocol):
    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the build."""
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

    def info(self, message: str) -> None:
        pass

    def task(self, description: str, total: int | None) -> Task:
        return _NullTask()


class CollectingReporter(NullReporter):
    """Keeps warnings and steps in lists (for library users and tests)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.steps: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None:
        self.steps.append(message)
