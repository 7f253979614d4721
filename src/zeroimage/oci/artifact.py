"""OCI 1.1 artifacts and referrers, as values: what a signature, an SBOM or a provenance bundle is
when it is attached to an image.

An artifact is an OCI image manifest (image-spec 1.1, "Guidelines for Artifact Usage") whose
``artifactType`` says what it holds, whose config is the empty descriptor (``{}``), whose one layer
holds the document, and whose ``subject`` names the exact manifest it speaks about.
:func:`make_artifact` makes one, byte for byte the same from the same inputs.

A registry lists an image's referrers (the distribution spec 1.1) through its Referrers API, or,
lacking one, in an image index that clients keep under the tag :func:`fallback_tag` names; both
hold one entry per referrer (:func:`referrer_descriptor`). :func:`referrers_index` merges new
entries into such an index, keeping every entry others put there.

Pure: no I/O, nothing of zeroimage's but :mod:`zeroimage.oci` and its errors.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from zeroimage.errors import DigestError, InputError, UsageError
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import CREATED, Descriptor
from zeroimage.oci.digest import sha256_digest, verify_bytes
from zeroimage.oci.manifest import MAX_DOCUMENT_SIZE, Index, Manifest, parse_document

#: The empty descriptor's blob: the smallest valid JSON object (image-spec 1.1).
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#: The largest document an artifact carries: it is held in memory, made and read back whole.
MAX_ARTIFACT_CONTENT = 16 * 1024 * 1024
#: The annotation naming the layer's file (oras pull writes the document under this name).
TITLE = "org.opencontainers.image.title"

# RFC 6838 section 4.2: type "/" subtype, each a restricted-name of at most 127 characters.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"^{_RESTRICTED_NAME}/{_RESTRICTED_NAME}$")
# The OCI digest grammar (image-spec descriptor.md), wider than the algorithms zeroimage verifies.
_ANY_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_NOT_IN_TAG = re.compile(r"[^a-zA-Z0-9._-]")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")


def empty_descriptor(inline: bool = False) -> Descriptor:
    """The empty descriptor: ``{}`` (2 bytes) of type ``application/vnd.oci.empty.v1+json``.

    With ``inline`` it carries the blob in its ``data`` field (``e30=``), which the spec allows;
    registries still want the blob itself uploaded (distribution 2.8 answers
    ``MANIFEST_BLOB_UNKNOWN`` otherwise, ``data`` or not), so artifacts made here leave it out, as
    the spec's own artifact examples do."""
    extra = {"data": base64.b64encode(EMPTY_JSON).decode()} if inline else {}
    return Descriptor(mt.OCI_EMPTY, EMPTY_DIGEST, len(EMPTY_JSON), extra=extra)


def _check_media_type(value: str, what: str) -> str:
    if not isinstance(value, str) or not _MEDIA_TYPE.match(value):
        raise UsageError(f"{what} {str(value)[:80]!r} is not a media type (type/subtype, RFC 6838)")
    return value


def _check_annotations(annotations: Mapping[str, str], what: str) -> dict[str, str]:
    for key, value in annotations.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise UsageError(f"{what} must map non-empty strings to strings, not {str(key)[:60]!r}")
    return {key: annotations[key] for key in sorted(annotations)}


def _check_created(created: str) -> None:
    valid = isinstance(created, str) and _RFC3339.match(created) is not None
    if valid:
        try:
            datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            valid = False
    if not valid:
        raise UsageError(f"created time {str(created)[:40]!r} is not an RFC 3339 time (2024-01-02T03:04:05Z)")


def referrer_descriptor(raw: bytes, what: str = "referrer") -> Descriptor:
    """The entry a referrers list holds for the manifest or index ``raw`` (distribution spec 1.1):
    its media type, digest and size, its ``artifactType`` (a manifest lacking one: its config's
    media type; an index lacking one: none) and its annotations. InputError when ``raw`` has no
    ``subject``, or is not a manifest or index."""
    document = parse_document(raw, what)
    if document.subject is None:
        raise InputError(f"{what} has no subject: it refers to nothing")
    artifact_type = document.artifact_type
    if not artifact_type and isinstance(document, Manifest):
        artifact_type = document.config.media_type
    return Descriptor(
        document.media_type,
        sha256_digest(raw),
        len(raw),
        annotations=dict(document.annotations),
        artifact_type=artifact_type,
    )


