"""What is in an image, from any source: the data behind ``zeroimage inspect``.

:func:`describe` reads the root document and, for each image under it, its manifest and config,
into an :class:`Inspection`; its :meth:`~Inspection.to_json` is what ``inspect --json`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zeroimage.errors import InputError
from zeroimage.image import Source, candidates
from zeroimage.oci import Descriptor, Manifest, Platform, loads, parse_document


@dataclass(frozen=True)
class InspectedImage:
    """One image under the root: its platform, manifest digest, image ID (its config's digest,
    which Docker shows), size (manifest, config and layers, compressed) and documents."""

    platform: Platform
    digest: str
    id: str
    size: int
    manifest: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return tuple(Descriptor.from_dict(layer) for layer in self.manifest.get("layers", []))

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": str(self.platform),
            "digest": self.digest,
            "id": self.id,
            "size": self.size,
            "manifest": self.manifest,
            "config": self.config,
        }


@dataclass(frozen=True)
class Inspection:
    """An image as ``zeroimage inspect`` shows it: where it was read, its root document (an index
    or a manifest: its digest, media type, size and exact bytes) and each image under it. With a
    target, ``problems`` says what that platform would refuse of it (empty: nothing seen)."""

    source: str
    digest: str
    media_type: str
    size: int
    raw: bytes
    images: tuple[InspectedImage, ...]
    target: str = ""
    problems: tuple[str, ...] = ()

    @property
    def document(self) -> Any:
        return json.loads(self.raw)

    def to_json(self) -> dict[str, Any]:
        """What ``zeroimage inspect --json`` prints."""
        out = {
            "source": self.source,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "document": self.document,
            "images": [image.to_json() for image in self.images],
        }
        if self.target:
            out[self.target] = {"problems": list(self.problems)}
        return out


def describe(source: Source) -> Inspection:
    """The root document and, for each image under it, its platform, manifest and config."""
    root = source.root()
    raw = source.document(root)
    doc = parse_document(raw, f"{source.description} {root.digest}", root.media_type)
    images = tuple(_image(source, candidate.descriptor) for candidate in candidates(source, root))
    return Inspection(source.description, root.digest, doc.media_type, root.size, raw, images)


def _image(source: Source, desc: Descriptor) -> InspectedImage:
    raw = source.document(desc)
    manifest = parse_document(raw, f"{source.description} {desc.digest}", desc.media_type)
    if not isinstance(manifest, Manifest):
        raise InputError(f"{source.description}: {desc.digest} is not an image manifest")
    what = f"{source.description} config {manifest.config.digest}"
    config = loads(source.document(manifest.config), what)
    if not isinstance(config.get("config") or {}, dict):
        raise InputError(f"{what} has an invalid config section")  # as a build would say
    platform = desc.platform or Platform(
        os=str(config.get("os") or "?"),
        architecture=str(config.get("architecture") or "?"),
        variant=str(config.get("variant") or ""),
    )
    return InspectedImage(
        platform=platform,
        digest=desc.digest,
        id=manifest.config.digest,
        size=desc.size + manifest.config.size + sum(layer.size for layer in manifest.layers),
        manifest=json.loads(raw),
        config=config,
    )
