"""Safe local I/O: atomic output files, digest-verifying readers, bounded copies.

Every file zeroimage writes goes to a temporary name beside its target and is renamed into
place only when complete; every byte that arrives from outside passes through a
:class:`VerifyingReader` before it is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from zeroimage import cancel
from zeroimage.errors import DigestError, OutputError
from zeroimage.oci.digest import new_hasher, split_digest

CHUNK = 1 << 20

# What the host's file system calls can do. Each is read where it is used, at the moment of use,
# so that the test suite's foreign-host run (tests/support/foreign_host) can take it away and
# exercise the fallback on this Linux machine.

#: Whether the host's files carry POSIX permission bits. Windows' say only "read-only or not", so
#: a mode read there says nothing of whether a file is a program: see
#: :func:`zeroimage.layers.entries.host_mode`.
POSIX_MODES: bool = os.name == "posix"

#: Whether ``sync_file_range(2)`` may be asked for (:func:`start_writeback`): a Linux call alone.
WRITEBACK: bool = sys.platform.startswith("linux")

#: Raw descriptors opened in binary mode: without ``O_BINARY``, ``os.open`` on Windows translates
#: line ends (and stops reading at a Ctrl-Z). The flag is 0 and unneeded elsewhere.
O_BINARY: int = getattr(os, "O_BINARY", 0)


class Writable(Protocol):
    """Where a stream of bytes goes: a file, or a tee of a file and more."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...


class Readable(Protocol):
    """What every blob stream is: read(n) until b"", then close()."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def describe_os_error(exc: OSError, path: str | os.PathLike[str]) -> str:
    """One line for an OSError, naming the path (and never anything else)."""
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or directory",
        errno.EISDIR: "is a directory",
        errno.EROFS: "read-only file system",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{os.fspath(path)}: {reason}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A file that becomes ``path`` only when :meth:`commit` succeeds.

    :meth:`open` makes a hidden temporary file in the same directory (so the final rename is
    atomic); :meth:`commit` syncs it to disk and renames it over ``path``; :meth:`discard` (or
    a failed commit) removes it and leaves an existing ``path`` untouched, whenever it comes —
    the temporary name is known before the file exists, so an interrupt cannot orphan it. A
    ``path`` that exists but is not a regular file (``/dev/null``, a FIFO) is refused: the
    rename would replace it. For a file written within one block, :func:`atomic_write`."""

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o644) -> None:
        target = Path(path)
        parent = target.parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {target}: directory {parent} does not exist")
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is a directory")
        if target.exists() and not target.is_file():  # the rename would replace a device, FIFO or socket
            raise OutputError(f"cannot write {target}: it is not a regular file")
        self.target = target
        self.mode = mode
        self._tmp = ""
        self._handle: BinaryIO | None = None

    @property
    def handle(self) -> BinaryIO:
        assert self._handle is not None, "AtomicFile.open() first"
        return self._handle

    def open(self) -> BinaryIO:
        self._tmp = str(self.target.parent / f".{self.target.name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | O_BINARY, 0o600)
        except OSError as exc:
            self._tmp = ""
            raise OutputError(f"cannot write {self.target}: {describe_os_error(exc, self.target.parent)}") from None
        self._handle = os.fdopen(fd, "w+b", buffering=0)
        return self._handle

    def commit(self) -> None:
        with undone_on_failure(self.discard, self.target):
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self._tmp, self.mode & ~_umask())
            cancel.check()  # the last moment an interrupt may still stop the output
            os.replace(self._tmp, self.target)
        self._tmp = ""

    def discard(self) -> None:
        """Remove the temporary file (nothing once committed or discarded)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        if self._tmp:
            unlink_quietly(self._tmp)
            self._tmp = ""


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file that becomes ``path`` only if the block completes without an exception
    (SIGINT and SIGTERM included): an :class:`AtomicFile` committed at the block's end."""
    file = AtomicFile(path, mode)
    with undone_on_failure(file.discard, file.target):
        yield file.open()
    file.commit()


