"""Images as graphs of content-addressed documents with lazy blobs; what reads and writes them;
and how a build assembles one — pure functions from a base, new layers and a config to a graph.

A :class:`Source` gives a root descriptor, documents (manifests, indexes, configs: small, kept in
memory, always verified) and blobs (layers: opened lazily, streamed, verified while read).
A :class:`Sink` takes an :class:`ImageGraph`. Neither prints; progress goes to a Reporter.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from zeroimage.errors import InputError, PlatformError, UsageError
from zeroimage.files import Readable
from zeroimage.oci import (
    BASE_DIGEST,
    BASE_NAME,
    CREATED,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_document,
    sha256_digest,
)
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.artifact import Artifact
from zeroimage.platform import match_rank, select_platform
from zeroimage.progress import Reporter

#: Indexes nested deeper than this are refused (a cycle or an absurd document).
MAX_INDEX_DEPTH = 8
#: The most layers a base may have. Overlay filesystems stop far sooner (Docker's overlay2
#: refuses an image deeper than 125 layers; the kernel stacks at most 500), and real images have
#: a few dozen; past this a base is refused when its manifest is read, before a layer is
#: fetched or listed (each would cost a download and a listing). A build adds at most 2.
MAX_LAYERS = 1000

#: The media types of a written image: OCI, or Docker's v2 schema 2.
ImageFormat = Literal["oci", "docker"]


@dataclass(frozen=True)
class MountSource:
    """A repository of a registry that holds a blob: a push to another repository of the same
    registry can mount it from there instead of uploading it."""

    registry: str
    repository: str


@dataclass(frozen=True)
class BuiltLayer:
    """A layer's identity: its compressed blob's descriptor and its diff_id (the sha256 of its
    uncompressed tar stream) — what a layer maker produces and the cache records."""

    descriptor: Descriptor
    diff_id: str


@dataclass(frozen=True)
class Blob:
    """A layer: its descriptor and how to read it.

    ``open`` returns a stream of exactly the blob's bytes that raises DigestError if they do not
    match. ``origin`` names the registry repository it can be mounted from, if any.
    """

    descriptor: Descriptor
    open: Callable[[], Readable]
    origin: MountSource | None = None


@dataclass(frozen=True)
class ImageGraph:
    """A complete image ready for a sink: a root document, every document, every layer blob,
    and which of the layers the build made (``new``, in the order it made them: archives put
    them first, where they were streamed while compressed)."""

    root: Descriptor
    documents: Mapping[str, bytes] = field(default_factory=dict)
    blobs: Mapping[str, Blob] = field(default_factory=dict)
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


# -- where images come from and go -------------------------------------------------------------


#: What the documents one build reads may add up to, unless ZEROIMAGE_DOCUMENTS_LIMIT says.
DEFAULT_DOCUMENTS_LIMIT = 64 << 20


class DocumentBudget:
    """The documents (manifests, indexes, configs) one build reads from outside, bounded in total.

    Each document is bounded on its own; their sum must be too, or an index naming 150 distinct
    4 MB child indexes would hold 600 MB. Sources charge each document they read (not one they
    already hold). Thread-safe."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is None:
            from zeroimage.untrusted import whole_number

            text = os.environ.get("ZEROIMAGE_DOCUMENTS_LIMIT", "").strip()
            limit = (
                whole_number(text, "ZEROIMAGE_DOCUMENTS_LIMIT (bytes)", 1 << 62) if text else DEFAULT_DOCUMENTS_LIMIT
            )
        self.limit = limit
        self._spent = 0
        self._lock = threading.Lock()

    def charge(self, size: int, what: str) -> None:
        with self._lock:
            self._spent += size
            spent = self._spent
        if spent > self.limit:
            raise InputError(
                f"{what}: the image's documents (manifests, indexes, configs) add up to more than "
                f"{self.limit} bytes; refusing them (ZEROIMAGE_DOCUMENTS_LIMIT raises the bound)"
            )


