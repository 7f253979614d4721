"""What an image holds, as one graph both SBOM formats are written from: elements (the image,
its base, the distribution, its packages, each program, the modules compiled into it, the files
the build added) and the relations between them.

The shape is the one scanners read (Trivy writes it, and reads elements by it): the image
CONTAINS the operating system, which CONTAINS the base's packages; the image CONTAINS each
program (an application), which CONTAINS its file and each module or crate compiled in, and
DEPENDS_ON them where the program says how (Rust's crate graph); the image CONTAINS each file
the build added, and is a DESCENDANT_OF its base. A Go program also contains Go's standard
library (``stdlib``, at the toolchain's version, with golang:go's CPE: how syft and Grype match
Go's own vulnerabilities).

Every element's identifier is a hash of everything written about it, so the same inputs give
the same identifiers, and identical elements (one module in two programs) are one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from zeroimage.sbom import purl
from zeroimage.sbom.model import File, ImageDescription, Package, Program, check_checksums

Kind = Literal["image", "base", "os", "application", "library", "file"]
Relation = Literal["CONTAINS", "DEPENDS_ON", "DESCENDANT_OF"]
#: The order elements are written in, by kind.
KIND_ORDER: Mapping[Kind, int] = {"image": 0, "base": 1, "os": 2, "application": 3, "library": 4, "file": 5}
_GO_VERSION = re.compile(r"go([0-9]+(?:\.[0-9]+)*(?:(?:rc|beta)[0-9]+)?)")


@dataclass(frozen=True)
class Element:
    """One thing an SBOM names."""

    kind: Kind
    name: str
    version: str = ""
    package: Package | None = None  # what it says of itself (library, application, os package)
    file: File | None = None  # the file it is (a file) or was read from (an application)
    purl: str = ""
    cpe: str = ""
    properties: tuple[tuple[str, str], ...] = ()
    key: str = field(default="", compare=False)


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The names of a dataclass's fields, in order; None for a class that is not one."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None
    return _FIELD_NAMES[cls]


def _plain(value: object) -> object:
    """``value`` as JSON holds it: a dataclass as a mapping of every field it has, any mapping
    as a dict, a tuple as a list (dataclasses.asdict would copy every string, and fails on a
    mapping that is not a dict)."""
    if value is None or isinstance(value, str | int):
        return value
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _canonical(element: Element) -> str:
    """Everything written about ``element`` (every field of it, of its package and of its file,
    its key aside), as text."""
    return json.dumps(_plain(replace(element, key="")), sort_keys=True, ensure_ascii=True)


@dataclass
class Graph:
    """Elements by key, and relations (from key, relation, to key); made with its image, the
    first element."""

    root: InitVar[Element]
    image: Element = field(init=False)
    elements: dict[str, Element] = field(default_factory=dict)
    relations: set[tuple[str, Relation, str]] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self, root: Element) -> None:
        self.image = self.elements[self.add(root)]

    def add(self, element: Element) -> str:
        key = hashlib.sha256(_canonical(element).encode()).hexdigest()[:32]
        if key not in self.elements:
            self.elements[key] = replace(element, key=key)
        return key

    def relate(self, source: str, relation: Relation, target: str) -> None:
        if source != target:
            self.relations.add((source, relation, target))

    def ordered(self) -> list[Element]:
        """The elements, in the order they are written: by kind, then name, version and key."""
        return sorted(self.elements.values(), key=lambda e: (KIND_ORDER[e.kind], e.name, e.version, e.key))


def dump(document: Mapping[str, Any]) -> bytes:
    """A document's bytes, as both formats write them: indented JSON, ASCII (every other
    character escaped), a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=True).encode() + b"\n"


def timestamp(created: str) -> str:
    """An RFC 3339 time as both formats want it: UTC, to the second, ``Z``. ValueError when it is not one."""
    when = datetime.fromisoformat(created)
    if when.tzinfo is None:
        raise ValueError(f"the time {created!r} has no time zone")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stdlib_cpe(toolchain: str) -> str:
    """golang:go's CPE at a toolchain's version ("go1.19.8" → 1.19.8); "" for another version."""
    match = _GO_VERSION.fullmatch(toolchain)
    return f"cpe:2.3:a:golang:go:{match.group(1)}:*:*:*:*:*:*:*" if match else ""


def _library(package: Package) -> Element:
    return Element("library", package.name, package.version, package=package, purl=package.purl)


def _program(graph: Graph, image: str, program: Program) -> None:
    contents = program.contents
    main = contents.main
    properties: list[tuple[str, str]] = []
    if contents.language:
        properties.append(("zeroimage:language", contents.language))
    if contents.toolchain:
        properties.append(("zeroimage:toolchain", contents.toolchain))
    properties += [(f"{contents.language or 'build'}:build:{key}", value) for key, value in contents.settings]
    application = graph.add(
        Element(
            "application",
            main.name if main is not None else program.file.path,
            main.version if main is not None else "",
            package=main,
            file=program.file,
            purl=main.purl if main is not None else "",
            properties=tuple(properties),
        )
    )
    graph.relate(image, "CONTAINS", application)
    keys = [graph.add(_library(package)) for package in contents.packages]
    for key in keys:
        graph.relate(application, "CONTAINS", key)
    for source, target in contents.requires:
        if -1 <= source < len(keys) and -1 <= target < len(keys):
            graph.relate(
                application if source < 0 else keys[source], "DEPENDS_ON", application if target < 0 else keys[target]
            )
    if contents.language == "go" and contents.toolchain:
        stdlib = Element("library", "stdlib", contents.toolchain, cpe=stdlib_cpe(contents.toolchain))
        graph.relate(application, "CONTAINS", graph.add(stdlib))
    graph.warnings += [f"{program.file.path}: {warning}" for warning in contents.warnings]


def describe(image: ImageDescription) -> Graph:
    """The graph of ``image``; ValueError for a file checksum that is not one (the caller's)."""
    for file in (*image.files, *(p.file for p in image.programs)):
        check_checksums(file.checksums, f"file {file.path}")
    arch = image.platform.architecture
    root = Element(
        "image",
        image.name,
        image.digest,
        purl=purl.oci(image.repository, image.digest, arch=arch, tag=image.tag) if image.repository else "",
        properties=(("zeroimage:platform", str(image.platform)),),
    )
    graph = Graph(root)
    key = graph.image.key
    base = image.base
    if base is not None:
        base_purl = purl.oci(base.repository, base.digest, arch=arch, tag=base.tag) if base.repository else ""
        graph.relate(key, "DESCENDANT_OF", graph.add(Element("base", base.name, base.digest, purl=base_purl)))
        holder = key
        distro = base.contents.distro
        if distro is not None:
            properties = (("zeroimage:pretty-name", distro.pretty_name),) if distro.pretty_name else ()
            holder = graph.add(Element("os", distro.id, distro.version_id, properties=properties))
            graph.relate(key, "CONTAINS", holder)
        for package in base.contents.packages:
            graph.relate(holder, "CONTAINS", graph.add(_library(package)))
        graph.warnings += base.contents.warnings
    for program in image.programs:
        _program(graph, key, program)
    programs = {p.file.path for p in image.programs}
    for file in image.files:
        if file.path not in programs:
            graph.relate(key, "CONTAINS", graph.add(Element("file", file.path, file=file)))
    return graph
