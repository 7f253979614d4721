"""What a new layer holds: entries with an absolute in-image path, a kind, a mode and an owner.

An entry's bytes come from a host file (``source``, read when the layer is written) or from
memory (``data``). Entries carry no time and no user or group names: a layer's bytes depend on
its entries and its options alone.

In-image paths are POSIX paths whatever the host: a host's relative path becomes one through
its parts (:func:`image_path`), never through its string. A host file's mode is its own where
the host has POSIX modes, else what the file is (:func:`host_mode`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal

from zeroimage import files
from zeroimage.elf import runs_as_program
from zeroimage.errors import InputError, UsageError
from zeroimage.files import describe_os_error

#: What a build says, once, on a host without POSIX modes (:func:`host_mode`).
NO_POSIX_MODES = (
    "this host has no POSIX file modes: in the image, programs (ELF or #!) and directories get 0755, other files 0644"
)

EntryKind = Literal["file", "dir", "symlink"]

#: The longest path (bytes, UTF-8) and file name an entry of a new layer may have: Linux's
#: PATH_MAX (4096, with its NUL) and NAME_MAX. Longer ones make a layer that no runtime unpacks
#: (extraction opens each entry by its whole path: ENAMETOOLONG), so they are refused up front.
MAX_PATH = 4095
MAX_NAME = 255


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
    """Normalise an absolute in-image path; refuse relative ones, '..', a NUL (which ends a
    name in a tar header) and paths or names longer than :data:`MAX_PATH` and :data:`MAX_NAME`."""
    if not path.startswith("/"):
        raise UsageError(f"path in the image must be absolute: {path[:200]!r}")
    if "\0" in path:
        raise UsageError(f"invalid path in the image: {path[:200]!r} contains a NUL character")
    parts = [p for p in path.split("/") if p not in ("", ".")]  # str.split: linear, whatever the depth
    if ".." in parts or not parts:
        raise UsageError(f"invalid path in the image: {path[:200]!r}")
    clean = "/" + "/".join(parts)
    if len(clean.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise UsageError(f"path in the image {shown(clean)} is longer than {MAX_PATH} bytes (Linux's PATH_MAX)")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME for p in parts):
        raise UsageError(f"path in the image {shown(clean)} has a name longer than {MAX_NAME} bytes (NAME_MAX)")
    return clean


def shown(text: str | os.PathLike[str], limit: int = 160, *, quoted: bool = False) -> str:
    """A path or name as one line of a message shows it: its start and end around ``…`` when it
    is longer than ``limit`` characters, quoted with escapes (``repr``) when it holds a
    character that is not printable (a newline, a terminal's escape), or always if ``quoted``."""
    value = os.fspath(text)
    if len(value) > limit:
        value = value[: limit // 2] + "…" + value[-(limit // 2) :]
    return repr(value) if quoted or not value.isprintable() else value


def modes_notice() -> str | None:
    """What a build says once about the modes it gives host files: :data:`NO_POSIX_MODES` on a
    host without POSIX modes, else nothing."""
    return None if files.POSIX_MODES else NO_POSIX_MODES


def image_path(dest: str, relative: PurePath, name: str) -> str:
    """The in-image path of ``name`` in the host folder ``relative`` (a path relative to a tree
    copied to ``dest``, as ``os.walk`` finds it): joined from the host path's parts, so that a
    Windows host's ``\\`` never reaches the image. (Joined as strings: parsing the whole path
    again for each entry of a deep tree would cost its depth in Python steps each time.)"""
    return "/".join([dest.rstrip("/"), *relative.parts, name])


def link_target(path: Path) -> str:
    """The target of the host symlink ``path`` as the image's link holds it: with ``/`` for
    the host's separator (a Windows link to ``..\\lib`` points to ``../lib``)."""
    target = os.readlink(path)
    return target if os.sep == "/" else target.replace(os.sep, "/")


def host_mode(path: Path, st: os.stat_result) -> int:
    """The permission bits the host file or directory ``path`` (whose ``stat`` is ``st``) gets in
    the image: its own where the host has POSIX modes (:data:`zeroimage.files.POSIX_MODES`);
    elsewhere (Windows, whose modes say only "read-only or not") what it is — a directory or a
    program (ELF or ``#!``) 0755, any other file 0644 — and the build says so
    (:data:`NO_POSIX_MODES`)."""
    if files.POSIX_MODES:
        return stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return 0o755
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, path)}") from None
    return 0o755 if runs_as_program(head) else 0o644


def file_entry(source: Path, dest: str, uid: int = 0, gid: int = 0) -> Entry:
    """An entry for a regular file on the host (symlinks followed), with its mode
    (:func:`host_mode`)."""
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
        mode=host_mode(source, st),
        source=source,
        size=st.st_size,
        uid=uid,
        gid=gid,
    )


def sort_key(entry: Entry) -> tuple[str, ...]:
    """Parents before children, siblings by name: the order entries take in a layer."""
    return tuple(p for p in entry.path.split("/") if p not in ("", "."))  # not pathlib: see image_path
