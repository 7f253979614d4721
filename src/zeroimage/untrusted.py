"""Reading local input that someone else may have written — tar streams (archives, base layers)
and small files (layouts, caches) — within bounds set here, never by what the input claims.

Tar: :class:`BoundedTarInfo` is the header type for :mod:`tarfile`, in seekable and stream mode
alike. Before tarfile reads an extended header (PAX, GNU long name or long link) into memory, it
checks the size the header claims against :data:`MAX_HEADER_SIZE`; it refuses runs of extended
headers (each would be held while the next is read, and tarfile reads them recursively), global
PAX headers with more records than any writer makes (tarfile copies them into every member), and
sparse members in every form (their maps can run for the whole file, and no image writer makes
them). :func:`next_member` reads one member and makes tarfile forget it, as tarfile otherwise
keeps every header it has read.

Files: :func:`open_regular` opens a file only if it is a regular file itself — not through a
symlink (``O_NOFOLLOW``), not a FIFO that would block (``O_NONBLOCK``), not a device — unless
its caller takes a symlink (a file the user names) or a pipe (a key handed over by ``<(…)``);
:func:`read_regular` reads a small one whole, within a bound.

Numbers: :func:`whole_number` reads a number a user or an environment variable wrote, bounded
before it is converted (Python refuses to convert more than 4,300 digits, as an internal error).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from pathlib import Path

from zeroimage.errors import InputError, UsageError
from zeroimage.files import O_BINARY, describe_os_error

#: The largest extended header (PAX, GNU long name or link) read; tarfile reads one whole.
MAX_HEADER_SIZE = 1 << 20
#: Extended headers in a row before a member: a PAX header, a long name and a long link make 3.
MAX_HEADER_RUN = 8
#: Records of global PAX headers, which apply to (and are copied into) every later member.
MAX_GLOBAL_RECORDS = 64

_EXTENDED = {
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
}
_RUN = "_zeroimage_header_run"  # extended headers tarfile is reading in a row, kept on the TarFile


class TarRefused(Exception):
    """Why a tar stream is refused, raised from inside tarfile's parsing; the caller turns it
    into an InputError naming the archive or layer."""


def _run_length(archive: tarfile.TarFile) -> int:
    return int(getattr(archive, _RUN, 0))


class BoundedTarInfo(tarfile.TarInfo):
    """Tar headers whose claims are checked before tarfile acts on them (see the module)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if len(archive.pax_headers) > MAX_GLOBAL_RECORDS:
            raise TarRefused(f"global PAX headers hold more than {MAX_GLOBAL_RECORDS} records")
        if self.type not in _EXTENDED:
            member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
            return member
        if self.size < 0:
            raise TarRefused("a tar header claims a negative size")
        if self.size > MAX_HEADER_SIZE:
            raise TarRefused(f"a tar header claims more than {MAX_HEADER_SIZE} bytes")
        run = _run_length(archive)
        if run >= MAX_HEADER_RUN:
            raise TarRefused(f"more than {MAX_HEADER_RUN} extended tar headers in a row")
        setattr(archive, _RUN, run + 1)
        try:
            member = super()._proc_member(archive)  # type: ignore[misc]
        finally:
            setattr(archive, _RUN, run)
        return member

    def _proc_sparse(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        raise TarRefused("sparse tar members are not supported")

    def _proc_gnusparse_00(self, next: tarfile.TarInfo, raw_headers: bytes) -> None:
        raise TarRefused("sparse tar members are not supported")

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, pax_headers: object) -> None:
        raise TarRefused("sparse tar members are not supported")

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: object, archive: tarfile.TarFile) -> None:
        raise TarRefused("sparse tar members are not supported")


def next_member(archive: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next member of an archive opened with ``tarinfo=BoundedTarInfo`` (None at its end),
    which the archive then forgets; one with a negative size (a base-256 field, or a PAX
    ``size`` record) is refused before anything seeks or reads by it."""
    info = archive.next()
    archive.members.clear()  # type: ignore[attr-defined]  # (typeshed lacks it)
    if info is not None and info.size < 0:
        raise TarRefused(f"entry {info.name[:100]!r} has a negative size")
    return info


#: Refuse a symlink as the last component, and never block on a FIFO, where the host can say so.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: Path, what: str, *, follow_symlinks: bool = False, pipes: bool = False) -> int:
    """A descriptor of ``path`` open for reading if it is a regular file itself; InputError
    otherwise (FileNotFoundError is left for callers to whom a missing file means something).

    ``follow_symlinks``: a symlink to a regular file is followed, not refused (a file the user
    names, which may be a link: Kubernetes mounts secrets as links). ``pipes``: a pipe or FIFO is
    taken too, and waited for (``--sign-key <(vault read …)``); for anyone else, a FIFO is
    refused without waiting for a writer (with ``O_NONBLOCK``, or by looking first where the host
    has none)."""
    must_look = (not follow_symlinks and not _NOFOLLOW) or (not pipes and not _NONBLOCK)
    flags = os.O_RDONLY | O_BINARY | (0 if follow_symlinks else _NOFOLLOW) | (0 if pipes else _NONBLOCK)
    try:
        if must_look:  # a host without O_NOFOLLOW or O_NONBLOCK: look first, at least
            _check_kind(os.stat(path) if follow_symlinks else os.lstat(path), what, pipes)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise InputError(f"{what} is a symlink, which zeroimage does not follow there") from None
        raise _cannot_read(what, exc, path) from None
    try:
        _check_kind(os.fstat(fd), what, pipes)
    except InputError:
        os.close(fd)
        raise
    return fd


def read_regular(
    path: Path, limit: int, what: str, *, follow_symlinks: bool = False, pipes: bool = False, too_large: str = ""
) -> bytes:
    """A small regular file read whole (see :func:`open_regular` for what is refused, and the
    options); one larger than ``limit`` is refused without being read, saying ``too_large`` (what
    such a file cannot be) after the bound. FileNotFoundError is left to the caller."""
    larger = f"{what} is larger than {limit} bytes" + (f": {too_large}" if too_large else "")
    fd = open_regular(path, what, follow_symlinks=follow_symlinks, pipes=pipes)
    with os.fdopen(fd, "rb") as handle:
        try:
            if os.fstat(fd).st_size > limit:
                raise InputError(larger)
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _cannot_read(what, exc, path) from None
    if len(data) > limit:  # it grew while being read, or came down a pipe
        raise InputError(larger)
    return data


def _check_kind(st: os.stat_result, what: str, pipes: bool) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode)):
        return
    if stat.S_ISLNK(mode):
        raise InputError(f"{what} is a symlink, which zeroimage does not follow there")
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} is a directory")
    raise InputError(f"{what} is not a regular file" + (" or a pipe" if pipes else ""))


def _cannot_read(what: str, exc: OSError, path: Path) -> InputError:
    """ "cannot read WHAT: PATH: REASON", the path left out when ``what`` already names it."""
    said = describe_os_error(exc, path)
    where = os.fspath(path)
    return InputError(f"cannot read {what}: {said.removeprefix(where + ': ') if where in what else said}")


def whole_number(text: str, what: str, most: int) -> int:
    """``text`` as a whole number from 0 to ``most`` (ASCII digits, surrounding blanks allowed);
    a UsageError naming ``what`` for anything else, however long."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(most)) or int(digits) > most:
        raise UsageError(f"{what} must be a whole number from 0 to {most}, not {digits[:40]!r}")
    return int(digits)
