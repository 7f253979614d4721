"""A peer daemon for a test session (containerd, dockerd): private, logged, and always stopped.

Each daemon lives in a folder of its own under the system temporary folder rather than under
pytest's: a unix socket's path may not exceed 107 bytes, and dockerd puts containerd's sockets
four levels below its exec root. Its output goes to a log file whose tail every error carries.

A daemon is stopped (SIGTERM, then SIGKILL) when the session ends, when the test process exits
(``atexit``), and, through ``setpriv --pdeathsig``, when the test process dies without exiting
(pytest-timeout's thread method ends a hung session with ``os._exit``): no daemon outlives its
tests. It runs in a session of its own, so that a Ctrl-C meant for pytest reaches it only
through the fixture that stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from . import peers


class PeerUnavailable(Exception):
    """A peer (a daemon, or podman) cannot run on this machine; the message says why."""


_LIVE: set[Daemon] = set()


@atexit.register
def _stop_leftovers() -> None:
    for daemon in list(_LIVE):
        daemon.close()


def private_folder(name: str) -> Path:
    """A new, short-named folder for a daemon's sockets, state and log."""
    return Path(tempfile.mkdtemp(prefix=f"zi-{name}-"))


class Daemon:
    """One daemon process: ``argv`` run in ``root``, ready once ``ready()`` returns true."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        root: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.log_path = root / f"{name}.log"
        self._argv = list(argv)
        self._ready = ready
        self._env = None if env is None else dict(env)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float) -> None:
        """Start it and wait until it is ready; :class:`PeerUnavailable` if it exits or is
        not ready within ``timeout`` seconds (it is stopped then)."""
        executable = peers.which(self._argv[0])
        if executable is None:
            raise PeerUnavailable(f"{self._argv[0]} is not installed")
        setpriv = peers.which("setpriv")
        guard = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        self._proc = subprocess.Popen(
            [*guard, executable, *self._argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise PeerUnavailable(f"{self.name} exited with code {code} while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PeerUnavailable(f"{self.name} was not ready after {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited 20 s later."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop it and remove its folder, unless something is still mounted below it (a
        container's root left behind: removing files through it would reach another tree)."""
        self.stop()
        with open("/proc/self/mountinfo") as mounts:
            points = [line.split()[4] for line in mounts]
        mounted = any(p == str(self.root) or p.startswith(f"{self.root}/") for p in points)
        if not mounted:
            shutil.rmtree(self.root, ignore_errors=True)

    def check_alive(self) -> None:
        """``AssertionError`` with the log's tail if the daemon has died."""
        if self._proc is None or self._proc.poll() is not None:
            raise AssertionError(f"{self.name} is not running\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of its log, headed by the log's path."""
        with contextlib.suppress(FileNotFoundError):
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return f"--- {self.name} log tail ({self.log_path}) ---\n" + "\n".join(tail)
        return f"--- no {self.name} log ---"