class Source(Protocol):
    """Somewhere an image can be read from."""

    description: str
    #: What the image is called, for messages: a registry reference, or the location as given.
    name: str

    def root(self) -> Descriptor:
        """The descriptor of the image's top document (an index or a manifest)."""
        ...

    def document(self, desc: Descriptor) -> bytes:
        """A manifest, index or config, size-bounded and verified against ``desc``."""
        ...

    def blob(self, desc: Descriptor) -> Blob: ...

    def referrers(self, digest: str) -> list[Descriptor]:
        """The artifacts (signatures, SBOMs, attestations) whose ``subject`` is the manifest
        ``digest``: a registry's (Referrers API, or the tag schema), a layout's; none elsewhere."""
        ...

    def tagged(self, tag: str) -> Descriptor | None:
        """What another tag of the same repository or layout names (cosign's ``.sig`` tags), or
        None when it names nothing."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WriteResult:
    """What a sink wrote, for one reference: where (as given, tag included), and the digest of
    what it holds there — the root document's, or for Docker outputs the image ID (the config's
    digest, ``image_id``), which is what Docker shows. ``location`` is the repository of a
    registry (a tag and a digest together open nowhere). For a registry, ``blobs`` counts those
    uploaded, mounted, or found."""

    reference: str
    digest: str
    blobs: Mapping[str, int] | None = None
    location: str = ""
    image_id: bool = False

    @property
    def line(self) -> str:
        """The line the CLI prints. A registry's is ``REPOSITORY@sha256:…``: what ``docker pull``,
        Kubernetes and Lambda take (skopeo: after ``docker://``). Any other is the output as
        written, which skopeo and podman open as printed (neither opens an archive or a layout
        by digest), then the digest after a shell comment: pasted into a command, it is left out."""
        if self.location:
            return f"{self.location}@{self.digest}"
        return f"{self.reference}  # {'image ID ' if self.image_id else ''}{self.digest}"


@dataclass(frozen=True)
class LegacySignature:
    """Cosign's legacy signature of one manifest: the simple-signing payload that names it (and
    the repository it is pushed to) and the signature over the payload's exact bytes, which a
    registry stores as a layer of the image under the tag ``sha256-<hex>.sig``."""

    digest: str
    payload: bytes
    signature: bytes


class Attachments(Protocol):
    """What a build attaches to each image it writes (signatures, SBOMs, provenance), made once
    that image's manifests are made; a sink that takes attachments asks for those of its graph."""

    def referrers(self, graph: ImageGraph) -> Sequence[Artifact]:
        """Artifacts whose ``subject`` is the root or a manifest of ``graph``."""
        ...

    def legacy(self, graph: ImageGraph, repository: str) -> Sequence[LegacySignature]:
        """Cosign's legacy signatures of ``graph`` as pushed to ``repository`` (registry/path)."""
        ...


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

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        """Instead of the three above: the layer was in the cache; ``open_layer`` reads it,
        verified against its digest as it is read."""
        ...


class Sink(Protocol):
    """Somewhere an image can be written to, and what it can do besides writing it."""

    description: str
    #: The media types it always holds ("oci" for OCI archives and layouts, which skopeo and
    #: umoci read only so), or None: the build's ``--format``.
    fixed_format: ImageFormat | None
    #: Whether it copies new layers from the store (archives, layouts); a registry takes them
    #: through its tap and needs only their identity kept.
    needs_layer_files: bool
    #: Whether it stores what a build attaches (signatures, SBOMs, provenance) beside the image:
    #: registries and OCI layouts do; Docker's formats have no place for them.
    takes_attachments: bool

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        """A tap that takes one new layer while it is made, or None if the sink cannot."""
        ...

    def layer_sources(self) -> Sequence[Source]:
        """The images this sink holds already under the names it will write (a registry's, under
        the tags it pushes to): a new layer found in one is not made again. None for most."""
        ...

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        """Write the image, and ``attachments``' artifacts beside it when the sink takes them;
        one result per reference the sink was given."""
        ...

    def discard(self) -> None:
        """The build failed: remove whatever this sink began (nothing once written)."""
        ...


# -- reading a base ----------------------------------------------------------------------------


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
    layers: tuple[Blob, ...]
    platform: Platform
    name: str = ""  # the base's registry reference (the base.name annotation), or "" for a local one
    where: str = ""  # where it was read, for messages


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
            found.append(Candidate(desc.platform, replace(desc, media_type=doc.media_type)))
            return
        expanded.add(desc.digest)
        for child in doc.manifests:
            visit(child, depth + 1, (*path, desc.digest))

    visit(root or source.root(), 0, ())
    return found


def load_base(source: Source, want: Platform, name: str = "", where: str = "") -> BaseImage:
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
    image = load_image(source, chosen, name, where)
    if chosen.platform is None and match_rank(want, image.platform) is None:
        raise PlatformError(f"{source.description} is an image for {image.platform}, not for {want}")
    return image


