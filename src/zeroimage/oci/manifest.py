"""Image manifests and image indexes (OCI and Docker v2 schema 2), parsed and serialised.

Parsing keeps every field it does not model in ``extra`` so that a document read and written
again loses nothing. Where a document is not changed, callers keep its exact bytes instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zeroimage.errors import InputError
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import Descriptor, dumps, loads, string_map

#: Manifests and indexes bigger than this are refused (the distribution spec's common limit).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024
#: Configs may be larger than manifests (long histories), but not absurdly so.
MAX_CONFIG_SIZE = 16 * 1024 * 1024

_MANIFEST_KEYS = ("schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations")
_INDEX_KEYS = ("schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations")


def _descriptors(value: object, what: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise InputError(f"{what} must be a list")
    return tuple(Descriptor.from_dict(item, f"{what}[{i}]") for i, item in enumerate(value))


def _schema_version(data: Mapping[str, Any], what: str) -> None:
    if data.get("schemaVersion") != 2:
        raise InputError(f"{what} has schemaVersion {repr(data.get('schemaVersion'))[:80]}; only 2 is supported")


def _media_type(data: Mapping[str, Any], what: str) -> object:
    """The document's own mediaType: a string, or absent (a list or an object is no set member)."""
    media_type = data.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise InputError(f"{what} has a mediaType that is not a string")
    return media_type


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config and an ordered list of layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mt.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str = "manifest") -> Manifest:
        _schema_version(data, what)
        if "config" not in data:
            raise InputError(f"{what} has no config")
        media_type = _media_type(data, what) or mt.OCI_MANIFEST
        if media_type not in mt.MANIFESTS:
            raise InputError(f"{what} has unsupported mediaType {str(media_type)[:80]!r}")
        subject = data.get("subject")
        artifact_type = data.get("artifactType", "")
        if not isinstance(artifact_type, str):
            raise InputError(f"{what} has an artifactType that is not a string")
        return cls(
            config=Descriptor.from_dict(data["config"], f"{what} config"),
            layers=_descriptors(data.get("layers", []), f"{what} layers"),
            media_type=media_type,
            annotations=string_map(data.get("annotations"), f"{what} annotations"),
            subject=Descriptor.from_dict(subject, f"{what} subject") if subject is not None else None,
            artifact_type=artifact_type,
            extra={k: v for k, v in data.items() if k not in _MANIFEST_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_dict()
        out["layers"] = [layer.to_dict() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations and self.media_type != mt.DOCKER_MANIFEST:
            out["annotations"] = dict(self.annotations)
        out.update(self.extra)
        return out

    def to_bytes(self) -> bytes:
        return dumps(self.to_dict())


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): one entry per platform or tag."""

    manifests: tuple[Descriptor, ...]
    media_type: str = mt.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str = "index") -> Index:
        _schema_version(data, what)
        media_type = _media_type(data, what) or mt.OCI_INDEX
        if media_type not in mt.INDEXES:
            raise InputError(f"{what} has unsupported mediaType {str(media_type)[:80]!r}")
        subject = data.get("subject")
        artifact_type = data.get("artifactType", "")
        if not isinstance(artifact_type, str):
            raise InputError(f"{what} has an artifactType that is not a string")
        return cls(
            manifests=_descriptors(data.get("manifests", []), f"{what} manifests"),
            media_type=media_type,
            annotations=string_map(data.get("annotations"), f"{what} annotations"),
            subject=Descriptor.from_dict(subject, f"{what} subject") if subject is not None else None,
            artifact_type=artifact_type,
            extra={k: v for k, v in data.items() if k not in _INDEX_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_dict() for m in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations and self.media_type != mt.DOCKER_MANIFEST_LIST:
            out["annotations"] = dict(self.annotations)
        out.update(self.extra)
        return out

    def to_bytes(self) -> bytes:
        return dumps(self.to_dict())


def _kind(media_type: object) -> str:
    return "index" if media_type in mt.INDEXES else "manifest" if media_type in mt.MANIFESTS else ""


def parse_document(data: bytes, what: str, media_type: str = "") -> Manifest | Index:
    """Parse a manifest or index, telling them apart by mediaType or, lacking one, by shape.

    A document whose own mediaType makes it an index while ``media_type`` (its descriptor's)
    says manifest, or the reverse, is refused."""
    if len(data) > MAX_DOCUMENT_SIZE:
        raise InputError(f"{what} is larger than {MAX_DOCUMENT_SIZE} bytes")
    obj = loads(data, what)
    own, named = _kind(_media_type(obj, what)), _kind(media_type)
    if own and named and own != named:
        raise InputError(f"{what} is an image {own}, but the descriptor naming it says {media_type}")
    declared = obj.get("mediaType") or media_type
    if declared in mt.INDEXES or (not declared and "manifests" in obj):
        return Index.from_dict(obj, what)
    if declared in mt.MANIFESTS or (not declared and "config" in obj):
        return Manifest.from_dict(obj, what)
    if declared == "application/vnd.docker.distribution.manifest.v1+prettyjws" or obj.get("schemaVersion") == 1:
        raise InputError(f"{what} is a Docker schema 1 manifest, which is deprecated and not supported")
    raise InputError(f"{what} is neither an image manifest nor an index (mediaType {str(declared)[:80]!r})")
