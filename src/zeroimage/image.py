"""Images as graphs of content-addressed documents with lazy blobs, and what reads and writes them.

A :class:`Source` gives a root descriptor, documents (manifests, indexes, configs: small, kept in
memory, always verified) and blobs (layers: opened lazily, streamed, verified while read).
A :class:`Sink` takes an :class:`ImageGraph`. Neither prints; progress goes to a Reporter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from zeroimage.errors import InputError, PlatformError
from zeroimage.files import Readable
from zeroimage.oci import Descriptor, ImageConfig, Index, Manifest, Platform, parse_document
from zeroimage.oci import mediatypes as mt
from zeroimage.platform import select_platform
from zeroimage.progress import Reporter

#: Indexes nested deeper than this are refused (a cycle or an absurd document).
MAX_INDEX_DEPTH = 8


@dataclass(frozen=True)
class MountSource:
    """A repository of a registry that holds a blob: a push to another repository of the same
    registry can mount it from there instead of uploading it."""

    registry: str
    repository: str


@dataclass(frozen=True)
class Blob:
    """A layer: its descriptor and how to read it.

    ``open`` returns a stream of exactly the blob's bytes that raises DigestError if they do not
    match. ``path`` is set only for blobs zeroimage made itself (its own store), whose bytes may
    be copied without re-hashing. ``origin`` names the registry repository it can be mounted from.
    """

    descriptor: Descriptor
    open: Callable[[], Readable]
    path: Path | None = None
    origin: MountSource | None = None


@dataclass
class ImageGraph:
    """A complete image ready for a sink: a root document, every document, every layer blob,
    and which of the layers the build made (``new``, in the order it made them: archives put
    them first, where they were streamed while compressed)."""

    root: Descriptor
    documents: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, Blob] = field(default_factory=dict)
    new: tuple[str, ...] = ()

    def manifests(self) -> Iterator[tuple[Descriptor, Manifest]]:
        """Every image manifest under the root, depth first, in document order."""
        yield from self._walk(self.root)

    def _walk(self, desc: Descriptor) -> Iterator[tuple[Descriptor, Manifest]]:
        doc = parse_document(self.documents[desc.digest], f"document {desc.digest}", desc.media_type)
        if isinstance(doc, Manifest):
            yield desc, doc
            return
        for child in doc.manifests:
            yield from self._walk(child)

    def children_first(self) -> list[Descriptor]:
        """Every descriptor of the graph in an order where each comes after all it names
        (blobs and configs, then manifests, then indexes): the order a registry needs."""
        seen: set[str] = set()
        order: list[Descriptor] = []

        def visit(desc: Descriptor) -> None:
            if desc.digest in seen:
                return
            seen.add(desc.digest)
            data = self.documents.get(desc.digest)
            if data is not None and (desc.media_type in mt.INDEXES or desc.media_type in mt.MANIFESTS):
                doc = parse_document(data, f"document {desc.digest}", desc.media_type)
                if isinstance(doc, Index):
                    for child in doc.manifests:
                        visit(child)
                else:
                    visit(doc.config)
                    for layer in doc.layers:
                        visit(layer)
            order.append(desc)

        visit(self.root)
        return order


class Source(Protocol):
    """Somewhere an image can be read from."""

    description: str

    def root(self) -> Descriptor:
        """The descriptor of the image's top document (an index or a manifest)."""
        ...

    def document(self, desc: Descriptor) -> bytes:
        """A manifest, index or config, size-bounded and verified against ``desc``."""
        ...

    def blob(self, desc: Descriptor) -> Blob: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WriteResult:
    """What a sink wrote: a human/script reference and the digest of the top document; for a
    registry, also how many blobs were uploaded, mounted, or found there already."""

    reference: str
    digest: str
    blobs: dict[str, int] | None = None