@contextmanager
def undone_on_failure(undo: Callable[[], None], target: str | os.PathLike[str]) -> Iterator[None]:
    """Run ``undo`` if the block raises anything (an interrupt too); an OSError becomes one
    OutputError line naming ``target``."""
    try:
        yield
    except OSError as exc:
        undo()
        raise OutputError(f"cannot write {describe_os_error(exc, target)}") from None
    except BaseException:
        undo()
        raise


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` at the descriptor's position (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_at(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes of ``fd`` from ``offset`` (fewer only at the end of the file).

    ``os.pread`` where the host has it, which leaves the descriptor's offset alone; elsewhere
    (Windows) a seek and a read, which move it — so a descriptor read this way must be the
    caller's alone, never a ``dup`` of another's (a dup shares the offset)."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        data: bytes = pread(fd, length, offset)
        return data
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write every byte of ``data`` at ``offset`` of ``fd``: with ``os.pwrite`` where the host
    has it (the descriptor's offset stays where it was); elsewhere (Windows) with a seek, which
    leaves the offset after ``data``: no other thread may use the descriptor meanwhile."""
    pwrite = getattr(os, "pwrite", None)
    view = memoryview(data)
    if pwrite is None:
        os.lseek(fd, offset, os.SEEK_SET)
        write_all(fd, view)
        return
    while view:
        written: int = pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` to disk now, without waiting
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``). An output written in slices this way is mostly
    on disk by the time it is complete, so its final fsync waits for the last slice only, not
    for all of it. A no-op on other hosts than Linux (:data:`WRITEBACK`), where the final fsync
    simply waits for all of it."""
    call = _sync_file_range() if WRITEBACK else None
    if call is not None and length > 0:
        call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; failure only loses the head start


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range``, looked up once (Linux only: ``CDLL(None)``, the running
    program's own symbols, is a POSIX notion, and the call is Linux's)."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    """Remove a file if it is there; a file already gone, or that cannot go, is no error."""
    with contextlib.suppress(OSError):
        os.unlink(path)


class RangeReader:
    """A read-only stream over ``size`` bytes of a file starting at ``offset``: the file at a
    path, or a descriptor the reader takes over (and closes), opened for it alone — so that
    :func:`read_at` may move its offset where the host has no pread."""

    def __init__(self, file: str | os.PathLike[str] | int, offset: int, size: int) -> None:
        self._fd = file if isinstance(file, int) else os.open(file, os.O_RDONLY | O_BINARY)
        self._pos = offset
        self._end = offset + size

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = read_at(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VerifyingReader:
    """Reads exactly ``size`` bytes from ``raw`` and checks them against ``digest``.

    Fewer bytes, more bytes, or other bytes than promised raise DigestError at the point of
    discovery, so nothing downstream can commit unverified content. Never reads more than
    ``size + 1`` bytes, whatever the source claims.
    """

    def __init__(self, raw: Readable, digest: str, size: int, what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._seen = 0
        self._hasher = new_hasher(digest)
        self._verified = False

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._seen
        if left == 0:
            self._check_end()
            return b""
        data = self._raw.read(left if n < 0 else min(n, left))
        if not data:
            raise DigestError(
                f"{self._what} is truncated: got {self._seen} of {self._size} bytes (digest not verified)"
            )
        self._hasher.update(data)
        self._seen += len(data)
        if self._seen == self._size:
            self._check_end()
        return data

    def _check_end(self) -> None:
        if self._verified:
            return
        extra = self._raw.read(1)
        if extra:
            raise DigestError(f"{self._what} is larger than its declared size of {self._size} bytes")
        actual = f"{split_digest(self._digest)[0]}:{self._hasher.hexdigest()}"
        if actual != self._digest:
            raise DigestError(f"digest mismatch for {self._what}: expected {self._digest}, got {actual}")
        self._verified = True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_stream(
    source: Readable,
    dest: BinaryIO,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy until EOF in large chunks; returns the number of bytes copied."""
    total = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return total
        dest.write(chunk)
        total += len(chunk)
        if progress is not None:
            progress(len(chunk))
