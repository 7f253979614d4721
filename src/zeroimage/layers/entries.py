"""What a new layer holds: entries with an absolute in-image path, a kind, a mode and an owner.

An entry's bytes come from a host file (``source``, read when the layer is written) or from
memory (``data``). Entries carry no time and no user or group names: a layer's bytes depend on
its entries and its options alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from zeroimage.errors import InputError, UsageError
from zeroimage.files import describe_os_error

EntryKind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True)
class Entry:
    """One member of a layer. ``path`` is absolute inside the image."""

    path: str
    kind: EntryKind
    mode: int
    source: Path | None = None
    data: bytes | None = None
    size: int = 0
    target: str = ""
    uid: int = 0
    gid: int = 0

    @property
    def tar_name(self) -> str:
        return self.path.lstrip("/")


def clean_image_path(path: str) -> str:
    """Normalise an absolute in-image path; refuse relative ones and '..'."""
    if not path.startswith("/"):
        raise UsageError(f"path in the image must be absolute: {path!r}")
    parts = [p for p in PurePosixPath(path).parts[1:] if p not in ("", ".")]
    if ".." in parts or not parts:
        raise UsageError(f"invalid path in the image: {path!r}")
    return "/" + "/".join(parts)


def file_entry(source: Path, dest: str, uid: int = 0, gid: int = 0) -> Entry:
    """An entry for a regular file on the host (symlinks followed), keeping its mode bits."""
    try:
        st = os.stat(source)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, source)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{source} is a directory, not a program")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{source} is not a regular file")
    if not os.access(source, os.R_OK):
        raise InputError(f"cannot read {source}: permission denied")
    return Entry(
        path=clean_image_path(dest),
        kind="file",
        mode=stat.S_IMODE(st.st_mode),
        source=source,
        size=st.st_size,
        uid=uid,
        gid=gid,
    )


def sort_key(entry: Entry) -> tuple[str, ...]:
    """Parents before children, siblings by name: the order entries take in a layer."""
    return PurePosixPath(entry.path).parts


def total_size(entries: Sequence[Entry]) -> int:
    return sum(e.size for e in entries if e.kind == "file")