class LayerTap(Protocol):
    """Takes a new layer while it is made (a registry uploads it as it is compressed, an archive
    file writes it in). ``start`` gets a reader that follows the layer's bytes as they are
    written (its ``read`` waits for more, and raises if the layer is abandoned); a tap reads it
    steadily or closes it, since a reader through memory holds the compressor back. ``finish``
    tells the digest, ``abort`` that there will be none. Neither waits: the sink's own write
    does, and still checks that every blob is there, so a tap is an optimisation only."""

    def start(self, layer: Readable) -> None: ...

    def finish(self, descriptor: Descriptor) -> None: ...

    def abort(self) -> None: ...

    def cached(self, descriptor: Descriptor, path: Path) -> None:
        """Instead of the three above: the layer was in the cache, its bytes at ``path``."""
        ...


class Sink(Protocol):
    """Somewhere an image can be written to."""

    description: str

    def write(self, graph: ImageGraph, reporter: Reporter) -> WriteResult: ...


@dataclass(frozen=True)
class Candidate:
    """One platform-specific manifest reachable from a source's root."""

    platform: Platform | None
    descriptor: Descriptor


@dataclass(frozen=True)
class BaseImage:
    """One platform of a base image, resolved and verified."""

    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig
    config_descriptor: Descriptor
    layers: tuple[Blob, ...]
    platform: Platform


def candidates(source: Source, root: Descriptor | None = None) -> list[Candidate]:
    """Every manifest under ``root`` (nested indexes followed, bounded, cycles refused).

    Each index is read once: one naming another many times over, level after level, would
    otherwise cost its fan-out to the power of its depth."""
    found: list[Candidate] = []
    expanded: set[str] = set()

    def visit(desc: Descriptor, depth: int, path: tuple[str, ...]) -> None:
        if desc.digest in path:
            raise InputError(f"{source.description}: index {desc.digest} refers to itself (a cycle)")
        if depth > MAX_INDEX_DEPTH:
            raise InputError(f"{source.description}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        if desc.media_type in mt.MANIFESTS:
            found.append(Candidate(desc.platform, desc))
            return
        if desc.media_type and desc.media_type not in mt.INDEXES:
            return  # an artifact or something else that is not an image: skip it
        if desc.digest in expanded:
            return  # an index named before: its manifests are found already
        doc = parse_document(source.document(desc), f"{source.description} {desc.digest}", desc.media_type)
        if isinstance(doc, Manifest):
            found.append(Candidate(desc.platform, desc.with_changes(media_type=doc.media_type)))
            return
        expanded.add(desc.digest)
        for child in doc.manifests:
            visit(child, depth + 1, (*path, desc.digest))

    visit(root or source.root(), 0, ())
    return found


def load_base(source: Source, want: Platform) -> BaseImage:
    """Resolve the member of ``source`` that serves platform ``want`` (containerd's matching)."""
    found = candidates(source)
    if len(found) == 1 and found[0].platform is None:
        chosen = found[0]
    else:
        # Attestations and other non-runnable entries carry "unknown/unknown" and never match.
        index = select_platform(want, [c.platform for c in found])
        if index is None:
            have = sorted({str(c.platform) for c in found if c.platform and c.platform.os != "unknown"})
            raise PlatformError(
                f"{source.description} has no image for platform {want}; it has: {', '.join(have) or 'none'}"
            )
        chosen = found[index]
    raw = source.document(chosen.descriptor)
    manifest = parse_document(raw, f"{source.description} manifest {chosen.descriptor.digest}")
    if not isinstance(manifest, Manifest):
        raise InputError(f"{source.description}: {chosen.descriptor.digest} is not an image manifest")
    config_raw = source.document(manifest.config)
    config = ImageConfig.from_bytes(config_raw, f"{source.description} config {manifest.config.digest}")
    platform = chosen.platform or config.platform
    if chosen.platform is None:
        from zeroimage.platform import match_rank

        if match_rank(want, platform) is None:
            raise PlatformError(f"{source.description} is an image for {platform}, not for {want}")
    if len(manifest.layers) != len(config.diff_ids):
        raise InputError(
            f"{source.description}: manifest has {len(manifest.layers)} layers but its config "
            f"lists {len(config.diff_ids)} diff_ids"
        )
    return BaseImage(
        descriptor=chosen.descriptor.with_changes(media_type=manifest.media_type),
        manifest=manifest,
        config=config,
        config_descriptor=manifest.config,
        layers=tuple(source.blob(layer) for layer in manifest.layers),
        platform=platform,
    )
