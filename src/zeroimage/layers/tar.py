"""A layer's tar stream, deterministic: entries sorted (parents before children), one mtime, no
user or group names, PAX headers. Content moves in 1 MiB chunks whatever the files' size."""

from __future__ import annotations

import io
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


#: How a file's content reaches the stream: read in fresh chunks (for a compressor, which keeps
#: them), or through one reused buffer (for a hash, which keeps nothing).
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


#: How much of a file one write passes on when the bytes are only hashed.
_HASHED_CHUNK = 16 << 20
#: Whether a memory map's pages can be given back as they are passed on (not on Windows).
MAP_PAGES_BACK = hasattr(mmap.mmap, "madvise")


def hashed_file(entry: Entry, out: Writable) -> int:
    """Pass the file's content on in large pieces, for a sink that only hashes what it is given
    and keeps none of it: views of a memory map, each given back to the system once passed on
    (so that memory grows by one piece alone, whatever the file's size), or, where the host
    cannot give a mapping's pages back, pieces read into one reused buffer. Large pieces let
    other threads run while each is hashed and take the interpreter lock back seldom."""
    assert entry.source is not None
    try:
        with open(entry.source, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.size:
                raise InputError(f"{entry.source} changed while it was being read; try again")
            if size and MAP_PAGES_BACK:
                _pass_mapped(handle.fileno(), size, out)
            elif size:
                _pass_buffered(handle, size, out)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
    return size


def _pass_mapped(fd: int, size: int, out: Writable) -> None:
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            for offset in range(0, size, _HASHED_CHUNK):
                out.write(view[offset : offset + _HASHED_CHUNK])
                data.madvise(mmap.MADV_DONTNEED, offset, min(_HASHED_CHUNK, size - offset))
        finally:
            view.release()


def _pass_buffered(handle: io.FileIO, size: int, out: Writable) -> None:
    buffer = memoryview(bytearray(min(_HASHED_CHUNK, size)))
    copied = 0
    try:
        while copied < size and (got := handle.readinto(buffer[: min(len(buffer), size - copied)])):
            out.write(buffer[:got])
            copied += got
    finally:
        buffer.release()
    if copied != size:
        raise InputError(f"{handle.name} changed while it was being read; try again")