@dataclass(frozen=True)
class Artifact:
    """An artifact manifest's exact bytes with what a registry needs to store it as a referrer.

    ``raw``: the manifest, byte for byte what is pushed and what a signature of it covers.
    ``manifest``: those bytes parsed. ``descriptor``: its entry in a referrers list (see
    :func:`referrer_descriptor`). ``blobs``: every blob the manifest names, by digest, the empty
    config included — each verified against its digest when the value is made."""

    raw: bytes
    manifest: Manifest
    descriptor: Descriptor
    blobs: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.manifest.subject is None:
            raise InputError("an artifact needs a subject")
        if self.descriptor.digest != sha256_digest(self.raw) or self.descriptor.size != len(self.raw):
            raise DigestError("an artifact's descriptor does not describe its manifest's bytes")
        for desc in self.blob_descriptors:
            data = self.blobs.get(desc.digest)
            if data is None:
                raise InputError(f"artifact {self.descriptor.digest} lacks its blob {desc.digest}")
            if len(data) != desc.size:
                raise DigestError(f"blob {desc.digest} has {len(data)} bytes, its descriptor says {desc.size}")
            verify_bytes(data, desc.digest, f"blob {desc.digest}")

    @classmethod
    def from_parts(cls, raw: bytes, blobs: Mapping[str, bytes], what: str = "artifact") -> Artifact:
        """The artifact whose manifest is ``raw`` (an image manifest with a subject), with the
        blobs it names taken from ``blobs``; InputError or DigestError when they do not agree."""
        document = parse_document(raw, what)
        if not isinstance(document, Manifest) or document.media_type != mt.OCI_MANIFEST:
            raise InputError(f"{what} is not an OCI image manifest")
        named = {document.config.digest, *(layer.digest for layer in document.layers)}
        return cls(raw, document, referrer_descriptor(raw, what), {d: blobs[d] for d in named if d in blobs})

    @property
    def subject(self) -> Descriptor:
        """The manifest this artifact speaks about (its digest, media type and size)."""
        assert self.manifest.subject is not None  # checked when the value is made
        return self.manifest.subject

    @property
    def artifact_type(self) -> str:
        return self.descriptor.artifact_type

    @property
    def blob_descriptors(self) -> tuple[Descriptor, ...]:
        """The config, then the layers: each blob to be in the repository before the manifest."""
        unique: dict[str, Descriptor] = {}
        for desc in (self.manifest.config, *self.manifest.layers):
            unique.setdefault(desc.digest, desc)
        return tuple(unique.values())

    def parts(self) -> Iterator[tuple[Descriptor, bytes]]:
        """Each blob, then the manifest: the order in which a repository or layout takes them."""
        for desc in self.blob_descriptors:
            yield desc, self.blobs[desc.digest]
        yield self.descriptor, self.raw

    @property
    def content(self) -> bytes:
        """The document the artifact holds: its one layer's bytes."""
        if len(self.manifest.layers) != 1:
            raise InputError(f"artifact {self.descriptor.digest} has {len(self.manifest.layers)} layers, not one")
        return self.blobs[self.manifest.layers[0].digest]


def make_artifact(
    artifact_type: str,
    layer_media_type: str,
    content: bytes,
    subject: Descriptor,
    annotations: Mapping[str, str] | None = None,
    created: str | None = None,
    title: str | None = None,
) -> Artifact:
    """An artifact of ``artifact_type`` about ``subject`` holding ``content`` as its one layer.

    The manifest is an OCI image manifest per image-spec 1.1's artifact guidelines: the empty
    descriptor as config, one layer of ``layer_media_type``, ``subject`` reduced to its media type,
    digest and size (what names the exact bytes), and ``annotations`` in key order, with
    ``org.opencontainers.image.created`` set to ``created`` (RFC 3339) when given. ``title`` names
    the layer's file for ``oras pull``. The same inputs give the same bytes."""
    _check_media_type(artifact_type, "artifact type")
    _check_media_type(layer_media_type, "layer media type")
    if not isinstance(content, bytes) or not content:
        raise UsageError("an artifact's content must be non-empty bytes")
    if len(content) > MAX_ARTIFACT_CONTENT:
        raise UsageError(f"an artifact's content is limited to {MAX_ARTIFACT_CONTENT} bytes, not {len(content)}")
    if subject.media_type not in mt.MANIFESTS and subject.media_type not in mt.INDEXES:
        raise UsageError(f"an artifact's subject must be an image manifest or index, not {subject.media_type!r}")
    notes = _check_annotations(annotations or {}, "artifact annotations")
    if created is not None:
        _check_created(created)
        notes = _check_annotations({**notes, CREATED: created}, "artifact annotations")
    layer = Descriptor(
        layer_media_type,
        sha256_digest(content),
        len(content),
        annotations=_check_annotations({TITLE: title}, "the layer's title") if title else {},
    )
    manifest = Manifest(
        config=empty_descriptor(),
        layers=(layer,),
        media_type=mt.OCI_MANIFEST,
        annotations=notes,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        artifact_type=artifact_type,
    )
    raw = manifest.to_bytes()
    if len(raw) > MAX_DOCUMENT_SIZE:
        raise UsageError(f"an artifact's manifest would be larger than {MAX_DOCUMENT_SIZE} bytes")
    return Artifact(raw, manifest, referrer_descriptor(raw), {EMPTY_DIGEST: EMPTY_JSON, layer.digest: content})


def referrers_index(existing: Index | None, added: Sequence[Descriptor]) -> Index:
    """The referrers list ``existing`` (None: a new one) with the entries ``added``.

    Every entry of ``existing`` stays, in its order; an entry repeating the digest of an earlier
    one is dropped (the spec asks for no duplicates). An added entry whose digest is listed takes
    that entry's place (same digest: the same manifest, described afresh), any other is appended,
    in the order given. The index keeps the annotations and fields others gave it. InputError
    when ``existing`` is not an OCI image index."""
    if existing is not None and existing.media_type != mt.OCI_INDEX:
        raise InputError(f"a referrers list must be an OCI image index, not {existing.media_type!r}")
    merged: dict[str, Descriptor] = {}
    for entry in existing.manifests if existing is not None else ():
        merged.setdefault(entry.digest, entry)
    for entry in added:
        merged[entry.digest] = entry  # in place when listed (a dict keeps the first insertion's position)
    if existing is None:
        return Index(manifests=tuple(merged.values()))
    return replace(existing, manifests=tuple(merged.values()))


def fallback_tag(digest: str) -> str:
    """The tag of a digest's referrers list where a registry has no Referrers API (the
    distribution spec's "referrers tag schema"): the algorithm truncated to 32 characters, ``-``,
    the encoded part truncated to 64, every character a tag may not hold made ``-``
    (``sha256:ab…`` gives ``sha256-ab…``; sha512's 128 hex digits are cut to 64)."""
    match = _ANY_DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise DigestError(f"invalid digest {str(digest)[:80]!r}: no referrers tag for it")
    algorithm, encoded = match.group(1)[:32], match.group(2)[:64]
    return _NOT_IN_TAG.sub("-", f"{algorithm}-{encoded}")
