"""Writing image archives (OCI and docker-archive) as deterministic tar streams.

Entries get fixed owners, no user or group names and one mtime. Blobs that zeroimage built
itself are copied in the kernel (``copy_file_range``/``sendfile``); all others are streamed
through their verifying readers, so unverified bytes never complete an archive.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from zeroimage.files import copy_stream
from zeroimage.image import Blob
from zeroimage.progress import Reporter

#: How much one copy_file_range/sendfile call moves (then progress is told).
_SLICE = 64 << 20


class TarWriter:
    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self.out = out
        self.mtime = mtime

    def _header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size if kind == tarfile.REGTYPE else 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = self.mtime
        info.uname = info.gname = ""
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        self.out.write(b"\0" * (-size % tarfile.BLOCKSIZE))

    def add_dir(self, name: str) -> None:
        self._header(name, 0, tarfile.DIRTYPE)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self.out.write(data)
        self._pad(len(data))

    def add_blob(self, name: str, blob: Blob, reporter: Reporter, label: str) -> None:
        size = blob.descriptor.size
        self._header(name, size)
        with reporter.task(label, size) as task:
            if blob.path is not None:
                copy_file(blob.path, self.out, size, task.advance)
            else:
                stream = blob.open()
                try:
                    copied = copy_stream(stream, self.out, task.advance)
                finally:
                    stream.close()
                assert copied == size
        self._pad(size)

    def close(self) -> None:
        self.out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


def copy_file(path: Path, out: BinaryIO, size: int, progress: Callable[[int], None] | None = None) -> None:
    """Append ``size`` bytes of ``path`` to ``out`` inside the kernel where it can, a slice at a
    time so that ``progress`` hears of a big layer as it goes."""
    out.flush()
    dst = out.fileno()
    with open(path, "rb", buffering=0) as src:
        if os.fstat(src.fileno()).st_size != size:
            raise OSError(errno.EIO, f"{path} changed size")
        left = size
        use_range = True
        while left:
            try:
                if use_range:
                    n = os.copy_file_range(src.fileno(), dst, min(left, _SLICE))
                else:
                    n = os.sendfile(dst, src.fileno(), None, min(left, _SLICE))
            except OSError as exc:
                if use_range and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    use_range = False
                    continue
                raise
            if n == 0:
                raise OSError(errno.EIO, f"{path} ended early")
            left -= n
            if progress is not None:
                progress(n)
