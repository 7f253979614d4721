"""Writing image archives (OCI and docker-archive) as deterministic tar streams.

Entries get fixed owners, no user or group names and one mtime. Every blob is streamed through
its verifying reader — the store's own layers too, hashed in the pass that copies them — so
unverified bytes never complete an archive.

Both archive formats begin the same way: a fixed head, then the layers the build made, in the
order it made them (:attr:`ImageGraph.new <zeroimage.image.ImageGraph>`), then the rest. A file
output (:class:`StagedArchive`) writes those layers while they are compressed, each behind a
header filled in once its digest is known, and hands each slice to the disk as it goes: when
compression ends, the archive is nearly complete and nearly on disk. The bytes are the same
whether a layer was streamed, copied from the cache, or written to a pipe.
"""

from __future__ import annotations

import errno
import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from zeroimage import cancel
from zeroimage.cancel import Worker
from zeroimage.errors import DigestError
from zeroimage.files import CHUNK, AtomicFile, Readable, start_writeback, undone_on_failure, write_all, write_at
from zeroimage.image import Blob, ImageGraph
from zeroimage.oci import Descriptor, split_digest
from zeroimage.progress import Reporter

#: How much is written between two requests to start writing back to disk.
_SLICE = 8 << 20


def blob_name(digest: str) -> str:
    """Where both archive formats keep a blob: ``blobs/<algorithm>/<hex>``."""
    algorithm, hex_ = split_digest(digest)
    return f"blobs/{algorithm}/{hex_}"


class TarWriter:
    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self.out = out
        self.mtime = mtime

    def header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size if kind == tarfile.REGTYPE else 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = self.mtime
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def _header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        self.out.write(self.header(name, size, kind))

    def _pad(self, size: int) -> None:
        self.out.write(padding(size))

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
            stream = blob.open()
            try:
                copied = copy_to_file(stream, self.out, task.advance)
            finally:
                stream.close()
        if copied != size:
            raise OSError(errno.EIO, f"{name}: {copied} bytes written, {size} expected")
        self._pad(size)

    def close(self) -> None:
        self.out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


def padding(size: int) -> bytes:
    """The zeros that round an entry of ``size`` bytes up to whole tar blocks."""
    return b"\0" * (-size % tarfile.BLOCKSIZE)


#: Writes an archive's fixed head: the entries before the new layers.
Head = Callable[[TarWriter], None]


def add_new_layers(tar: TarWriter, graph: ImageGraph, written: set[str], reporter: Reporter) -> None:
    """The layers the build made (in its order) not yet in the archive, copied from the cache."""
    for digest in graph.new:
        if digest not in written:
            written.add(digest)
            tar.add_blob(blob_name(digest), graph.blobs[digest], reporter, f"writing {digest[7:19]}")


