"""The values an SBOM is made from: what a program says it was built from, what a base image's
package databases list, the files a build added, and the image they all make.

Pure values (frozen dataclasses), filled in by :mod:`zeroimage.sbom.program` and
:mod:`zeroimage.sbom.base` from what the image holds, and by the caller from what it built;
:func:`zeroimage.sbom.render` turns one :class:`ImageDescription` into SPDX or CycloneDX.
Strings read from a program or a base are kept as data, whatever they hold: they are escaped
where they are written, never interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from zeroimage.oci.platform import Platform

#: The checksum algorithms a :class:`File` or :class:`Package` may carry, by the names used
#: here (hashlib's), and the length of their hex digests.
CHECKSUM_LENGTHS: Mapping[str, int] = {
    "sha1": 40,
    "sha224": 56,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "md5": 32,
    "blake3": 64,
}
#: What the caller computes for each file it adds (a program included), while it reads it:
#: SPDX 2.3 requires SHA-1 for every file (spdx-tools refuses a file without it); SHA-256 is
#: what everyone else checks.
FILE_CHECKSUMS: tuple[str, ...] = ("sha1", "sha256")

_HEX = re.compile(r"[0-9a-f]+")

Ecosystem = Literal["golang", "cargo", "deb", "apk"]


def check_checksums(checksums: Mapping[str, str], what: str) -> None:
    """ValueError unless every algorithm is known and every digest is lowercase hex of its length."""
    for algorithm, digest in checksums.items():
        length = CHECKSUM_LENGTHS.get(algorithm)
        if length is None:
            raise ValueError(f"{what}: unknown checksum algorithm {algorithm!r}")
        if len(digest) != length or not _HEX.fullmatch(digest):
            raise ValueError(f"{what}: a {algorithm} checksum is {length} lowercase hex digits")


@dataclass(frozen=True)
class Package:
    """One thing with a name and a version: a Go module, a crate, a Debian or Alpine package."""

    name: str
    version: str = ""
    ecosystem: Ecosystem | None = None
    #: its package URL (purl spec), "" when it has none
    purl: str = ""
    #: algorithm (see CHECKSUM_LENGTHS) → lowercase hex; for a Go module, its go.sum ``h1:`` hash
    #: (SHA-256, base64) in hex, as syft and ko write it
    checksums: Mapping[str, str] = field(default_factory=dict)
    #: licenses as the source declares them (Alpine's ``L:``), one expression each
    licenses: tuple[str, ...] = ()
    #: who supplies it, as its database writes it (dpkg's Maintainer, apk's ``m:``)
    supplier: str = ""
    #: the source package it was built from (dpkg's Source, apk's origin), and that one's version
    source: str = ""
    source_version: str = ""
    #: other facts, as (name, value) pairs: a Go module's replacement, a crate's source or kind
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProgramContents:
    """What a program says it was built from: nothing, for a program that does not say."""

    language: Literal["go", "rust"] | None = None
    #: the compiler that built it, as it writes itself ("go1.19.8"); "" when unknown
    toolchain: str = ""
    #: the main module (Go) or root crate (Rust)
    main: Package | None = None
    #: every other module or crate compiled in, in the order the program lists them
    packages: tuple[Package, ...] = ()
    #: what depends on what, where the program says (Rust: the crate graph): pairs of indices
    #: into ``packages``, -1 standing for ``main``. Go's build info lists modules without their
    #: graph: there are none.
    requires: tuple[tuple[int, int], ...] = ()
    #: build settings as (key, value), in order (Go: ``-ldflags``, ``CGO_ENABLED``, ``vcs.revision`` …)
    settings: tuple[tuple[str, str], ...] = ()
    #: what could not be read, one line each (untrusted text already escaped), speaking of the
    #: program as "its" (never naming where it lies on the host): for the caller to report
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Distro:
    """The distribution of a base image, from its os-release file."""

    id: str  # "debian", "ubuntu", "alpine"
    version_id: str = ""  # "12", "22.04", "3.19.1"
    version_codename: str = ""  # "bookworm"
    pretty_name: str = ""
    id_like: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseContents:
    """What a base image's package databases list."""

    distro: Distro | None = None
    packages: tuple[Package, ...] = ()
    #: what could not be read, one line each (untrusted text already escaped)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class File:
    """A file the build put in the image, as the caller computed it while making the layer."""

    path: str  # in the image, absolute: "/app"
    size: int
    #: algorithm → lowercase hex; FILE_CHECKSUMS are what the formats want (SPDX needs sha1)
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Program:
    """A program the build added: its file, and what it says it was built from."""

    file: File
    contents: ProgramContents = ProgramContents()


@dataclass(frozen=True)
class Tool:
    """Who made the SBOM: ``Tool: NAME-VERSION`` in SPDX, metadata.tools in CycloneDX."""

    name: str
    version: str


@dataclass(frozen=True)
class BaseImage:
    """The image the build started from."""

    name: str  # as the user named it ("gcr.io/distroless/static:nonroot", "base.tar")
    digest: str  # its manifest's digest, for this platform
    contents: BaseContents = BaseContents()
    #: its registry repository ("gcr.io/distroless/static") and tag, when it came from a registry
    repository: str = ""
    tag: str = ""


@dataclass(frozen=True)
class ImageDescription:
    """One image manifest (one platform of a multi-platform image) and what it holds: the
    input of :func:`zeroimage.sbom.render`."""

    name: str  # as pushed or written: "registry.example.com/app:v1", "app.tar"
    digest: str  # the manifest's digest: "sha256:…"
    platform: Platform
    created: str  # RFC 3339, the image's ``created`` (or SOURCE_DATE_EPOCH's time)
    tool: Tool
    programs: tuple[Program, ...] = ()
    #: files the build added that are not programs (``--add``, ``--with``)
    files: tuple[File, ...] = ()
    base: BaseImage | None = None
    #: its registry repository ("registry.example.com/app") and tag, when pushed
    repository: str = ""
    tag: str = ""
