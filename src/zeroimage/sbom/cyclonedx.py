"""CycloneDX 1.6 JSON of an image (see :mod:`zeroimage.sbom.graph` for what it holds).

``metadata.component`` is the image (type container), its base an ancestor in its pedigree;
``components`` is flat — the operating system (type operating-system), each program
(application, with its file's hashes and its path as evidence), each module, crate or distro
package (library) and each file the build added (file) — and ``dependencies`` says what holds
or needs what, as Trivy writes and reads it. Other facts are properties ``zeroimage:…``,
``go:build:…``, ``cargo:…``.

Deterministic: the timestamp is the image's; the serial number a UUID derived from the image
digest and a hash of the document's own content; components and dependencies sorted.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from zeroimage.sbom.graph import Element, Graph, describe, dump, timestamp
from zeroimage.sbom.licenses import spdx_expression
from zeroimage.sbom.model import ImageDescription

_ALGORITHMS = {
    "sha1": "SHA-1",
    "sha256": "SHA-256",
    "sha384": "SHA-384",
    "sha512": "SHA-512",
    "md5": "MD5",
    "blake3": "BLAKE3",
}
_TYPES = {
    "image": "container",
    "base": "container",
    "os": "operating-system",
    "application": "application",
    "library": "library",
    "file": "file",
}
_NAMESPACE = uuid.UUID("5d2c7e0a-8f3b-5a1e-b6c4-2e9d1f7a3c58")  # zeroimage's, for uuid5


def _hashes(checksums: Mapping[str, str]) -> list[dict[str, str]]:
    return [
        {"alg": _ALGORITHMS[algorithm], "content": value}
        for algorithm, value in sorted(checksums.items())
        if algorithm in _ALGORITHMS
    ]


def _licenses(declared: tuple[str, ...]) -> list[dict[str, Any]]:
    """One SPDX expression when every declaration is one; else each declaration by name."""
    expressions = [spdx_expression(text) for text in declared]
    if all(e is not None for e in expressions):
        joined = " AND ".join(e if len(expressions) == 1 else f"({e})" for e in expressions if e is not None)
        return [{"expression": joined}]
    return [{"license": {"name": text}} for text in declared]


def _ref(element: Element) -> str:
    return f"{element.kind}-{element.key}"


def _component(element: Element) -> dict[str, Any]:
    package = element.package
    out: dict[str, Any] = {"type": _TYPES[element.kind], "bom-ref": _ref(element)}
    if package is not None and package.supplier:
        out["supplier"] = {"name": package.supplier}
    out["name"] = element.name
    if element.version:
        out["version"] = element.version
    checksums = element.file.checksums if element.file is not None else package.checksums if package else {}
    if checksums and (hashes := _hashes(checksums)):
        out["hashes"] = hashes
    if package is not None and package.licenses:
        out["licenses"] = _licenses(package.licenses)
    if element.cpe:
        out["cpe"] = element.cpe
    if element.purl:
        out["purl"] = element.purl
    properties = [*element.properties, *(package.properties if package is not None else ())]
    if package is not None and package.source:
        properties.append(("zeroimage:source-package", package.source))
        if package.source_version:
            properties.append(("zeroimage:source-version", package.source_version))
    if element.file is not None:
        properties.append(("zeroimage:size", str(element.file.size)))
    if properties:
        out["properties"] = [{"name": name, "value": value} for name, value in properties]
    if element.kind == "application" and element.file is not None:
        out["evidence"] = {"occurrences": [{"location": element.file.path}]}
    return out


def _document(image: ImageDescription, graph: Graph) -> dict[str, Any]:
    elements = graph.ordered()
    root = _component(graph.image)
    bases = [e for e in elements if e.kind == "base"]
    if bases:
        root["pedigree"] = {"ancestors": [_component(e) for e in bases]}
    needs: dict[str, set[str]] = {}
    for source, relation, target in graph.relations:
        if relation != "DESCENDANT_OF":
            needs.setdefault(_ref(graph.elements[source]), set()).add(_ref(graph.elements[target]))
    metadata: dict[str, Any] = {
        "timestamp": timestamp(image.created),
        "tools": {"components": [{"type": "application", "name": image.tool.name, "version": image.tool.version}]},
        "component": root,
    }
    if graph.warnings:
        metadata["properties"] = [{"name": "zeroimage:not-described", "value": w} for w in sorted(set(graph.warnings))]
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
    }
    document["metadata"] = metadata
    document["components"] = [_component(e) for e in elements if e.kind not in ("image", "base")]
    document["dependencies"] = [{"ref": ref, "dependsOn": sorted(needs[ref])} for ref in sorted(needs)]
    return document


def render_cyclonedx(image: ImageDescription) -> bytes:
    """The CycloneDX 1.6 JSON document of ``image``: the same bytes for the same description."""
    document = _document(image, describe(image))
    content = hashlib.sha256(dump(document)).hexdigest()  # of the document without its serial number
    serial = f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'cyclonedx {image.digest} {content}')}"
    header = ("$schema", "bomFormat", "specVersion")  # the serial number follows them
    return dump({**{k: document.pop(k) for k in header}, "serialNumber": serial, **document})
