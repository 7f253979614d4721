"""A layer compressed in one streaming pass:

    entries → tar stream → sha256 (diff_id) → compressor → sha256 (digest) → out

The gzip header has no name and no time; ISA-L's threaded writer gives the same bytes whatever
the number of threads (its block size is fixed). Memory does not depend on the files' size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast, get_args

from zeroimage.cancel import Cancellation, Worker
from zeroimage.errors import UsageError
from zeroimage.files import Writable
from zeroimage.image import BuiltLayer
from zeroimage.layers.entries import Entry
from zeroimage.layers.tar import hashed_file, tar_size, write_tar
from zeroimage.oci import Descriptor
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import NullReporter, Reporter, Task

#: The mtime of every entry when SOURCE_DATE_EPOCH is not set: the Unix epoch, so that a layer's
#: digest depends on its content alone and an unchanged binary gives an unchanged layer.
DEFAULT_MTIME = 0

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)
DEFAULT_LEVEL: dict[Compression, int] = {"gzip": 1, "zstd": 3, "none": 0}
_LEVELS: dict[Compression, tuple[int, int]] = {"gzip": (0, 3), "zstd": (1, 19), "none": (0, 0)}
MEDIA_TYPES: dict[Compression, str] = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}
#: igzip_threaded's output depends on its block size (not on its thread count): fix it.
_GZIP_BLOCK = 1 << 20


@dataclass(frozen=True)
class LayerOptions:
    compression: Compression = "gzip"
    level: int | None = None
    mtime: int = DEFAULT_MTIME
    threads: int = 0  # 0: one per CPU, plus one

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"unknown compression {self.compression!r}: use one of {', '.join(COMPRESSIONS)}")
        lo, hi = _LEVELS[self.compression]
        if self.level is not None and not lo <= self.level <= hi:
            raise UsageError(f"{self.compression} compression level must be from {lo} to {hi}")

    @property
    def effective_level(self) -> int:
        return DEFAULT_LEVEL[self.compression] if self.level is None else self.level

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.compression]

    def cpu_threads(self) -> int:
        """Compression threads: one per CPU this process may use, plus one, since the calling
        thread mostly waits on hashing and I/O. The compressed bytes do not depend on it."""
        return self.threads or _usable_cpus() + 1


def _usable_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1


class LayerCancelled(Exception):
    """The layer was cancelled (:class:`~zeroimage.cancel.Cancellation`) before it was complete."""


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


class _TarSink:
    """Where the tar stream goes: hashed (the diff_id), counted for progress, then compressed."""

    def __init__(self, out: BinaryIO, task: Task, cancel: Cancellation) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.task = task
        self.cancel = cancel

    def write(self, data: bytes | memoryview) -> int:
        if self.cancel.is_set():
            raise LayerCancelled
        self.hasher.update(data)
        self.out.write(data)
        self.task.advance(len(data))
        return len(data)

    def flush(self) -> None:
        pass


def stream_layer(
    entries: Sequence[Entry],
    out: Writable,
    options: LayerOptions,
    reporter: Reporter | None = None,
    cancel: Cancellation | None = None,
    label: str = "compressing layer",
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
    cancel = cancel or Cancellation()
    failures: list[BaseException] = []
    with reporter.task(label, tar_size(entries, options.mtime)) as task:
        compressor = _open_compressor(sink, options)
        tar = _TarSink(compressor, task, cancel)

        def work() -> None:
            try:
                write_tar(entries, tar, options.mtime)
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
            worker.wait(interruptible=True)
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
        diff_id="sha256:" + tar.hasher.hexdigest(),
    )


class _TarHash:
    """The tar stream's sha256 alone: a layer's diff_id, without compressing it."""

    def __init__(self, cancel: Cancellation) -> None:
        self.hasher = hashlib.sha256()
        self.cancel = cancel

    def write(self, data: bytes | memoryview) -> int:
        if self.cancel.is_set():
            raise LayerCancelled
        self.hasher.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def diff_id_of(entries: Sequence[Entry], mtime: int, cancel: Cancellation | None = None) -> str:
    """The diff_id the layer of ``entries`` has (the sha256 of its tar stream), found by reading
    the files once without compressing them: how an unchanged layer is recognised by content."""
    sink = _TarHash(cancel or Cancellation())
    write_tar(entries, sink, mtime, hashed_file)
    return "sha256:" + sink.hasher.hexdigest()


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
    return cast(BinaryIO, _Passthrough(sink))


class _Passthrough:
    def __init__(self, out: _HashingWriter) -> None:
        self.out = out

    def write(self, data: bytes | memoryview) -> int:
        return self.out.write(data)

    def close(self) -> None:
        pass
