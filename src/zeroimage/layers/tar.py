"""A layer's tar stream, deterministic: entries sorted (parents before children), one mtime, no
user or group names, PAX headers. Content moves in 1 MiB chunks whatever the files' size."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable
from io import FileIO

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
    return _pass_file(entry, out, lambda handle, left: handle.read(min(CHUNK, left)))


#: How much of a file one write passes on when the bytes are only hashed.
_HASHED_CHUNK = 16 << 20


def hashed_file(entry: Entry, out: Writable) -> int:
    """Pass the file's content on through one reused buffer, for a sink that only hashes what it
    is given and keeps none of it: memory grows by one piece whatever the file's size, and large
    pieces let other threads run while each is hashed. Not a memory map, though it saves a copy:
    a mapped file cut short while it is read kills the process (SIGBUS), where a read ends early
    and is reported."""
    buffer = memoryview(bytearray(min(_HASHED_CHUNK, entry.size)))

    def read(handle: FileIO, left: int) -> memoryview:
        got = handle.readinto(buffer[:left])
        return buffer[:got]

    return _pass_file(entry, out, read)


def _pass_file(entry: Entry, out: Writable, read: Callable[[FileIO, int], bytes | memoryview]) -> int:
    """Pass the file's ``entry.size`` bytes to ``out``, each piece as ``read(handle, bytes left)``
    gives it; a file that is shorter or longer by then is refused."""
    assert entry.source is not None
    copied = 0
    try:
        with open(entry.source, "rb", buffering=0) as handle:
            while copied < entry.size and (piece := read(handle, entry.size - copied)):
                out.write(piece)
                copied += len(piece)
            grew = handle.read(1)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
    if copied != entry.size or grew:
        raise InputError(f"{entry.source} changed while it was being read; try again")
    return copied
