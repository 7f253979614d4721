"""The platform an image or binary is for, as the OCI image format writes it.

A pure value: no parsing of ``os/arch/variant`` text and no normalisation here (that is
``zeroimage.platform``), only the value itself and its JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os``, ``architecture`` and the optional finer fields."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """``os/architecture[/variant]``; os.version and os.features are not shown."""
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON object, empty fields left out."""
        out: dict[str, Any] = {}
        if self.architecture:
            out["architecture"] = self.architecture
        if self.os:
            out["os"] = self.os
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Platform:
        """Read the OCI JSON object; ValueError when it or one of its fields has the wrong type.

        Missing fields read as empty; unknown fields (``features``) are ignored.
        """
        if not isinstance(d, Mapping):
            raise ValueError("platform is not a JSON object")

        def text(key: str) -> str:
            value = d.get(key)
            if value is None:
                return ""
            if not isinstance(value, str):
                raise ValueError(f"platform {key} is not a string")
            return value

        features = d.get("os.features")
        if features is None:
            features = []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ValueError("platform os.features is not a list of strings")
        return cls(
            os=text("os"),
            architecture=text("architecture"),
            variant=text("variant"),
            os_version=text("os.version"),
            os_features=tuple(features),
        )
