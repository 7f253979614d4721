"""Deterministic layers, built in one streaming pass.

    entries → tar stream → sha256 (diff_id) → compressor → sha256 (digest) → blob store

Entries are sorted (parents before children), owned by root unless told otherwise, stamped
with one fixed mtime, and carry no user or group names; the gzip header has no name and no
time. Memory use does not depend on the size of the files: content moves in 1 MiB chunks.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, cast

from zeroimage.cancel import Worker
from zeroimage.errors import InputError, UsageError
from zeroimage.files import CHUNK, Writable, describe_os_error
from zeroimage.oci import Descriptor
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import NullReporter, Reporter

#: The mtime of every entry when SOURCE_DATE_EPOCH is not set: the Unix epoch, so that a layer's
#: digest depends on its content alone and an unchanged binary gives an unchanged layer.
DEFAULT_MTIME = 0

COMPRESSIONS = ("gzip", "zstd", "none")
DEFAULT_LEVEL = {"gzip": 1, "zstd": 3, "none": 0}
#: igzip_threaded's output depends on its block size (not on its thread count): fix it.
_GZIP_BLOCK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One member of a layer. ``path`` is absolute inside the image."""

    path: str
    kind: Literal["file", "dir", "symlink"]
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
    """Normalise an absolute in-image path; refuse relative ones and '..'."""
    if not path.startswith("/"):
        raise UsageError(f"path in the image must be absolute: {path!r}")
    parts = [p for p in PurePosixPath(path).parts[1:] if p not in ("", ".")]
    if ".." in parts or not parts:
        raise UsageError(f"invalid path in the image: {path!r}")
    return "/" + "/".join(parts)


def file_entry(source: Path, dest: str, uid: int = 0, gid: int = 0) -> Entry:
    """An entry for a regular file on the host (symlinks followed), keeping its mode bits."""
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
        mode=stat.S_IMODE(st.st_mode),
        source=source,
        size=st.st_size,
        uid=uid,
        gid=gid,
    )


def _sort_key(entry: Entry) -> tuple[str, ...]:
    return PurePosixPath(entry.path).parts


def _header(entry: Entry, mtime: int) -> bytes:
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


def write_tar(entries: Iterable[Entry], out: BinaryIO, mtime: int, progress: Reporter | None = None) -> int:
    """Write ``entries`` as a tar stream to ``out``; returns the number of bytes written."""
    written = 0
    for entry in sorted(entries, key=_sort_key):
        header = _header(entry, mtime)
        out.write(header)
        written += len(header)
        if entry.kind != "file":
            continue
        if entry.data is not None:
            out.write(entry.data)
            copied = len(entry.data)
        else:
            copied = _copy_file(entry, out)
        written += copied
        padding = -copied % tarfile.BLOCKSIZE
        out.write(b"\0" * padding)
        written += padding
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return written + 2 * tarfile.BLOCKSIZE


def _copy_file(entry: Entry, out: BinaryIO) -> int:
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


class _HashingWriter:
    """A file-like sink that hashes and counts what passes to ``out``."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


class LayerCancelled(Exception):
    """The layer was cancelled (:class:`Cancel`) before it was complete."""


class Cancel:
    """Stops a layer being made, from any thread: the tar worker checks it between chunks, and
    the hooks (:meth:`on_set`) wake whatever the layer's bytes may be waiting on — a full
    :class:`~zeroimage.feed.MemoryPipe`. Setting it twice, or hooking it late, is harmless."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_set(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
            already = self._event.is_set()
        if already:
            hook()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()


class _ProgressWriter:
    """Passes writes to ``out``, hashing them (the diff_id) and reporting progress."""

    def __init__(self, out: BinaryIO, task: object, cancel: Cancel) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.task = task
        self.cancel = cancel

    def write(self, data: bytes | memoryview) -> int:
        if self.cancel.is_set():
            raise LayerCancelled
        self.hasher.update(data)
        self.out.write(data)
        self.task.advance(len(data))  # type: ignore[attr-defined]
        return len(data)


