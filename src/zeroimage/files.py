"""Safe local I/O: atomic output files, digest-verifying readers, bounded copies.

Every file zeroimage writes goes to a temporary name beside its target and is renamed into
place only when complete; every byte that arrives from outside passes through a
:class:`VerifyingReader` before it is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from zeroimage import cancel
from zeroimage.errors import DigestError, InputError, OutputError
from zeroimage.oci.digest import new_hasher, split_digest

CHUNK = 1 << 20


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


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file that becomes ``path`` only if the block completes without an exception.

    The data goes to a hidden temporary file in the same directory (so the final rename is
    atomic); on any exception, SIGINT and SIGTERM included, the temporary file is removed
    and an existing ``path`` is left untouched. A ``path`` that exists but is not a regular
    file (``/dev/null``, a FIFO) is refused: the rename would replace it.
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: directory {parent} does not exist")
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    if target.exists() and not target.is_file():  # the rename would replace a device, FIFO or socket
        raise OutputError(f"cannot write {target}: it is not a regular file")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {describe_os_error(exc, parent)}") from None
    try:
        with os.fdopen(fd, "w+b", buffering=0) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode & ~_umask())
        cancel.check()  # the last moment an interrupt may still stop the output
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"cannot write {describe_os_error(exc, target)}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class RangeReader:
    """A read-only stream over ``size`` bytes of a file starting at ``offset``; the file is a path,
    or a descriptor the reader takes over (and closes)."""

    def __init__(self, file: str | os.PathLike[str] | int, offset: int, size: int) -> None:
        self._fd = file if isinstance(file, int) else os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        self._pos = offset
        self._end = offset + size

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
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


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """Read a small file whole, refusing one larger than ``limit``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what}: {describe_os_error(exc, path)}") from None
    if len(data) > limit:
        raise InputError(f"{what} is larger than {limit} bytes")
    return data
