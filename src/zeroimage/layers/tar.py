"""A layer's tar stream, deterministic: entries sorted (parents before children), one mtime, no
user or group names, PAX headers. Content moves in 1 MiB chunks whatever the files' size."""

from __future__ import annotations

import mmap
import os
import tarfile
from collections.abc import Callable, Iterable

from zeroimage.errors import InputError
from zeroimage.files import CHUNK, Writable, describe_os_error
from zeroimage.layers.entries import Entry, sort_key


def header(entry: Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(entry.tar_name)
    info.mode = entry.mode
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = ""
    info.gname = ""
    info.mtime = mtime
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_size(entries: Iterable[Entry], mtime: int) -> int:
    """The size of the tar stream :func:`write_tar` writes for ``entries``: what a layer is
    uncompressed (headers, contents, padding and the end-of-archive blocks)."""
    size = 2 * tarfile.BLOCKSIZE
    for entry in entries:
        size += len(header(entry, mtime))
        if entry.kind == "file":
            size += entry.size + -entry.size % tarfile.BLOCKSIZE
    return size


#: How a file's content reaches the stream: read in fresh chunks (for a compressor), or passed
#: as views of a memory map (for a hash, whose large updates let other threads run meanwhile).
Content = Callable[[Entry, Writable], int]


def write_tar(entries: Iterable[Entry], out: Writable, mtime: int, content: Content | None = None) -> int:
    """Write ``entries`` as a tar stream to ``out``; returns the number of bytes written."""
    content = content or _copy_file
    written = 0
    for entry in sorted(entries, key=sort_key):
        head = header(entry, mtime)
        out.write(head)
        written += len(head)
        if entry.kind != "file":
            continue
        if entry.data is not None:
            out.write(entry.data)
            copied = len(entry.data)
        else:
            copied = content(entry, out)
        written += copied
        padding = -copied % tarfile.BLOCKSIZE
        out.write(b"\0" * padding)
        written += padding
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return written + 2 * tarfile.BLOCKSIZE


def _copy_file(entry: Entry, out: Writable) -> int:
    """Copy the file's content in fresh chunks: the compressor keeps each chunk as it is (it
    would copy a view into a reused buffer)."""
    assert entry.source is not None
    copied = 0
    try:
        with open(entry.source, "rb", buffering=0) as handle:
            while copied < entry.size:
                chunk = handle.read(min(CHUNK, entry.size - copied))
                if not chunk:
                    break
                out.write(chunk)
                copied += len(chunk)
            grew = handle.read(1)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
    if copied != entry.size or grew:
        raise InputError(f"{entry.source} changed while it was being read; try again")
    return copied


#: How much of a mapped file one write passes on.
_VIEW = 64 << 20


def mapped_file(entry: Entry, out: Writable) -> int:
    """Pass the file's content on as views of a memory map: no copy into Python, and a hash
    updated with them holds the interpreter lock only between views."""
    assert entry.source is not None
    try:
        with open(entry.source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.size:
                raise InputError(f"{entry.source} changed while it was being read; try again")
            if size == 0:
                return 0
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                view = memoryview(data)
                try:
                    for offset in range(0, size, _VIEW):
                        out.write(view[offset : offset + _VIEW])
                finally:
                    view.release()
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
    return size
