"""Image configuration (the ``config`` blob): the container's defaults, rootfs and history.

``ImageConfig`` keeps the whole JSON object, fields it does not know included, and every
change returns a new value: a base config read and written again loses nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zeroimage.errors import DigestError, InputError
from zeroimage.oci.descriptor import dumps, loads, string_map
from zeroimage.oci.digest import validate_digest
from zeroimage.oci.platform import Platform


def _check_merged_fields(section: Mapping[str, Any], what: str) -> None:
    """The fields of the config section a build merges its flags into (--env, --label,
    --expose) are of the types Docker gives them, or null: a base's say is not trusted."""
    env = section.get("Env")
    if env is not None and not (isinstance(env, list) and all(isinstance(item, str) for item in env)):
        raise InputError(f"{what} has an Env that is not a list of strings")
    string_map(section.get("Labels"), f"{what} Labels")
    if not isinstance(section.get("ExposedPorts"), dict | None):
        raise InputError(f"{what} has ExposedPorts that are not an object")


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ImageConfig:
    data: Mapping[str, Any]

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "image config") -> ImageConfig:
        obj = loads(raw, what)
        rootfs = obj.get("rootfs", {})
        diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise InputError(f"{what} has an invalid rootfs")
        for diff_id in diff_ids:
            try:
                validate_digest(diff_id)
            except DigestError:
                raise InputError(f"{what} has an invalid diff_id {diff_id[:80]!r}") from None
        section = obj.get("config", {})
        if not isinstance(section, dict | None):
            raise InputError(f"{what} has an invalid config section")
        _check_merged_fields(section or {}, what)
        if not isinstance(obj.get("history", []), list | None):
            raise InputError(f"{what} has an invalid history")
        return cls(obj)

    @classmethod
    def scratch(cls, platform: Platform) -> ImageConfig:
        return cls({"rootfs": {"type": "layers", "diff_ids": []}}).with_platform(platform)

    def to_bytes(self) -> bytes:
        return dumps(self.data)

    def _copy(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.data))

    @property
    def diff_ids(self) -> list[str]:
        return list(self.data.get("rootfs", {}).get("diff_ids", []))

    @property
    def container(self) -> dict[str, Any]:
        """The ``config`` section (Entrypoint, Cmd, Env, ...), as a copy."""
        return copy.deepcopy(dict(self.data.get("config") or {}))

    @property
    def platform(self) -> Platform:
        d = self.data
        return Platform(
            os=str(d.get("os", "")),
            architecture=str(d.get("architecture", "")),
            variant=str(d.get("variant", "")),
            os_version=str(d.get("os.version", "")),
            os_features=tuple(str(f) for f in d.get("os.features", None) or ()),
        )

    def with_platform(self, platform: Platform) -> ImageConfig:
        """Set os/architecture/variant; os.version and os.features of the base are kept."""
        data = self._copy()
        data["architecture"] = platform.architecture
        data["os"] = platform.os
        if platform.variant:
            data["variant"] = platform.variant
        else:
            data.pop("variant", None)
        if platform.os_version:
            data["os.version"] = platform.os_version
        if platform.os_features:
            data["os.features"] = list(platform.os_features)
        return ImageConfig(data)

    def with_layer(self, diff_id: str, created: str, created_by: str, comment: str = "") -> ImageConfig:
        """Append a layer's diff_id and a history entry describing it."""
        data = self._copy()
        rootfs = data.setdefault("rootfs", {})
        rootfs["type"] = "layers"
        rootfs.setdefault("diff_ids", []).append(diff_id)
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        history = data.get("history") or []
        history.append(entry)
        data["history"] = history
        return ImageConfig(data)

    def with_history(self, created: str, created_by: str, comment: str = "") -> ImageConfig:
        """Append a history entry of a change that made no layer (``empty_layer``), as a
        Dockerfile's ENV, USER or ENTRYPOINT do."""
        data = self._copy()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        entry["empty_layer"] = True
        data["history"] = [*(data.get("history") or []), entry]
        return ImageConfig(data)

    def with_created(self, created: str) -> ImageConfig:
        data = self._copy()
        data["created"] = created
        return ImageConfig(data)

    def with_container(self, **fields: Any) -> ImageConfig:
        """Set fields of the ``config`` section; a value of None removes the field."""
        data = self._copy()
        section = data.get("config") or {}
        for key, value in fields.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
        data["config"] = section
        return ImageConfig(data)

    def with_entrypoint(self, entrypoint: Sequence[str], cmd: Sequence[str] | None = None) -> ImageConfig:
        """Set Entrypoint; Cmd is replaced by ``cmd`` (cleared when None), as a Dockerfile's
        ENTRYPOINT resets the base's CMD."""
        return self.with_container(Entrypoint=list(entrypoint), Cmd=list(cmd) if cmd else None)
