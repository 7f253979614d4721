"""What a refused or failed run must leave: one ``zeroimage: error:`` line and its exit code, no
traceback, every file as it was, and nothing sent to a registry.

:func:`fingerprint` records a folder (each file's sha256, each link's target) so that a test
compares the whole of it before and after a run: an input unchanged and no output written are
then one assertion, whatever path a regression would have written to; :func:`with_times` adds
each entry's modification time (a file rewritten with the same bytes, or touched, shows), and
:func:`fill` makes a folder of someone else's old files for such a test to keep.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .cli import Result
from .registry import Registry

#: The zeroimage fixture's private cache and Docker config, which a run may fill.
PRIVATE = (".cache", ".docker")


def fingerprint(root: Path, skip: Iterable[str] = PRIVATE) -> dict[str, str]:
    """Every entry below ``root`` (but the top-level names in ``skip``), path → what it is: a
    file's sha256, a symlink's target, or ``dir``."""
    skipped = set(skip)
    found: dict[str, str] = {}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if here == root:
            dirs[:] = [d for d in dirs if d not in skipped]
            files = [f for f in files if f not in skipped]
        for name in dirs + files:
            path = here / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def with_times(root: Path) -> dict[str, tuple[str, int]]:
    """:func:`fingerprint` of ``root`` (nothing skipped), with each entry's modification time."""
    return {name: (what, os.lstat(root / name).st_mtime_ns) for name, what in fingerprint(root, skip=()).items()}


def fill(directory: Path, count: int, prefix: str = "entry-") -> None:
    """``count`` small files ``PREFIX00000``… in ``directory`` (made if missing), each with a
    time older than anything a build makes (the first a pruner would take)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = directory / f"{prefix}{i:05}"
        path.write_bytes(f"{i}\n".encode())
        os.utime(path, (1_000_000 + i, 1_000_000 + i))


def digest_in(line: str) -> str:
    """The digest an output's printed line ends with: ``REPOSITORY@sha256:…`` for a push,
    ``WHERE  # sha256:…`` (``# image ID sha256:…`` for Docker) for any other output."""
    found = re.findall(r"sha256:[0-9a-f]{64}", line)
    assert found, f"no digest in {line!r}"
    return str(found[-1])


def refused(result: Result, code: int, *words: str) -> None:
    """``result`` exited ``code`` with exactly one error line, ``zeroimage: error: …``, holding
    every one of ``words``, and no traceback."""
    assert result.returncode == code, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("zeroimage: error: "), result.describe()
    for word in words:
        assert word in errors[0], (word, result.describe())


def requests_for(registry: Registry, repository: str) -> list[str]:
    """The registry's access-log lines about ``repository`` (``/v2/REPO/…``): empty when a run
    sent nothing for it, not even a look-up."""
    return [line for line in registry.access_log() if f" /v2/{repository}/" in line]
