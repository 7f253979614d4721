"""Random access to the files of an image layout, in a directory or inside a tar archive.

A tar is indexed once (headers only, data skipped by seeking), so a multi-gigabyte archive
costs a few kilobytes of memory and reads. Hostile archives are refused: names that are
absolute or climb with ``..``, links or devices where files should be, duplicate entries,
members whose data would run past the end of the file, archives cut short (no end-of-archive
block), and the headers that :class:`~zeroimage.untrusted.BoundedTarInfo` refuses (too large,
sparse members). Files of a layout directory are read only if they are regular files inside it.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from zeroimage.errors import InputError
from zeroimage.files import RangeReader, describe_os_error
from zeroimage.untrusted import BoundedTarInfo, TarRefused, next_member, open_regular, read_regular

#: Entries an archive may hold before it is refused as absurd.
MAX_ENTRIES = 100_000


def clean_member_name(name: str, archive: str) -> str:
    """Normalise an archive member name (``./a/b`` → ``a/b``), refusing unsafe ones."""
    if name.startswith("/") or "\\" in name:
        raise InputError(f"{archive}: unsafe entry name {name[:100]!r} (absolute path)")
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    if ".." in parts:
        raise InputError(f"{archive}: unsafe entry name {name[:100]!r} (contains '..')")
    return "/".join(parts)


class Files(Protocol):
    """Read access to named files of a layout."""

    description: str

    def size(self, name: str) -> int | None: ...

    def open(self, name: str) -> RangeReader: ...

    def read_small(self, name: str, limit: int) -> bytes: ...


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int
    is_file: bool
    kind: str


class TarFiles:
    """The regular files of a tar archive, indexed by normalised name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self._members: dict[str, _Member] = {}
        self._index()

    def _index(self) -> None:
        where = self.description
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise InputError(f"cannot read archive {describe_os_error(exc, self.path)}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{where} is a directory, not an archive (use oci:{where} for a layout directory)")
        if not stat.S_ISREG(st.st_mode):  # a FIFO would hold the build until someone writes to it
            raise InputError(
                f"{where} is neither a file nor a directory (a pipe, socket or device): it cannot hold an image"
            )
        try:
            with (
                open(self.path, "rb") as handle,
                tarfile.open(fileobj=handle, mode="r:", tarinfo=BoundedTarInfo) as archive,
            ):
                count = 0
                while (info := next_member(archive)) is not None:
                    count += 1
                    if count > MAX_ENTRIES:
                        raise InputError(f"{where}: more than {MAX_ENTRIES} entries")
                    self._add(info, st.st_size)
                # tarfile stops quietly at a cut or garbage header; a whole archive ends with a zero block
                end = archive.offset
                handle.seek(end)
                if count and handle.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                    raise InputError(
                        f"{where} is truncated or corrupt: no valid tar header or end-of-archive block at offset {end}"
                    )
        except InputError:
            raise
        except TarRefused as exc:
            raise InputError(f"{where}: {exc}") from None
        except OSError as exc:
            raise InputError(f"cannot read archive {describe_os_error(exc, self.path)}") from None
        except (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError, IndexError) as exc:
            raise InputError(f"{where} is not a valid tar archive: {str(exc)[:120] or 'truncated'}") from None
        if not self._members:
            raise InputError(f"{where} is not a valid tar archive: no entries")

    def _add(self, info: tarfile.TarInfo, file_size: int) -> None:
        where = self.description
        name = clean_member_name(info.name, where)
        if not name:
            return
        if info.isdir():
            if name in self._members and self._members[name].kind != "dir":
                raise InputError(f"{where}: duplicate entry {name!r}")
            self._members[name] = _Member(0, 0, False, "dir")
            return
        if name in self._members:
            raise InputError(f"{where}: duplicate entry {name!r}")
        if info.isreg():
            if info.offset_data + info.size > file_size:
                raise InputError(f"{where} is truncated: entry {name!r} runs past the end of the file")
            self._members[name] = _Member(info.offset_data, info.size, True, "file")
        else:
            kind = "symlink" if info.issym() else "hard link" if info.islnk() else "special file"
            self._members[name] = _Member(0, 0, False, kind)

    def _member(self, name: str) -> _Member | None:
        member = self._members.get(name)
        if member is not None and not member.is_file:
            raise InputError(f"{self.description}: {name!r} is a {member.kind}, not a regular file")
        return member

    def size(self, name: str) -> int | None:
        member = self._member(name)
        return None if member is None else member.size

    def open(self, name: str) -> RangeReader:
        member = self._member(name)
        if member is None:
            raise InputError(f"{self.description}: missing entry {name!r}")
        return RangeReader(self.path, member.offset, member.size)

    def read_small(self, name: str, limit: int) -> bytes:
        member = self._member(name)
        if member is None:
            raise InputError(f"{self.description}: missing entry {name!r}")
        if member.size > limit:
            raise InputError(f"{self.description}: {name!r} is larger than {limit} bytes")
        with self.open(name) as reader:
            return reader.read()

    def names(self) -> list[str]:
        return [n for n, m in self._members.items() if m.is_file]


class DirFiles:
    """The regular files below a directory; links and special files are refused."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = str(root)

    def _path(self, name: str) -> Path:
        return self.root / clean_member_name(name, self.description)

    def _stat(self, name: str) -> os.stat_result | None:
        path = self._path(name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"cannot read {describe_os_error(exc, path)}") from None
        if not stat.S_ISREG(st.st_mode):
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "directory or special file"
            raise InputError(f"{path} is a {kind}, not a regular file")
        real = os.path.realpath(path)
        if not real.startswith(os.path.realpath(self.root) + os.sep):
            raise InputError(f"{path} lies outside the layout {self.root}")
        return st

    def size(self, name: str) -> int | None:
        st = self._stat(name)
        return None if st is None else st.st_size

    def open(self, name: str) -> RangeReader:
        if self._stat(name) is None:
            raise InputError(f"{self.description}: missing file {name!r}")
        path = self._path(name)
        try:
            fd = open_regular(path, str(path))  # O_NOFOLLOW: a link put there since the check is refused
        except FileNotFoundError:
            raise InputError(f"{self.description}: missing file {name!r}") from None
        return RangeReader(fd, 0, os.fstat(fd).st_size)

    def read_small(self, name: str, limit: int) -> bytes:
        missing = InputError(f"{self.description}: missing file {name!r}")
        if self._stat(name) is None:
            raise missing
        try:
            return read_regular(self._path(name), limit, str(self._path(name)))
        except FileNotFoundError:  # gone since the check
            raise missing from None
