"""Making the build's new layers: each once, from the cache when its inputs are unchanged, else
compressed now in one streaming pass and handed to the outputs while it is made.

    inputs' identity ── hit ──► the stored layer (taps told where its bytes are)
          │ miss
          ▼
    compress ──► feed ──► taps (a registry uploads it, an archive writes it in)
                  └────► the store's file (kept) or nothing (a push only)

The cache key is each input file's identity — device, inode, size, mtime and ctime in
nanoseconds, the same facts git's index and make trust — plus its in-image path, mode and owner,
and the layer options. ctime cannot be set from user space, so any write to the file, even one
that restores the mtime (``cp -p``, ``touch -d``), changes the key.

A layer that is *kept* is written to the store (where local outputs copy it from) and read back
by the taps as it grows; one that is not (a build that only pushes) passes through a bounded
window of memory to the upload, and only its identity is recorded: enough for the next push of an
unchanged layer to skip it when the registry has it. When a sink needs the bytes of such a layer
after all, :meth:`LayerProducer.blob` makes them again — compression is deterministic — and
checks the digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from zeroimage.cancel import Cancellation
from zeroimage.errors import InputError, OutputError
from zeroimage.files import Readable, describe_os_error, unlink_quietly
from zeroimage.image import Blob, LayerTap
from zeroimage.layers.compress import BuiltLayer, LayerOptions, stream_layer
from zeroimage.layers.entries import Entry
from zeroimage.layers.feed import GrowingFile, MemoryPipe
from zeroimage.progress import Reporter
from zeroimage.store import BlobStore

#: Bumped whenever what a layer's bytes depend on changes, so that old records no longer match.
_KEY_FORMAT = 1

Origin = Literal["made", "cache"]


@dataclass(frozen=True)
class MadeLayer:
    """A new layer of the build: its identity, its inputs, and where it came from."""

    built: BuiltLayer
    entries: tuple[Entry, ...]
    origin: Origin


class LayerProducer:
    """Makes layers for one build: one store, one set of options, the outputs' taps."""

    def __init__(
        self,
        store: BlobStore,
        options: LayerOptions,
        reporter: Reporter,
        taps: Callable[[], Sequence[LayerTap]],
        keep: bool,
    ) -> None:
        self.store = store
        self.options = options
        self.reporter = reporter
        self._taps = taps
        self.keep = keep

    def make(self, entries: Sequence[Entry], what: str, cancel: Cancellation | None = None) -> MadeLayer:
        """The layer of ``entries`` (``what`` names it in messages): from the cache when its
        inputs are unchanged, else made now, its bytes handed to the taps as they are made.
        ``cancel`` stops it from another thread (:class:`~zeroimage.layers.compress.LayerCancelled`)."""
        entries = tuple(entries)
        key = layer_key(entries, self.options)
        hit = self.store.layer_record(key, need_blob=self.keep)
        if hit is not None:
            self.reporter.info(f"{what}: unchanged (cache), layer {hit.descriptor.digest}")
            if self.keep:
                for tap in self._taps():
                    tap.cached(hit.descriptor, lambda: self.store.open(hit.descriptor))
            return MadeLayer(hit, entries, "cache")
        built = self._compress(entries, f"compressing {what}", self._taps(), cancel)
        self.store.put_layer_record(key, built)
        self.store.prune()
        return MadeLayer(built, entries, "made")

    def blob(self, layer: MadeLayer) -> Blob:
        """The layer's bytes for the sinks: its stored file, verified as it is read; or, when the
        build kept only its identity (or the stored file turned out corrupt and was removed), the
        same bytes made again into the store, their digest checked."""
        desc = layer.built.descriptor

        def opener() -> Readable:
            if not self.store.has(desc):
                again = self._compress(layer.entries, f"making layer {desc.digest[7:19]} again", (), None, keep=True)
                if again.descriptor.digest != desc.digest:
                    paths = ", ".join(str(e.source or e.path) for e in layer.entries)
                    raise InputError(f"{paths} changed during the build; try again")
            return self.store.open(desc)

        return Blob(desc, opener)

    def _compress(
        self,
        entries: Sequence[Entry],
        label: str,
        taps: Sequence[LayerTap],
        cancel: Cancellation | None,
        keep: bool | None = None,
    ) -> BuiltLayer:
        keep = self.keep if keep is None else keep
        cancel = cancel or Cancellation()
        tmp = self.store.new_file() if keep else ""
        fd = -1
        feed: GrowingFile | MemoryPipe | None = None
        try:
            fd = self.store.create(tmp) if keep else -1
            feed = GrowingFile(fd, tmp) if keep else MemoryPipe()
            cancel.on_set(feed.abandon)  # a writer waiting for room in the feed is woken
            for tap in taps:
                tap.start(feed.follow())
            built = stream_layer(entries, feed, self.options, self.reporter, cancel, label)
            feed.end()
            if keep:
                os.close(fd)
                fd = -1
                self.store.commit(tmp, built.descriptor.digest)
        except BaseException as exc:
            if feed is not None:
                feed.abandon()
            for tap in taps:
                tap.abort()
            if fd >= 0:
                os.close(fd)
            if tmp:
                unlink_quietly(tmp)
            if isinstance(exc, OSError):
                where = self.store.root
                raise OutputError(f"cannot write to the cache: {describe_os_error(exc, where)}") from None
            raise
        for tap in taps:
            tap.finish(built.descriptor)
        return built


def layer_key(entries: Sequence[Entry], options: LayerOptions) -> str:
    """The cache key of a layer: its inputs' identities and the options that shape its bytes."""
    parts: list[object] = [_KEY_FORMAT, options.compression, options.effective_level, options.mtime]
    for entry in sorted(entries, key=lambda e: e.path):
        identity: object = None
        if entry.source is not None:
            try:
                st = os.stat(entry.source)
            except OSError as exc:
                raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
            identity = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        elif entry.data is not None:
            identity = hashlib.sha256(entry.data).hexdigest()
        parts.append([entry.path, entry.kind, entry.mode, entry.uid, entry.gid, entry.target, identity])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
