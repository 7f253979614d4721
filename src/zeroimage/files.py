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
import threading
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
    """A read-only stream over ``size`` bytes of a file starting at ``offset``."""

    def __init__(self, path: str | os.PathLike[str], offset: int, size: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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


class LayerAbandoned(Exception):
    """The file a :class:`GrowingFile` follower was reading will never be complete."""


class GrowingFile:
    """A file written by one thread and read, while it grows, by others.

    The writer's bytes go straight to the file (no buffer), so a follower — :meth:`follow` —
    can ``pread`` every byte written so far from its own descriptor; its ``read`` waits for
    more until :meth:`end` (then returns what is left, then b"") or :meth:`abandon` (then
    raises :class:`LayerAbandoned`). Nothing is held in memory: a slow follower costs disk
    pages, never the writer's pace."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = 0
        self._state = "open"  # then "ended" or "abandoned"
        self._changed = threading.Condition()

    def write(self, data: bytes | memoryview, /) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        with self._changed:
            self._size += len(data)
            self._changed.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        self._settle("ended")

    def abandon(self) -> None:
        self._settle("abandoned")

    def _settle(self, state: str) -> None:
        with self._changed:
            if self._state == "open":
                self._state = state
            self._changed.notify_all()

    def follow(self) -> Readable:
        """A reader of the whole file from its start, with a descriptor of its own."""
        return _Follower(self, os.dup(self._fd))

    def _available(self, offset: int) -> int:
        """Bytes written beyond ``offset``, once there are some or the file is ended."""
        with self._changed:
            while self._state == "open" and self._size <= offset:
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            return self._size - offset


class _Follower:
    def __init__(self, growing: GrowingFile, fd: int) -> None:
        self._growing = growing
        self._fd = fd
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        available = self._growing._available(self._pos)
        n = available if n < 0 else min(n, available)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MemoryPipe:
    """A layer's bytes handed to followers through memory, when nothing keeps the layer.

    Followers (:meth:`follow`, all made before the first write) read every chunk in order; the
    chunks all of them have read are dropped. The writer waits while the slowest follower is
    ``window`` bytes behind, so memory stays bounded (4 MiB: a push's peak RSS stays near 55 MiB, and
    a wider window measured no faster); a follower that closes is dropped, and with
    none left the writer's bytes go nowhere. :meth:`end` and :meth:`abandon` as for
    :class:`GrowingFile`; :meth:`abandon` also frees a writer that is waiting."""

    def __init__(self, window: int = 4 << 20) -> None:
        self._window = window
        self._chunks: list[bytes] = []
        self._first = 0  # the index of self._chunks[0] in the whole stream
        self._held = 0  # bytes in self._chunks
        self._followers: list[_PipeFollower] = []
        self._state = "open"
        self._changed = threading.Condition()

    def write(self, data: bytes | memoryview, /) -> int:
        chunk = bytes(data)
        with self._changed:
            while self._followers and self._held >= self._window and self._state == "open":
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            if self._followers:
                self._chunks.append(chunk)
                self._held += len(chunk)
                self._changed.notify_all()
        return len(chunk)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        self._settle("ended")

    def abandon(self) -> None:
        self._settle("abandoned")

    def _settle(self, state: str) -> None:
        with self._changed:
            if self._state == "open":
                self._state = state
            self._changed.notify_all()

    def follow(self) -> Readable:
        follower = _PipeFollower(self)
        with self._changed:
            self._followers.append(follower)
        return follower

    def _next(self, follower: _PipeFollower) -> bytes:
        """The follower's next chunk: waits for one; b"" at the end."""
        with self._changed:
            while self._state == "open" and follower.index >= self._first + len(self._chunks):
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            if follower.index >= self._first + len(self._chunks):
                return b""
            chunk = self._chunks[follower.index - self._first]
            follower.index += 1
            self._drop_read()
            return chunk

    def _leave(self, follower: _PipeFollower) -> None:
        with self._changed:
            if follower in self._followers:
                self._followers.remove(follower)
            self._drop_read()

    def _drop_read(self) -> None:
        done = min((f.index for f in self._followers), default=self._first + len(self._chunks))
        while self._first < done:
            self._held -= len(self._chunks.pop(0))
            self._first += 1
        self._changed.notify_all()


class _PipeFollower:
    def __init__(self, pipe: MemoryPipe) -> None:
        self._pipe = pipe
        self.index = 0
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        if not self._pending:
            self._pending = self._pipe._next(self)
        if n < 0 or n >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def close(self) -> None:
        self._pipe._leave(self)


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