def copy_to_file(
    source: Readable,
    out: BinaryIO,
    progress: Callable[[int], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> int:
    """Append ``source`` to the file ``out`` until EOF (or until ``stopped()``), handing each
    slice of :data:`_SLICE` bytes to the disk as it goes, so that the final fsync waits for the
    last slice only. A stream that is not a file (standard output) is written to plainly.
    Returns the number of bytes copied."""
    if not out.seekable():
        copied = 0
        while not stopped() and (chunk := source.read(CHUNK)):
            out.write(chunk)
            copied += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return copied
    out.flush()
    fd = out.fileno()
    main = threading.current_thread() is threading.main_thread()
    start = flushed = out.seek(0, os.SEEK_END)
    end = start
    while not stopped() and (chunk := source.read(CHUNK)):
        if main:
            cancel.check()  # an interrupt left pending is honoured here, not after the whole layer
        write_all(fd, chunk)
        end += len(chunk)
        if progress is not None:
            progress(len(chunk))
        if end - flushed >= _SLICE:
            start_writeback(fd, flushed, end - flushed)
            flushed = end
    start_writeback(fd, flushed, end - flushed)
    return end - start


class StagedArchive:
    """An archive file whose first layers are written while the build compresses them.

    Each :meth:`layer_tap` is one layer's :class:`~zeroimage.image.LayerTap`: once started, a
    thread copies the layer's bytes into the archive's temporary file (an :class:`AtomicFile`)
    behind a blank header, after the layer streamed before it, and fills the header in when
    told the digest. :meth:`output` later gives the sink a writer positioned after the layers
    it can keep — the streamed ones, if they are exactly the first of the image's new layers;
    else none, and the file starts again — and commits the file when the sink's block ends.
    :meth:`discard` (the build failed) removes it."""

    def __init__(self, path: Path, mtime: int, head: Head) -> None:
        self.path = path
        self.mtime = mtime
        self.head = head
        self._file: AtomicFile | None = None
        self._head_end = 0
        self._started: list[_ArchiveTap] = []

    def layer_tap(self) -> _ArchiveTap:
        return _ArchiveTap(self)

    def _open(self) -> AtomicFile:
        if self._file is None:
            self._file = AtomicFile(self.path)  # held before its file exists: discard() finds it
            with undone_on_failure(self.discard, self.path):
                self.head(TarWriter(self._file.open(), self.mtime))
            self._head_end = self._file.handle.tell()
        return self._file

    @contextmanager
    def output(self, graph: ImageGraph) -> Iterator[tuple[TarWriter, set[str]]]:
        """A writer after the head and the kept layers, and the digests already written."""
        for tap in self._started:
            tap.join()
        streamed = [tap.digest for tap in self._started]
        self._started = []
        with undone_on_failure(self.discard, self.path):
            file = self._open()
            if None in streamed or streamed != list(graph.new[: len(streamed)]):
                file.handle.truncate(self._head_end)  # the same bytes as if nothing had streamed
                streamed = []
            file.handle.seek(0, os.SEEK_END)
            yield TarWriter(file.handle, self.mtime), {d for d in streamed if d is not None}
        self._file = None
        file.commit()

    def discard(self) -> None:
        for tap in self._started:
            tap.abort()
            tap.join()
        self._started = []
        if self._file is not None:
            self._file.discard()
            self._file = None


class StdoutArchive:
    """An archive written to standard output (``-o -``, for ``| docker load``): in one go at the
    sink's write, head first, since a pipe cannot be rewound; nothing to commit or discard."""

    def __init__(self, mtime: int, head: Head) -> None:
        self.mtime = mtime
        self.head = head

    def layer_tap(self) -> None:
        return None

    @contextmanager
    def output(self, graph: ImageGraph) -> Iterator[tuple[TarWriter, set[str]]]:
        import sys

        tar = TarWriter(sys.stdout.buffer, self.mtime)
        self.head(tar)
        yield tar, set()
        sys.stdout.buffer.flush()

    def discard(self) -> None:
        pass


def archive_file(path: Path, mtime: int, head: Head) -> StagedArchive | StdoutArchive:
    """Where an archive sink writes: its file (atomically, layers streamed in as they are
    compressed), or standard output when the path is ``-``."""
    return StdoutArchive(mtime, head) if str(path) == "-" else StagedArchive(path, mtime, head)


_BLANK_HEADER = bytes(tarfile.BLOCKSIZE)


class _ArchiveTap:
    """One layer streamed into a :class:`StagedArchive`, after the one streamed before it."""

    def __init__(self, archive: StagedArchive) -> None:
        self.archive = archive
        self.digest: str | None = None  # once written whole, header and all
        self._previous: _ArchiveTap | None = None
        self._descriptor: Descriptor | None = None
        self._settled = threading.Event()
        self._aborted = False
        self._worker: Worker | None = None

    def start(self, layer: Readable) -> None:
        archive = self.archive
        try:
            out = archive._open().handle  # a bad output path fails now, not after compressing
        except BaseException:
            layer.close()
            raise
        self._previous = archive._started[-1] if archive._started else None
        tar = TarWriter(out, archive.mtime)
        self._worker = Worker(lambda: self._run(layer, out, tar), "archive-layer")
        archive._started.append(self)  # before it runs: the archive waits for it before closing the file
        self._worker.start()

    def finish(self, descriptor: Descriptor) -> None:
        self._descriptor = descriptor
        self._settled.set()

    def abort(self) -> None:
        self._aborted = True  # stops a copy from the cache too: nothing else would
        self._settled.set()

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        """Copy the layer from the cache, in its place in the archive (once per archive)."""
        if any(tap._descriptor == descriptor for tap in self.archive._started):
            return
        try:
            layer = open_layer()
        except DigestError:
            return  # pruned meanwhile by another run: the sink's write makes it again
        self.start(layer)
        self.finish(descriptor)

    def join(self) -> None:
        if self._worker is not None:
            self._worker.wait()

    def _run(self, layer: Readable, out: BinaryIO, tar: TarWriter) -> None:
        try:
            if self._previous is not None:
                self._previous.join()
                if self._previous.digest is None:
                    return  # the file starts again at the sink's write
            self.digest = self._copy(layer, out, tar)
        except Exception:  # noqa: BLE001 - abandoned, or the disk failed: the sink's write sees it
            self.digest = None
        finally:
            layer.close()

    def _copy(self, layer: Readable, out: BinaryIO, tar: TarWriter) -> str | None:
        start = out.seek(0, os.SEEK_END)
        write_all(out.fileno(), _BLANK_HEADER)
        size = copy_to_file(layer, out, stopped=lambda: self._aborted)
        self._settled.wait()
        desc = self._descriptor
        if desc is None or desc.size != size:
            return None
        header = tar.header(blob_name(desc.digest), size)
        if len(header) != len(_BLANK_HEADER):
            return None  # a size that needs an extended header: the sink writes this layer itself
        write_at(out.fileno(), header, start)  # this thread alone writes the file now
        out.seek(0, os.SEEK_END)
        write_all(out.fileno(), padding(size))
        return desc.digest
