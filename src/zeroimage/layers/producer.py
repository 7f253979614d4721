"""Making the build's new layers: each once, and never again when its content is known —
to this machine's cache, or to a registry the build pushes to.

    inputs' identity ── hit ──► the stored layer (taps told how to read it)
          │ miss
    inputs' content (diff_id) ── known here ──► the stored layer
          │                  └─ in a pushed image ──► that registry's blob, as it is
          ▼ unknown
    compress ──► feed ──► taps (a registry uploads it, an archive writes it in)
                  └────► the store's file (kept) or nothing (a push only)

The identity key is each input file's identity — device, inode, size, mtime and ctime in
nanoseconds, the same facts git's index and make trust — plus its in-image path, mode and owner,
and the layer options. ctime cannot be set from user space, so any write to the file, even one
that restores the mtime (``cp -p``, ``touch -d``), changes the key: the fast path, a stat. But
a file system stamps times to its own tick (a kernel tick, or a whole second), so a file written
again within the tick of its last change keeps its ctime. An identity is therefore recorded only
for files left alone for longer than a tick before they were read (:func:`layer_identity`), as git's
index treats "racily clean" entries; a program just built is found by content the next time.

Content is the fallback, for a program whose identity changed but whose bytes did not (``touch``,
a fresh checkout, ``cp``): its diff_id — the sha256 of the layer's tar stream — is computed by
reading the files once, without compressing, but only when it can pay: when the cache holds a
layer of the same shape (paths, modes, owners, sizes) or a registry the build pushes to lists
layers of this compression. A first build pays nothing.

A layer that is *kept* is written to the store (where local outputs copy it from) and read back
by the taps as it grows; one that is not (a build that only pushes) passes through a bounded
window of memory to the upload, and only its identity is recorded: enough for the next push of an
unchanged layer to skip it when the registry has it. When a sink needs the bytes of such a layer
after all, :meth:`LayerProducer.blob` makes them again — compression is deterministic — and
checks the digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from zeroimage.cancel import Cancellation, Worker
from zeroimage.errors import InputError, OutputError
from zeroimage.files import O_BINARY, Readable, describe_os_error, read_at, unlink_quietly
from zeroimage.image import Blob, BuiltLayer, LayerTap
from zeroimage.layers.compress import LayerOptions, diff_id_of, stream_layer
from zeroimage.layers.entries import Entry
from zeroimage.layers.feed import GrowingFile, MemoryPipe
from zeroimage.layers.reuse import RemoteLayers, acceptable
from zeroimage.layers.tar import tar_size
from zeroimage.oci import Platform
from zeroimage.progress import Reporter
from zeroimage.store import BlobStore

#: Bumped whenever what a layer's bytes depend on changes, so that old records no longer match.
_KEY_FORMAT = 1

Origin = Literal["made", "cache", "registry"]


@dataclass(frozen=True)
class MadeLayer:
    """A new layer of the build: its identity, its inputs, where it came from, and — reused from
    a registry — the blob there and the image (``reused_from``) that lists it."""

    built: BuiltLayer
    entries: tuple[Entry, ...]
    origin: Origin
    remote: Blob | None = None
    reused_from: str = ""


class LayerProducer:
    """Makes layers for one build: one store, one set of options, the outputs' taps."""

    def __init__(
        self,
        store: BlobStore,
        options: LayerOptions,
        reporter: Reporter,
        taps: Callable[[], Sequence[LayerTap]],
        keep: bool,
        remote: RemoteLayers | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.reporter = reporter
        self._taps = taps
        self.keep = keep
        self.remote = remote

    def make(
        self,
        entries: Sequence[Entry],
        what: str,
        cancel: Cancellation | None = None,
        platform: Platform | None = None,
    ) -> MadeLayer:
        """The layer of ``entries`` (``what`` names it in messages, ``platform`` says which images
        of a registry may hold it): from the cache or a registry when its inputs or its content
        are known, else made now, its bytes handed to the taps as they are made. ``cancel`` stops
        it from another thread (:class:`~zeroimage.layers.compress.LayerCancelled`)."""
        entries = tuple(entries)
        key, settled = layer_identity(entries, self.options)
        hit = self.store.layer_record(key, need_blob=self.keep, media_type=self.options.media_type) if settled else None
        if hit is not None:
            self.reporter.info(f"{what}: unchanged (cache), layer {hit.descriptor.digest}")
            return self._cached(hit, entries)
        shape = shape_key(entries, self.options)
        known = self._known(entries, shape, platform, cancel)
        if isinstance(known, MadeLayer):
            if known.origin == "registry":
                # Not recorded: its bytes are another compressor's, which this one cannot make
                # again should a later push need them where the registry's blob is not.
                self.reporter.info(f"{what}: unchanged, layer {known.built.descriptor.digest} from {known.reused_from}")
            else:
                if settled:
                    self.store.put_layer_record(key, known.built)
                self.reporter.info(f"{what}: same content as before (cache), layer {known.built.descriptor.digest}")
            return known
        built = self._compress(entries, f"compressing {what}", self._taps(), cancel)
        if settled:
            self.store.put_layer_record(key, built)
        self.store.put_layer_record(shape, built, kind="shapes")
        self.store.put_layer_record(content_key(built.diff_id, self.options), built, kind="contents")
        self.store.prune()
        return MadeLayer(built, entries, "made")

    def _cached(self, hit: BuiltLayer, entries: tuple[Entry, ...], told: BuiltLayer | None = None) -> MadeLayer:
        """A layer from the store, the taps told (unless they were, of this very layer)."""
        if self.keep and hit != told:
            for tap in self._taps():
                tap.cached(hit.descriptor, lambda: self.store.open(hit.descriptor))
        return MadeLayer(hit, entries, "cache")

    def _known(
        self, entries: tuple[Entry, ...], shape: str, platform: Platform | None, cancel: Cancellation | None
    ) -> MadeLayer | str | None:
        """The layer of these entries' content if the cache or a registry has it; else their
        diff_id if it had to be computed (None if nothing could pay for it). The diff_id is
        computed while the registries answer, and dropped if nothing can match it.

        A cached layer of the same shape — whose files' sizes and sampled content match — is
        almost surely this one: when outputs need its bytes, they start copying it at once,
        beside the hashing that confirms it (an output told of a wrong one starts again)."""
        media_type = self.options.media_type
        candidate = self.store.layer_record(shape, need_blob=False, kind="shapes", media_type=media_type)
        if candidate is None and (self.remote is None or platform is None):
            return None
        cancel = cancel or Cancellation()
        hashing = _Hashing(entries, self.options.mtime, cancel)
        told = None
        try:
            if candidate is not None and self.keep and self.store.has(candidate.descriptor):
                told = self._cached(candidate, entries).built
            remote = self.remote.layers(platform, self.options.media_type, cancel) if self.remote and platform else {}
            if candidate is None and not remote:
                return None
            diff_id = hashing.result()
        finally:
            hashing.stop()
        if candidate is not None:
            found = candidate if candidate.diff_id == diff_id else None
            if found is None:
                key = content_key(diff_id, self.options)
                found = self.store.layer_record(key, need_blob=False, kind="contents", media_type=media_type)
            if found is not None and found.diff_id == diff_id and (not self.keep or self.store.has(found.descriptor)):
                if self.keep:
                    self.store.touch(found.descriptor.digest)
                return self._cached(found, entries, told)
        layer = remote.get(diff_id)
        if layer is not None:
            desc = acceptable(layer.blob.descriptor, self.options.media_type, tar_size(entries, self.options.mtime))
            if desc is not None:
                blob = replace(layer.blob, descriptor=desc)
                return MadeLayer(BuiltLayer(desc, diff_id), entries, "registry", blob, layer.reference)
        return diff_id

    def blob(self, layer: MadeLayer) -> Blob:
        """The layer's bytes for the sinks: its stored file, verified as it is read; or, when the
        build kept only its identity (or the stored file turned out corrupt and was removed), the
        same bytes made again into the store, their digest checked."""
        if layer.remote is not None:
            return layer.remote
        desc = layer.built.descriptor

        def opener() -> Readable:
            if not self.store.has(desc):
                if desc.digest in self.store.corrupt:
                    self.store.corrupt.discard(desc.digest)  # said once
                    self.reporter.warn(
                        f"the cached layer {desc.digest} no longer matched its digest: "
                        "it was removed from the cache, and is made again"
                    )
                again = self._compress(layer.entries, f"making layer {desc.digest[7:19]} again", (), None, keep=True)
                if again.descriptor.digest != desc.digest:
                    self._forget(layer)
                    paths = ", ".join(str(e.source or e.path) for e in layer.entries)
                    raise InputError(f"{paths} changed during the build; try again")
            return self.store.open(desc)

        return Blob(desc, opener)

    def _forget(self, layer: MadeLayer) -> None:
        """Remove the records that name ``layer``, whose bytes could not be made again: its files
        changed, or the compressor now makes other bytes (a new ISA-L), or the record was wrong.
        The next build makes the layer anew instead of failing on the same record again."""
        self.store.forget("contents", content_key(layer.built.diff_id, self.options))
        with contextlib.suppress(InputError):  # a file gone: records of its old identity no longer match
            self.store.forget("layers", layer_key(layer.entries, self.options))
            self.store.forget("shapes", shape_key(layer.entries, self.options))

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
    return _key(entries, options, identity=True)[0]


#: How long a file must have been left alone for its identity to stand for its content: longer
#: than a kernel tick (a few milliseconds) where times have nanoseconds, longer than a file
#: system's whole-second (FAT: two-second) stamps where they do not.
SETTLE_NS, SETTLE_COARSE_NS = 100_000_000, 3_000_000_000


def layer_identity(entries: Sequence[Entry], options: LayerOptions) -> tuple[str, bool]:
    """The layer's cache key (:func:`layer_key`) and whether it may be recorded: whether every
    file was last changed a tick or more before now. A file changed again within the tick of
    its last change keeps its ctime, and so its key: a key recorded for its earlier bytes would
    stand for bytes it no longer has. A key taken once its files have settled cannot: any later
    change is stamped at least a tick later."""
    now = time.time_ns()
    key, newest, coarse = _key(entries, options, identity=True)
    return key, newest + (SETTLE_COARSE_NS if coarse else SETTLE_NS) <= now


def shape_key(entries: Sequence[Entry], options: LayerOptions) -> str:
    """What a layer's inputs look like, their files' content but sampled: paths, modes, owners,
    sizes and a few blocks of each file. A layer of the same shape in the cache is what makes
    reading the content worth it: a changed program of the same size rarely has one."""
    return _key(entries, options, identity=False)[0]


def content_key(diff_id: str, options: LayerOptions) -> str:
    """The key of a layer by content: its diff_id and the options that shape its bytes."""
    parts = [_KEY_FORMAT, options.compression, options.effective_level, diff_id]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _key(entries: Sequence[Entry], options: LayerOptions, identity: bool) -> tuple[str, int, bool]:
    """The key, with the newest change time of the files (ctime, or mtime where that is later:
    on Windows ctime is when the file was made) and whether their times look whole-second."""
    parts: list[object] = [_KEY_FORMAT, options.compression, options.effective_level, options.mtime, identity]
    newest, coarse = 0, False
    for entry in sorted(entries, key=lambda e: e.path):
        facts: object = None
        if entry.source is not None:
            try:
                st = os.stat(entry.source)
                facts = (
                    [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
                    if identity
                    else [st.st_size, _sample(entry.source, st.st_size)]
                )
            except OSError as exc:
                raise InputError(f"cannot read {describe_os_error(exc, entry.source)}") from None
            newest = max(newest, st.st_ctime_ns, st.st_mtime_ns)
            coarse = coarse or (st.st_ctime_ns % 1_000_000_000 == 0 and st.st_mtime_ns % 1_000_000_000 == 0)
        elif entry.data is not None:
            facts = hashlib.sha256(entry.data).hexdigest()
        parts.append([entry.path, entry.kind, entry.mode, entry.uid, entry.gid, entry.target, facts])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest(), newest, coarse


#: The blocks of a file a shape samples: a changed program differs in one of them, nearly always
#: (a build ID, a version string, any code that moved), so that reading it whole is rarely wasted.
_SAMPLES, _SAMPLE_SIZE = 16, 4096


def _sample(path: Path, size: int) -> str:
    """A digest of ``_SAMPLES`` blocks spread over the file, the first and the last among them."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | O_BINARY)
    try:
        last = max(size - _SAMPLE_SIZE, 0)
        for offset in sorted({last * i // (_SAMPLES - 1) for i in range(_SAMPLES)}):
            hasher.update(read_at(fd, _SAMPLE_SIZE, offset))
    finally:
        os.close(fd)
    return hasher.hexdigest()


class _Hashing:
    """A layer's diff_id computed in a thread of its own, so that the registries' answers and
    the files' reading overlap; :meth:`stop` abandons it when nothing can match it."""

    def __init__(self, entries: Sequence[Entry], mtime: int, cancel: Cancellation | None) -> None:
        self._cancel = Cancellation()
        if cancel is not None:
            cancel.on_set(self._cancel.set)
        self._diff_id = ""
        self._failure: BaseException | None = None
        self._worker = Worker(lambda: self._run(entries, mtime), "diff-id")
        self._worker.start()

    def _run(self, entries: Sequence[Entry], mtime: int) -> None:
        try:
            self._diff_id = diff_id_of(entries, mtime, self._cancel)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by result()
            self._failure = exc

    def result(self) -> str:
        self._worker.wait()
        if self._failure is not None:
            raise self._failure
        return self._diff_id

    def stop(self) -> None:
        self._cancel.set()
        self._worker.wait()
