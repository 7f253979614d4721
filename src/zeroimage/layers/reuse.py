"""Layers that images elsewhere already hold, found by their diff_id: how a build reuses work done
on another machine.

The images an output holds already (a registry's, under the tags a push writes to) and the
``--cache-from`` images list their layers' diff_ids in their configs. A new layer whose diff_id
(the sha256 of its uncompressed tar, cheap to compute from the program alone) is among them, in
the compression the build asks for, is used as it is: no compression, no upload. It may have
been compressed by another tool or another version of the compressor (same diff_id, other
bytes): reusing it keeps the image's digest stable across a fleet.

What an image elsewhere says is not ours until it is checked (:func:`acceptable`): a reused
layer enters our manifest as its media type, digest and size only — never annotations; one with
``urls`` is not reused —, only in the compression asked for, and only with a size that fits the
layer it stands for. Its bytes are the other writer's: a build that signs the image proves them first
(see the pipeline).

The images are asked for once, in a thread of their own, when the first layer is not in the
local cache, while that layer's diff_id is computed: a build that finds nothing (a first push)
loses little time; a build whose layers the cache knows asks nothing. An image that cannot be
read (an error other than "not found") costs the build nothing but the reuse.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from zeroimage.cancel import Cancellation, Worker
from zeroimage.errors import DigestError, NotFoundError, ZeroimageError
from zeroimage.files import CHUNK
from zeroimage.image import Blob, Source, load_base
from zeroimage.layers.compress import LayerCancelled
from zeroimage.oci import Descriptor, Platform, split_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.digest import new_hasher
from zeroimage.progress import Reporter


@dataclass(frozen=True)
class RemoteLayer:
    """A layer a registry holds, listed by an image there (``reference``)."""

    blob: Blob  # as the registry has it: its descriptor, and how to mount or read it
    reference: str


class RemoteLayers(Protocol):
    """The layers that images the build pushes to (and its --cache-from images) already hold."""

    def layers(self, platform: Platform, media_type: str, cancel: Cancellation) -> Mapping[str, RemoteLayer]:
        """By diff_id, those of ``media_type``'s compression in the images for ``platform``;
        waits for the registries' answers (asked for once), unless ``cancel`` is set
        (:class:`~zeroimage.layers.compress.LayerCancelled`)."""
        ...


#: The most that deflate (gzip) compresses: 1032 to 1 (RFC 1951's longest match per code).
_GZIP_MOST = 1032
#: zstd's RLE blocks hold 128 KiB in 4 bytes.
_ZSTD_MOST = 32768


def acceptable(desc: Descriptor, media_type: str, tar_size: int) -> Descriptor | None:
    """The descriptor a reused layer enters our manifest with — ``media_type`` (the build's own,
    OCI), its digest and its size, never its annotations — or None when it is not to be reused:
    another compression; ``urls`` (a registry stores such a layer's manifest without its blob,
    whose bytes may then be only where the urls say); a size no compressor makes of a tar of
    ``tar_size`` bytes."""
    if mt.to_oci(desc.media_type) != media_type or desc.urls:
        return None  # another compression; or bytes that may live only where its urls say
    compression = mt.compression_of(media_type)
    if compression == "none":
        sane = desc.size == tar_size
    else:
        most = _GZIP_MOST if compression == "gzip" else _ZSTD_MOST
        # Stored blocks add a few bytes per block; headers, trailers and frames a few dozen.
        sane = tar_size // most <= desc.size <= tar_size + tar_size // 64 + 65536
    return Descriptor(media_type, desc.digest, desc.size) if sane else None


def prove(layer: RemoteLayer, diff_id: str) -> None:
    """Read a reused layer whole before a signature vouches for it: its compressed bytes must
    match its digest (the blob's reader checks) and its tar stream's hash the ``diff_id`` its
    image listed. A DigestError says which is not so."""
    from zeroimage.rootfs import Undecompressible, decompressed

    desc = layer.blob.descriptor
    what = f"layer {desc.digest} of {layer.reference}"
    hasher = new_hasher(diff_id)
    stream, raw = decompressed(layer.blob)
    try:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
    except Undecompressible as exc:
        raise DigestError(f"{what} does not decompress ({exc.why}): it cannot be signed") from None
    except ZeroimageError:
        raise  # its bytes are not its digest's, or the network failed: said as it is
    except Exception as exc:  # noqa: BLE001 - whatever a decompressor raises on bytes that are no stream
        raise DigestError(f"{what} does not decompress ({str(exc)[:120]}): it cannot be signed") from None
    finally:
        raw.close()
    actual = f"{split_digest(diff_id)[0]}:{hasher.hexdigest()}"
    if actual != diff_id:
        raise DigestError(
            f"{what} holds the tar {actual}, not {diff_id} as its image says: an image holding it cannot be "
            "signed (push it again without --cache-from, or with --no-cache to make the layer here)"
        )


class ReusableLayers:
    """The layers of the images ``sources`` name, by platform and diff_id (a
    :class:`~zeroimage.layers.producer.RemoteLayers`)."""

    def __init__(self, sources: Sequence[Source], reporter: Reporter) -> None:
        self._sources = tuple(sources)
        self._reporter = reporter
        self._found: list[Source] = []
        self._by_platform: dict[tuple[str, str], dict[str, RemoteLayer]] = {}
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._answered = threading.Event()

    def _ask(self) -> None:
        try:
            for source in self._sources:
                try:
                    source.root()
                except NotFoundError:
                    continue  # a tag pushed for the first time
                except Exception as exc:  # noqa: BLE001 - reuse is an optimisation: the push says what is wrong
                    self._reporter.info(f"cannot reuse layers of {source.name}: {getattr(exc, 'message', exc)}")
                    continue
                self._found.append(source)
        finally:
            self._answered.set()

    def layers(self, platform: Platform, media_type: str, cancel: Cancellation) -> Mapping[str, RemoteLayer]:
        with self._lock:
            if self._worker is None:  # asked once, by the first layer the cache does not know
                self._worker = Worker(self._ask, "reusable-layers")
                self._worker.start()
        while not self._worker.done:  # an image that never answers must not hold a cancelled layer
            if cancel.is_set():
                raise LayerCancelled
            self._answered.wait(0.1)
        key = (str(platform), mt.to_oci(media_type))
        with self._lock:
            if key in self._by_platform:
                return self._by_platform[key]
            found: dict[str, RemoteLayer] = {}
            for source in self._found:
                try:
                    image = load_base(source, platform)
                except ZeroimageError as exc:
                    self._reporter.info(f"cannot reuse layers of {source.name} for {platform}: {exc.message}")
                    continue
                for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
                    if mt.to_oci(desc.media_type) == key[1]:
                        found.setdefault(diff_id, RemoteLayer(source.blob(desc), source.name))
            self._by_platform[key] = found
            return found

    def close(self) -> None:
        """Close the sources; a question still unanswered is left to its thread (the build is
        over: whatever it finds, nobody needs)."""
        if self._worker is None or self._worker.done:
            for source in self._sources:
                source.close()