def load_image(source: Source, chosen: Candidate, name: str = "", where: str = "") -> BaseImage:
    """The image ``chosen`` names: its manifest and config read and checked, its layers as blobs.
    One of more than :data:`MAX_LAYERS` layers is refused before its config is read."""
    raw = source.document(chosen.descriptor)
    manifest = parse_document(raw, f"{source.description} manifest {chosen.descriptor.digest}")
    if not isinstance(manifest, Manifest):
        raise InputError(f"{source.description}: {chosen.descriptor.digest} is not an image manifest")
    if len(manifest.layers) > MAX_LAYERS:
        raise InputError(
            f"{source.description}: the image {chosen.descriptor.digest} has {len(manifest.layers)} layers, "
            f"more than the {MAX_LAYERS} zeroimage takes (overlay filesystems stop near 128)"
        )
    config_raw = source.document(manifest.config)
    config = ImageConfig.from_bytes(config_raw, f"{source.description} config {manifest.config.digest}")
    if len(manifest.layers) != len(config.diff_ids):
        raise InputError(
            f"{source.description}: manifest has {len(manifest.layers)} layers but its config "
            f"lists {len(config.diff_ids)} diff_ids"
        )
    return BaseImage(
        descriptor=replace(chosen.descriptor, media_type=manifest.media_type),
        manifest=manifest,
        config=config,
        layers=tuple(source.blob(layer) for layer in manifest.layers),
        platform=chosen.platform or config.platform,
        name=name,
        where=where or source.description,
    )


# -- assembling an image -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewLayer:
    """A layer the build made, as an image takes it: its blob (OCI media type) and diff_id."""

    blob: Blob
    diff_id: str


def append(
    base: BaseImage | None,
    layers: Sequence[NewLayer],
    config: ImageConfig,
    fmt: ImageFormat,
    annotations: Mapping[str, str] | None = None,
) -> ImageGraph:
    """The image of ``base`` with ``layers`` on top, described by ``config`` — which must already
    list the base's and the new layers' diff_ids, in order — in the media types of ``fmt``.

    The base's layers are named as they are (converted to ``fmt``'s media types); OCI manifests
    carry ``annotations`` plus ``created`` and, on a base, its digest and (from a registry) its
    name. Docker manifests carry no annotations."""
    base_layers = base.layers if base else ()
    expected = [*(base.config.diff_ids if base else ()), *(layer.diff_id for layer in layers)]
    if config.diff_ids != expected:
        raise AssertionError("the config's diff_ids do not match the image's layers")
    docker = fmt == "docker"
    config_bytes = config.to_bytes()
    config_desc = Descriptor(
        mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes)
    )
    blobs: dict[str, Blob] = {}
    descriptors: list[Descriptor] = []
    for blob in [*base_layers, *(layer.blob for layer in layers)]:
        desc = replace(blob.descriptor, media_type=_layer_media_type(blob.descriptor.media_type, fmt))
        descriptors.append(desc)
        blobs.setdefault(desc.digest, replace(blob, descriptor=desc))
    notes: dict[str, str] = {}
    if not docker:
        if config.data.get("created"):
            notes[CREATED] = str(config.data["created"])
        if base is not None:
            if base.name:
                notes[BASE_NAME] = base.name
            notes[BASE_DIGEST] = base.descriptor.digest
        notes.update(annotations or {})
    manifest = Manifest(
        config=config_desc,
        layers=tuple(descriptors),
        media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        annotations=notes,
    )
    raw = manifest.to_bytes()
    root = Descriptor(manifest.media_type, sha256_digest(raw), len(raw), platform=config.platform)
    return ImageGraph(
        root=root,
        documents={config_desc.digest: config_bytes, root.digest: raw},
        blobs=blobs,
        new=tuple(dict.fromkeys(layer.blob.descriptor.digest for layer in layers)),
    )


def index_of(
    images: Sequence[ImageGraph],
    fmt: ImageFormat,
    annotations: Mapping[str, str] | None = None,
) -> ImageGraph:
    """One image of several platforms: an index naming each image's root (a single image is
    returned as it is). Documents and blobs are merged; new layers keep the order made."""
    if len(images) == 1:
        return images[0]
    docker = fmt == "docker"
    index = Index(
        manifests=tuple(image.root for image in images),
        media_type=mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        annotations={} if docker else dict(annotations or {}),
    )
    raw = index.to_bytes()
    root = Descriptor(index.media_type, sha256_digest(raw), len(raw))
    documents: dict[str, bytes] = {root.digest: raw}
    blobs: dict[str, Blob] = {}
    new: dict[str, None] = {}
    for image in images:
        documents.update(image.documents)
        blobs.update(image.blobs)
        new.update(dict.fromkeys(image.new))
    return ImageGraph(root, documents, blobs, tuple(new))


def _layer_media_type(media_type: str, fmt: ImageFormat) -> str:
    if fmt == "oci":
        return mt.to_oci(media_type)
    docker = mt.to_docker(media_type)
    if docker is None:
        raise UsageError(f"--format docker cannot carry a layer of type {media_type}; use gzip layers")
    return docker
