"""The crate list ``cargo auditable`` embeds in a Rust program: the ``.dep-v0`` section, zlib-
compressed JSON, ``{"packages": [{"name", "version", "source", "kind", "dependencies", "root"}]}``
(rust-secure-code/cargo-auditable's format: ``dependencies`` are indices into ``packages``,
``kind`` is ``"build"`` or ``"runtime"`` (the default), ``source`` is ``"crates.io"``,
``"local"``, ``"git"``, ``"registry"`` or another word).

Hostile sections are bounded: at most :data:`MAX_COMPRESSED` bytes are read and at most
:data:`MAX_JSON` inflated (a zlib bomb stops there), and the JSON must be exactly that shape;
anything else is a warning and no crates.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from zeroimage.elf import ElfLayout, ReadAt
from zeroimage.layers.entries import shown
from zeroimage.sbom import purl
from zeroimage.sbom.model import Package, ProgramContents

SECTION = ".dep-v0"
MAX_COMPRESSED = 1 << 20
#: Real crate lists take about 80 bytes a crate: 2 MiB is 25,000 crates.
MAX_JSON = 2 << 20
_CRATES_IO = "crates.io"


class _Refused(Exception):
    """Why the section is not read: a warning's text."""


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_JSON + 1)
    except zlib.error:
        raise _Refused("it is not zlib data") from None
    if len(out) > MAX_JSON:
        raise _Refused(f"it inflates to more than {MAX_JSON} bytes")
    if not inflater.eof:
        raise _Refused("its zlib data is cut short")
    return out


def _source(value: object) -> str:
    if isinstance(value, dict) and set(value) == {"Other"} and isinstance(value["Other"], str):
        return str(value["Other"])
    if not isinstance(value, str):
        raise _Refused("a crate's source is not a string")
    return value


_Crate = tuple[str, str, str, str, tuple[int, ...], bool]


def _crates(document: Any) -> list[_Crate]:
    """(name, version, source, kind, dependencies, root) of every crate, every field checked."""
    if not isinstance(document, dict) or not isinstance(document.get("packages"), list):
        raise _Refused("it has no list of packages")
    packages = document["packages"]
    crates: list[_Crate] = []
    for package in packages:
        if not isinstance(package, dict):
            raise _Refused("a package is not an object")
        name, version = package.get("name"), package.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or not name:
            raise _Refused("a package has no name or version")
        kind = package.get("kind", "runtime")
        if kind not in ("runtime", "build"):
            raise _Refused(f"a package's kind is {shown(str(kind))}")
        dependencies = package.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(
            type(d) is int and 0 <= d < len(packages) and d != len(crates) for d in dependencies
        ):
            raise _Refused("a package's dependencies are not indices of other packages")
        root = package.get("root", False)
        if type(root) is not bool:
            raise _Refused("a package's root is not true or false")
        crates.append((name, version, _source(package.get("source")), str(kind), tuple(dependencies), root))
    return crates


def parse_crates(data: bytes) -> ProgramContents:
    """The crates of a ``.dep-v0`` section's (compressed) bytes; _Refused when they are not
    cargo-auditable's format."""
    try:
        document = json.loads(_inflate(data))
    except (ValueError, RecursionError):
        raise _Refused("it is not JSON") from None
    crates = _crates(document)
    root = next((i for i, crate in enumerate(crates) if crate[5]), None)
    position: dict[int, int] = {}
    packages: list[Package] = []
    main: Package | None = None
    for i, (name, version, source, kind, _, _) in enumerate(crates):
        properties: list[tuple[str, str]] = []
        if source != _CRATES_IO:
            properties.append(("cargo:source", source))
        if kind == "build":
            properties.append(("cargo:kind", "build"))
        package = Package(
            name=name,
            version=version,
            ecosystem="cargo",
            purl=purl.cargo(name, version) if source == _CRATES_IO else "",
            properties=tuple(properties),
        )
        if i == root:
            main, position[i] = package, -1
        else:
            position[i] = len(packages)
            packages.append(package)
    requires = tuple((position[i], position[d]) for i, crate in enumerate(crates) for d in crate[4])
    return ProgramContents(language="rust", main=main, packages=tuple(packages), requires=requires)


def read_rust(read_at: ReadAt, size: int, layout: ElfLayout) -> ProgramContents | None:
    """The crates a Rust program built with ``cargo auditable`` lists; None without the section."""
    section = layout.sections.get(SECTION)
    if section is None:
        return None
    try:
        if not section.in_file or section.offset + section.size > size:
            raise _Refused("it lies beyond the end of the file")
        if section.size > MAX_COMPRESSED:
            raise _Refused(f"it is {section.size} bytes, more than the {MAX_COMPRESSED} zeroimage reads")
        data = read_at(section.offset, section.size)
        if len(data) != section.size:
            raise _Refused("it is cut short")
        return parse_crates(data)
    except _Refused as why:
        warning = f"its {SECTION} section is not read: {why}"
        return ProgramContents(language="rust", warnings=(warning,))