@dataclass(frozen=True)
class LayerOptions:
    compression: str = "gzip"
    level: int | None = None
    mtime: int = DEFAULT_MTIME
    threads: int = 0  # 0: one per CPU

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"unknown compression {self.compression!r}: use one of {', '.join(COMPRESSIONS)}")
        lo, hi = {"gzip": (0, 3), "zstd": (1, 19), "none": (0, 0)}[self.compression]
        if self.level is not None and not lo <= self.level <= hi:
            raise UsageError(f"{self.compression} compression level must be from {lo} to {hi}")

    @property
    def effective_level(self) -> int:
        return DEFAULT_LEVEL[self.compression] if self.level is None else self.level

    @property
    def media_type(self) -> str:
        return {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}[self.compression]

    def cpu_threads(self) -> int:
        """Compression threads: one per CPU, plus one, since the calling thread mostly waits on
        hashing and I/O (measured: 2 cores, 200 MB: 0.57 s with 2 threads, 0.46 s with 3). The
        compressed bytes do not depend on it."""
        return self.threads or len(os.sched_getaffinity(0)) + 1


@dataclass(frozen=True)
class BuiltLayer:
    descriptor: Descriptor
    diff_id: str


def total_size(entries: Sequence[Entry]) -> int:
    return sum(e.size for e in entries if e.kind == "file")


def stream_layer(
    entries: Sequence[Entry],
    out: Writable,
    options: LayerOptions,
    reporter: Reporter | None = None,
    cancel: Cancel | None = None,
) -> BuiltLayer:
    """Write the compressed layer to ``out`` in one pass; return its descriptor and diff_id.

    The tar stream is produced in a worker thread while the calling thread waits. A signal
    (SIGINT, SIGTERM) therefore never lands inside the compressor's ``write`` — where it would
    leave the threaded gzip writer with a numbered block that never comes, and ``close`` would
    wait forever — but sets ``cancel``, which the worker checks between chunks (and whose hooks
    free an ``out`` waiting for room). Another thread may set ``cancel`` too: the layer then
    ends with :class:`LayerCancelled`."""
    reporter = reporter or NullReporter()
    sink = _HashingWriter(out)
    cancel = cancel or Cancel()
    failures: list[BaseException] = []
    with reporter.task("compressing layer", total_size(entries)) as task:
        compressor = _open_compressor(sink, options)
        tee = _ProgressWriter(compressor, task, cancel)

        def work() -> None:
            try:
                write_tar(entries, tee, options.mtime)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the calling thread
                failures.append(exc)
            finally:
                try:
                    compressor.close()
                except BaseException as exc:
                    failures.append(exc)

        worker = Worker(work, "layer")
        worker.start()
        try:
            worker.wait()
        except BaseException:
            cancel.set()
            worker.wait()
            raise
        if failures:
            raise failures[0]  # inside: a failed or cancelled layer is not reported as done
    return BuiltLayer(
        descriptor=Descriptor(
            media_type=options.media_type, digest="sha256:" + sink.hasher.hexdigest(), size=sink.size
        ),
        diff_id="sha256:" + tee.hasher.hexdigest(),
    )


def _open_compressor(sink: _HashingWriter, options: LayerOptions) -> BinaryIO:
    level = options.effective_level
    if options.compression == "gzip":
        from isal import igzip_threaded

        writer = igzip_threaded.open(  # type: ignore[no-untyped-call]
            sink, "wb", compresslevel=level, threads=options.cpu_threads(), block_size=_GZIP_BLOCK
        )
        return cast(BinaryIO, writer)
    if options.compression == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=level, threads=options.cpu_threads())
        return cast(BinaryIO, compressor.stream_writer(cast(BinaryIO, sink), closefd=False))
    return _Passthrough(sink)  # type: ignore[return-value]


class _Passthrough:
    def __init__(self, out: _HashingWriter) -> None:
        self.out = out

    def write(self, data: bytes | memoryview) -> int:
        return self.out.write(data)

    def close(self) -> None:
        pass
