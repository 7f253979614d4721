"""Run the zeroimage CLI (``python -m zeroimage``) from tests: the one way every test does it.

A :class:`Home` is the private world of a test's runs: the working directory, the layer cache
(``ZEROIMAGE_CACHE_DIR``), Docker's config folder (``DOCKER_CONFIG``, so that no run ever sees
the user's credentials) and, when given, ``TMPDIR``. ``SOURCE_DATE_EPOCH`` is dropped from the
inherited environment, so that a developer's shell cannot change what a test sees. Standard
input is empty unless a test gives some: no run ever waits on a terminal. A run imports
zeroimage from where the test process does, whatever its working directory.

* :meth:`Home.run` runs to completion within a timeout and returns a :class:`Result`, with the
  peak RSS of the zeroimage process when asked (measured by GNU time, which sees that process
  alone: ``wait4`` from the test process would report at least the test process's own RSS, since
  a child forked from it keeps its parent's high-water mark across ``exec``).
* :meth:`Home.start` starts it (a ``Popen``) for tests that signal it or close its pipes;
  :func:`finish` collects such a run within a timeout and never leaves it running.

Every run is the leader of a process group of its own, so that a timeout kills it with all it
started (and GNU time's child with GNU time).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from .peers import describe

#: GNU time, whose ``-f %M`` is the peak RSS in kB of the command it runs.
GNU_TIME = Path("/usr/bin/time")
#: Long enough for the slowest build of the suite (a 2 GB program) on a loaded 2-core machine.
DEFAULT_TIMEOUT = 300.0


class Result(subprocess.CompletedProcess[str]):
    """A finished run: ``args``, ``returncode``, ``stdout`` and ``stderr`` (UTF-8 text, bad bytes
    replaced), ``stdout_bytes`` (exact, for documents whose digest matters) and ``peak_rss_kb``
    (None unless measured). A ``CompletedProcess`` so that tests written against
    ``subprocess.run`` keep working."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: bytes, stderr: bytes, peak_rss_kb: int | None):
        super().__init__(list(args), returncode, _text(stdout), _text(stderr))
        self.stdout_bytes = stdout
        self.peak_rss_kb = peak_rss_kb

    def describe(self) -> str:
        """The command, its exit code and its output, for an assertion message."""
        return describe(self.args, self.returncode, self.stdout, self.stderr)


def _pythonpath() -> str:
    """The run's PYTHONPATH: the folder this test process imports zeroimage from, then the given
    entries made absolute. A run works in another folder, where a relative entry
    (``PYTHONPATH=src``) would name nothing, and the code under test would silently be whatever
    zeroimage is installed in the environment."""
    spec = importlib.util.find_spec("zeroimage")
    assert spec is not None and spec.submodule_search_locations, "zeroimage cannot be imported"
    package = Path(next(iter(spec.submodule_search_locations)))
    given = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([str(package.parent), *given]))


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run's process group (it leads one), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(
    proc: subprocess.Popen[bytes],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    input: bytes | None = None,  # noqa: A002 - mirrors subprocess.run
    rss_file: Path | None = None,
) -> Result:
    """Wait for ``proc`` (from :meth:`Home.start`) and collect its output, within ``timeout``.

    On a timeout the run is killed and ``AssertionError`` raises with what it printed so far: a
    hang is a failure, never a stuck test. So is any other interruption of the wait (the run is
    killed before the error goes on)."""
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
        peak = None if rss_file is None else int(rss_file.read_text().split()[-1])  # after any "Command exited"
    except subprocess.TimeoutExpired as timed_out:
        _kill_group(proc)
        what = f"still running after {timeout} s: killed"
        raise AssertionError(describe(proc.args, what, timed_out.stdout, timed_out.stderr)) from None  # type: ignore[arg-type]
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if rss_file is not None:
            rss_file.unlink(missing_ok=True)
    return Result(proc.args, proc.returncode, stdout, stderr, peak)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Home:
    """Where zeroimage runs for a test: see the module docstring.

    ``work`` is the working directory, ``cache`` the layer cache, ``docker_config`` Docker's
    config folder, ``tmp`` a private ``TMPDIR`` (None: the test process's own)."""

    work: Path
    cache: Path
    docker_config: Path
    tmp: Path | None = None

    @classmethod
    def under(cls, root: Path) -> Home:
        """``work/``, ``cache/``, ``tmp/`` (a private TMPDIR) and ``docker-config/`` under ``root``:
        for tests that check that a run leaves nothing behind in any of them."""
        work, cache, tmp = root / "work", root / "cache", root / "tmp"
        for folder in (work, cache, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        return cls(work, cache, root / "docker-config", tmp)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a run: the test process's, made private, then ``extra``."""
        env = {
            **os.environ,
            "PYTHONPATH": _pythonpath(),
            "ZEROIMAGE_CACHE_DIR": str(self.cache),
            "DOCKER_CONFIG": str(self.docker_config),
        }
        env.pop("SOURCE_DATE_EPOCH", None)
        if self.tmp is not None:
            env["TMPDIR"] = str(self.tmp)
        return {**env, **(extra or {})}

    def start(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        wrap: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m zeroimage ARGS`` (behind ``wrap``, e.g. GNU time) and return at once.

        The caller owns the process: collect it with :func:`finish`, which bounds the wait."""
        return subprocess.Popen(
            [*wrap, sys.executable, "-m", "zeroimage", *args],
            cwd=cwd or self.work,
            env=self.env(env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input: str | bytes | None = None,  # noqa: A002 - mirrors subprocess.run
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = False,
        measure_rss: bool = False,
    ) -> Result:
        """Run ``python -m zeroimage ARGS`` to completion; see :class:`Result`.

        ``input`` is its standard input (else it reads an empty one). With ``check`` a non-zero
        exit raises ``AssertionError`` with the output. ``measure_rss`` fills ``peak_rss_kb`` and
        skips the test where GNU time is not installed (``make deps`` installs it)."""
        wrap: list[str] = []
        rss_file = None
        if measure_rss:
            if not GNU_TIME.exists():
                pytest.skip(f"GNU time is not installed ({GNU_TIME}): peak memory cannot be measured")
            handle, name = tempfile.mkstemp(prefix="zeroimage-peak-rss-")  # outside every folder a test checks
            os.close(handle)
            rss_file = Path(name)
            wrap = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file)]
        data = input.encode() if isinstance(input, str) else input
        proc = self.start(
            *args, env=env, cwd=cwd, stdin=subprocess.DEVNULL if data is None else subprocess.PIPE, wrap=wrap
        )
        result = finish(proc, timeout=timeout, input=data, rss_file=rss_file)
        if check and result.returncode != 0:
            raise AssertionError(f"zeroimage failed: {result.describe()}")
        return result
