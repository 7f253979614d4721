"""Software bills of materials of the images zeroimage makes, from what it reads at the moment
it makes them — no second tool, no second pass:

- each program's own account of what it was built from (:func:`read_program`): Go's build
  info (what ``go version -m`` prints: the main module, every module with its version and
  ``h1:`` hash, the Go version, the build settings) and the crate list ``cargo auditable``
  embeds in Rust programs (``.dep-v0``);
- the base's package databases (:func:`read_base`): dpkg (Debian, Ubuntu, distroless's
  ``status.d``) and apk (Alpine), and the distribution its os-release names;
- the files the build added, with the checksums the caller computed while making the layer.

:func:`render` writes one :class:`ImageDescription` — one image manifest, so one platform of a
multi-platform image — as SPDX 2.3 JSON or CycloneDX 1.6 JSON, valid under their validators
(spdx-tools, cyclonedx-python-lib), the same bytes for the same inputs. Packages carry purls
(``pkg:golang/…``, ``pkg:cargo/…``, ``pkg:deb/…``, ``pkg:apk/…``, ``pkg:oci/…``) as the purl
specification builds them.

Readers never fail on what a program or base holds: what cannot be read is left out, with a
warning (``.warnings``) for the caller to report; the rendered SBOM says so too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from zeroimage.oci import mediatypes as mt
from zeroimage.sbom.base import read_base
from zeroimage.sbom.cyclonedx import render_cyclonedx
from zeroimage.sbom.model import (
    FILE_CHECKSUMS,
    BaseContents,
    BaseImage,
    Distro,
    File,
    ImageDescription,
    Package,
    Program,
    ProgramContents,
    Tool,
)
from zeroimage.sbom.program import read_program
from zeroimage.sbom.spdx import render_spdx

Format = Literal["spdx", "cyclonedx"]
FORMATS: tuple[Format, ...] = ("spdx", "cyclonedx")
#: The media type of each format's documents (an artifact's layer, a referrer's artifactType).
MEDIA_TYPES: Mapping[Format, str] = {"spdx": mt.SPDX_JSON, "cyclonedx": mt.CYCLONEDX_JSON}


def render(fmt: Format, image: ImageDescription) -> bytes:
    """``image`` as an SBOM document in ``fmt``: deterministic bytes (UTF-8 JSON, ASCII-escaped).
    ValueError for a description the caller got wrong: an unknown format, a time that is not
    RFC 3339, a file checksum that is not one (SPDX needs every file's sha1)."""
    if fmt == "spdx":
        return render_spdx(image)
    if fmt == "cyclonedx":
        return render_cyclonedx(image)
    raise ValueError(f"unknown SBOM format {fmt!r}")


__all__ = [
    "FILE_CHECKSUMS",
    "FORMATS",
    "MEDIA_TYPES",
    "BaseContents",
    "BaseImage",
    "Distro",
    "File",
    "Format",
    "ImageDescription",
    "Package",
    "Program",
    "ProgramContents",
    "Tool",
    "read_base",
    "read_program",
    "render",
]
