"""How the CLI shows a build's warnings, steps and progress on stderr: bars on a terminal, one
plain line per finished step otherwise (logs, CI), nothing but warnings with ``-q``. Every line
is :func:`~zeroimage.cli.text.printable`: what came from outside is shown, never obeyed."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from zeroimage.cli.text import printable


def say(message: str) -> None:
    """One line on stderr, as every message of zeroimage's begins."""
    click.echo(f"zeroimage: {printable(message)}", err=True)


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class CliReporter:
    """Warnings always; steps with --verbose; progress bars on a terminal unless --quiet."""

    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.terminal = sys.stderr.isatty() and not quiet
        self._progress: Any = None
        self._lock = threading.Lock()

    def warn(self, message: str) -> None:
        self._print(f"warning: {message}")

    def notice(self, message: str) -> None:
        self._print(message)

    def info(self, message: str) -> None:
        if self.verbose:
            self._print(message)

    def _print(self, line: str) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"zeroimage: {printable(line)}", markup=False, highlight=False)
            else:
                say(line)

    def task(self, description: str, total: int | None) -> _PlainTask | _RichTask:
        if not self.terminal:
            return _PlainTask(self, description, not self.quiet)
        return _RichTask(self, description, total)

    @contextmanager
    def live(self) -> Iterator[None]:
        """Progress bars for the block's duration (on a terminal)."""
        if not self.terminal:
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            self._progress = progress
            try:
                yield
            finally:
                self._progress = None


class _PlainTask:
    """Progress as one log line per finished task, for logs and CI (stderr is not a terminal)."""

    def __init__(self, reporter: CliReporter, description: str, show: bool) -> None:
        self.reporter = reporter
        self.description = description
        self.done = 0
        self.show = show
        self.started = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount

    def __enter__(self) -> _PlainTask:
        self.started = time.monotonic()
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        if kind is None and self.show:
            rate = human(self.done / seconds)
            self.reporter._print(f"{self.description}: {human(self.done)} in {seconds:.2f} s ({rate}/s)")


class _RichTask:
    def __init__(self, reporter: CliReporter, description: str, total: int | None) -> None:
        self.reporter = reporter
        self.description = description
        self.total = total
        self.id: Any = None

    def __enter__(self) -> _RichTask:
        progress = self.reporter._progress
        if progress is not None:
            self.id = progress.add_task(printable(self.description), total=self.total)
        return self

    def advance(self, amount: int) -> None:
        progress = self.reporter._progress
        if progress is not None and self.id is not None:
            progress.advance(self.id, amount)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        progress = self.reporter._progress
        if progress is not None and self.id is not None:
            progress.remove_task(self.id)
