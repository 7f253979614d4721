"""What is in an image, from any source: the data behind ``zeroimage inspect``."""

from __future__ import annotations

import json
from typing import Any

from zeroimage.errors import InputError
from zeroimage.image import Source, candidates
from zeroimage.oci import Descriptor, Manifest, loads, parse_document


def describe(source: Source) -> dict[str, Any]:
    """The root document and, for each image under it, its platform, manifest and config."""
    root = source.root()
    raw = source.document(root)
    doc = parse_document(raw, f"{source.description} {root.digest}", root.media_type)
    images = []
    for candidate in candidates(source, root):
        images.append(_image(source, candidate.descriptor))
    return {
        "source": source.description,
        "digest": root.digest,
        "mediaType": doc.media_type,
        "size": root.size,
        "document": json.loads(raw),
        "images": images,
    }


def _image(source: Source, desc: Descriptor) -> dict[str, Any]:
    raw = source.document(desc)
    manifest = parse_document(raw, f"{source.description} {desc.digest}", desc.media_type)
    if not isinstance(manifest, Manifest):
        raise InputError(f"{source.description}: {desc.digest} is not an image manifest")
    what = f"{source.description} config {manifest.config.digest}"
    config = loads(source.document(manifest.config), what)
    if not isinstance(config.get("config") or {}, dict):
        raise InputError(f"{what} has an invalid config section")  # as a build would say
    platform = desc.platform
    return {
        "platform": str(platform) if platform else f"{config.get('os', '?')}/{config.get('architecture', '?')}",
        "digest": desc.digest,
        "id": manifest.config.digest,  # the image ID, as Docker shows it
        "size": desc.size + manifest.config.size + sum(layer.size for layer in manifest.layers),
        "manifest": json.loads(raw),
        "config": config,
    }
