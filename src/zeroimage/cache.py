"""The local blob store and layer cache.

Layers that a local output needs are written here first, named by digest, and every output
copies from here: one compression serves an OCI archive, a docker-archive and a push at once. A
build that only pushes passes the layer through memory to the upload and keeps its identity
alone (writing 100 MB to disk costs a push more than it saves later).

The layer cache maps a layer's inputs to the descriptor it produced, so that rebuilding an
unchanged binary neither recompresses nor (with a registry's HEAD) uploads anything. Its key is
each input file's identity — device, inode, size, mtime and ctime in nanoseconds, the same
facts git's index and make trust — plus its in-image path, mode and owner, and the layer options.
ctime cannot be set from user space, so any write to the file, even one that restores the
mtime (``cp -p``, ``touch -d``), changes the key; re-reading a 1 GB binary to hash it would cost
more than the cache saves.

The store is bounded (``ZEROIMAGE_CACHE_SIZE`` bytes, default 2 GiB): after each write the least
recently used blobs are removed, never one used in the last ten minutes. Concurrent runs are
safe: every file appears by atomic rename, and a missing blob is a cache miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from zeroimage.errors import OutputError, ZeroimageError
from zeroimage.feed import GrowingFile, MemoryPipe
from zeroimage.files import atomic_write, describe_os_error
from zeroimage.image import LayerTap
from zeroimage.layer import BuiltLayer, Cancel, Entry, LayerOptions, stream_layer
from zeroimage.oci import Descriptor, split_digest
from zeroimage.progress import Reporter

DEFAULT_MAX_BYTES = 2 << 30
#: Layer records kept (a few hundred bytes each); beyond it, the least recently used quarter goes.
MAX_RECORDS = 4096
_KEEP_RECENT_SECONDS = 600
_FORMAT = 1


def default_cache_dir() -> Path:
    if os.environ.get("ZEROIMAGE_CACHE_DIR"):
        return Path(os.environ["ZEROIMAGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zeroimage"


class BlobStore:
    """Content-addressed files under ``root/blobs/<alg>/<hex>``, plus the layer index."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        env_max = os.environ.get("ZEROIMAGE_CACHE_SIZE", "")
        self.max_bytes = (
            max_bytes if max_bytes is not None else (int(env_max) if env_max.isdigit() else DEFAULT_MAX_BYTES)
        )
        self._blobs = root / "blobs" / "sha256"
        self._layers = root / "layers"
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._layers.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use cache directory {describe_os_error(exc, root)}") from None

    @classmethod
    @contextmanager
    def temporary(cls) -> Iterator[BlobStore]:
        """A store that lives for one build only (``--no-cache``)."""
        root = tempfile.mkdtemp(prefix="zeroimage-")
        try:
            yield cls(Path(root), max_bytes=1 << 62)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def path(self, digest: str) -> Path:
        return self._blobs / split_digest(digest)[1]

    def has(self, desc: Descriptor) -> bool:
        try:
            return self.path(desc.digest).stat().st_size == desc.size
        except OSError:
            return False

    def layer(
        self,
        entries: Sequence[Entry],
        options: LayerOptions,
        reporter: Reporter,
        taps: Sequence[LayerTap] = (),
        keep: bool = True,
        cancel: Cancel | None = None,
    ) -> tuple[BuiltLayer, bool]:
        """The layer of ``entries``: from the cache when its inputs are unchanged (True), else
        built now in one streaming pass (False), its bytes handed to ``taps`` as they are made.

        With ``keep``, the bytes are kept in the store, where outputs copy them from, and a hit
        needs them there. Without (a push only), they pass through memory to the taps and only
        the layer's identity is remembered: enough for the next push of an unchanged layer to
        skip it when the registry has it, without writing the layer to disk now. ``cancel``
        stops it from another thread (:class:`LayerCancelled`)."""
        key = layer_key(entries, options)
        hit = self.lookup(key, need_blob=keep)
        if hit is not None:
            if keep:
                for tap in taps:
                    tap.cached(hit.descriptor, self.path(hit.descriptor.digest))
            return hit, True
        fd, tmp = -1, ""
        if keep:
            try:
                fd, tmp = tempfile.mkstemp(dir=self._blobs, prefix=".new-", suffix=".tmp")
            except OSError as exc:
                raise OutputError(f"cannot write to the cache: {describe_os_error(exc, self._blobs)}") from None
        feed = GrowingFile(fd) if keep else MemoryPipe()
        cancel = cancel or Cancel()
        cancel.on_set(feed.abandon)  # a writer waiting for room in the feed is woken
        try:
            for tap in taps:
                tap.start(feed.follow())
            built = stream_layer(entries, feed, options, reporter, cancel)
            feed.end()
            if keep:
                os.close(fd)
                fd = -1
                os.replace(tmp, self.path(built.descriptor.digest))
        except BaseException as exc:
            feed.abandon()
            for tap in taps:
                tap.abort()
            if fd >= 0:
                os.close(fd)
            if tmp:
                _unlink(tmp)
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write to the cache: {describe_os_error(exc, self._blobs)}") from None
            raise
        for tap in taps:
            tap.finish(built.descriptor)
        self.remember(key, built)
        self.prune()
        return built, False

    # -- layer index -------------------------------------------------------------------------

    def lookup(self, key: str, need_blob: bool = True) -> BuiltLayer | None:
        try:
            record = json.loads((self._layers / key).read_bytes())
            desc = Descriptor.from_dict(record["descriptor"])
            diff_id = str(record["diff_id"])
        except (OSError, ValueError, KeyError, TypeError, ZeroimageError):
            return None
        if need_blob and not self.has(desc):
            return None
        now = time.time()
        try:
            os.utime(self._layers / key, (now, now))  # recently used: kept by prune()
            if need_blob:
                os.utime(self.path(desc.digest), (now, now))
        except OSError:
            return None
        return BuiltLayer(desc, diff_id)

    def remember(self, key: str, layer: BuiltLayer) -> None:
        record = json.dumps({"descriptor": layer.descriptor.to_dict(), "diff_id": layer.diff_id}).encode()
        with contextlib.suppress(OutputError), atomic_write(self._layers / key) as out:
            out.write(record)  # a record that cannot be written is only a future cache miss

    def prune(self) -> None:
        """Remove least recently used blobs until the store fits its bound, and least recently
        used layer records beyond :data:`MAX_RECORDS` (pushes write records alone)."""
        self._prune_records()
        blobs = []
        for entry in os.scandir(self._blobs):
            try:
                st = entry.stat()
            except OSError:
                continue
            if entry.name.startswith(".new-"):
                if st.st_mtime < time.time() - 86400:
                    _unlink(entry.path)  # left by a run that was killed
                continue
            blobs.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in blobs)
        cutoff = time.time() - _KEEP_RECENT_SECONDS
        for mtime, size, path in sorted(blobs):
            if total <= self.max_bytes or mtime > cutoff:
                break
            _unlink(path)
            total -= size

    def _prune_records(self) -> None:
        with os.scandir(self._layers) as entries:
            names = [entry.name for entry in entries]
        if len(names) <= MAX_RECORDS:
            return
        records = []
        for name in names:
            with contextlib.suppress(OSError):
                records.append((os.stat(self._layers / name).st_mtime, name))
        for _, name in sorted(records)[: len(records) - MAX_RECORDS * 3 // 4]:
            _unlink(str(self._layers / name))


def layer_key(entries: Sequence[Entry], options: LayerOptions) -> str:
    """The cache key of a layer: its inputs' identities and the options that shape its bytes."""
    parts: list[object] = [_FORMAT, options.compression, options.effective_level, options.mtime]
    for entry in sorted(entries, key=lambda e: e.path):
        identity: object = None
        if entry.source is not None:
            st = os.stat(entry.source)
            identity = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        elif entry.data is not None:
            identity = hashlib.sha256(entry.data).hexdigest()
        parts.append([entry.path, entry.kind, entry.mode, entry.uid, entry.gid, entry.target, identity])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
