"""Content descriptors: what a document or blob is, how big, and its digest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zeroimage.errors import InputError
from zeroimage.oci.digest import validate_digest
from zeroimage.oci.platform import Platform

REF_NAME = "org.opencontainers.image.ref.name"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
CREATED = "org.opencontainers.image.created"

_KNOWN = ("mediaType", "digest", "size", "platform", "annotations", "urls", "artifactType")


def dumps(document: Mapping[str, Any]) -> bytes:
    """Serialise a JSON document the one way zeroimage always does (compact, key order kept)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


#: Image documents nest 5 or 6 deep. Deeper JSON is refused when parsed: Python's parser stops
#: near 1,000 levels, but what it accepts would later exhaust the recursion limit when copied
#: (deepcopy: 2 frames a level) or written out again, as an internal error.
MAX_JSON_DEPTH = 100


def parse_json(data: bytes, what: str) -> Any:
    """Parse JSON from outside; InputError naming ``what`` if it is not, or nests too deep."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{what} is not valid JSON: {str(exc)[:120]}") from None
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InputError(f"{what} is JSON nested more than {MAX_JSON_DEPTH} deep")
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def loads(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object (see :func:`parse_json`); InputError naming ``what`` for anything else."""
    value = parse_json(data, what)
    if not isinstance(value, dict):
        raise InputError(f"{what} is not a JSON object")
    return value


def string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"{what} must be an object of strings")
    return dict(value)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor. Fields zeroimage does not model are kept in ``extra``."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    artifact_type: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_digest(self.digest)

    @classmethod
    def from_dict(cls, data: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise InputError(f"{what} is not a JSON object")
        media_type = data.get("mediaType", "")
        size = data.get("size")
        if not isinstance(media_type, str):
            raise InputError(f"{what} has a mediaType that is not a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(f"{what} has no valid size")
        platform = None
        if data.get("platform") is not None:
            try:
                platform = Platform.from_dict(data["platform"])
            except (ValueError, TypeError, AttributeError) as exc:
                raise InputError(f"{what} has an invalid platform: {exc}") from None
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InputError(f"{what} has invalid urls")
        artifact_type = data.get("artifactType", "")
        if not isinstance(artifact_type, str):
            raise InputError(f"{what} has an artifactType that is not a string")
        return cls(
            media_type=media_type,
            digest=validate_digest(data.get("digest")),
            size=size,
            platform=platform,
            annotations=string_map(data.get("annotations"), f"{what} annotations"),
            urls=tuple(urls),
            artifact_type=artifact_type,
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["digest"] = self.digest
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out.update(self.extra)
        return out

    @property
    def ref_name(self) -> str:
        return self.annotations.get(REF_NAME, "")
