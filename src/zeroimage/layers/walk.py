"""Walking a host directory tree (``--add SRC:DEST``, the time zone database) without recursion.

``os.walk`` of Python 3.11 recurses once per level — a tree deeper than the interpreter's
recursion limit (about 1,000 levels) raises RecursionError — and silently skips a directory it
cannot read, whose files would then be missing from the image without a word. :func:`walk`
keeps a stack of its own, raises InputError for a directory it cannot read, never enters a
symlink, and refuses a tree whose paths are longer than an image may hold
(:data:`~zeroimage.layers.entries.MAX_PATH`) before it goes deeper.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path, PurePath

from zeroimage.errors import InputError
from zeroimage.files import describe_os_error
from zeroimage.layers.entries import MAX_PATH, shown

_TOO_LONG = f"its path is longer than {MAX_PATH} bytes, the most a path in an image can have (Linux's PATH_MAX)"


def walk(root: Path, what: str) -> Iterator[tuple[Path, PurePath, list[str], list[str]]]:
    """``(directory, relative, dirs, others)`` for ``root`` and every directory below it, top
    down, each parent before its children and siblings by name, as ``os.walk`` gives them.

    ``relative`` is the directory's path below ``root`` (``.`` for the root itself). ``dirs``
    are its sub-directories (never a symlink), sorted; the caller may remove names from it to
    leave them out. ``others`` are the rest, sorted: files, symlinks (to directories too),
    special files. ``what`` names the tree in errors (``--add ./static``)."""
    stack: list[tuple[Path, PurePath]] = [(root, PurePath())]
    while stack:
        directory, relative = stack.pop()
        if len(os.fsencode(relative)) > MAX_PATH:
            raise InputError(f"{what}: {shown(directory)} is too deep: {_TOO_LONG}")
        dirs: list[str] = []
        others: list[str] = []
        try:
            with os.scandir(directory) as found:
                for entry in found:
                    (dirs if entry.is_dir(follow_symlinks=False) else others).append(entry.name)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # on the host: the tree's root makes it longer still
                raise InputError(f"{what}: {shown(directory)} is too deep: {_TOO_LONG}") from None
            raise InputError(f"{what}: cannot read {describe_os_error(exc, shown(directory))}") from None
        dirs.sort()
        others.sort()
        yield directory, relative, dirs, others
        stack.extend((directory / name, relative / name) for name in reversed(dirs))
