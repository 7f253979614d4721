"""SPDX 2.3 JSON of an image (see :mod:`zeroimage.sbom.graph` for what it holds).

The document DESCRIBES the image (a package of purpose CONTAINER); each element is a package
(purposes OPERATING-SYSTEM, APPLICATION, LIBRARY) with its purl as a PACKAGE-MANAGER external
reference, or a file with its checksums (SHA-1 among them: SPDX 2.3 requires it). A program whose
file comes without a SHA-1 is its package's ``packageFileName`` and ``checksums`` instead. SPDX
identifiers begin as Trivy's do (``SPDXRef-OperatingSystem-``, ``-Application-``, ``-Package-``,
``-File-``), which is how Trivy tells them apart. Other facts (build settings, replacements)
are annotations ``NAME: VALUE``, as Trivy writes them. A package that contains files has
``filesAnalyzed`` true and their verification code; others false.

Deterministic: the creation time is the image's; the namespace is derived from the image
digest and a hash of the document's own content.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from zeroimage.sbom.graph import Element, Graph, describe, dump, timestamp
from zeroimage.sbom.licenses import license_ref, spdx_expression
from zeroimage.sbom.model import File, ImageDescription

_ALGORITHMS = {
    "sha1": "SHA1",
    "sha224": "SHA224",
    "sha256": "SHA256",
    "sha384": "SHA384",
    "sha512": "SHA512",
    "md5": "MD5",
    "blake3": "BLAKE3",
}
_PREFIX = {
    "image": "ContainerImage",
    "base": "BaseImage",
    "os": "OperatingSystem",
    "application": "Application",
    "library": "Package",
    "file": "File",
}
_PURPOSE = {
    "image": "CONTAINER",
    "base": "CONTAINER",
    "os": "OPERATING-SYSTEM",
    "application": "APPLICATION",
    "library": "LIBRARY",
}
_NAMESPACE = uuid.UUID("0f3a3c9e-52f4-5c57-9d0b-7a1f0e6c2b11")  # zeroimage's, for uuid5
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f()]+")


def _checksums(checksums: dict[str, str] | Any) -> list[dict[str, str]]:
    return [
        {"algorithm": _ALGORITHMS[algorithm], "checksumValue": value}
        for algorithm, value in sorted(checksums.items())
        if algorithm in _ALGORITHMS
    ]


def _supplier(text: str) -> str:
    """``Organization: NAME (EMAIL)`` from a maintainer's ``NAME <EMAIL>`` (Trivy's choice: a
    database does not say whether it is a person or a team), control characters and
    parentheses turned into spaces so that readers parse it as one actor."""
    name, _, rest = text.partition("<")
    email = rest.partition(">")[0].strip() if rest else ""
    name = " ".join(_CONTROL.sub(" ", name).split())
    email = " ".join(_CONTROL.sub(" ", email).split())
    if not name and not email:
        return ""
    return f"Organization: {name or email}" + (f" ({email})" if email and name else "")


def _verification_code(files: list[File]) -> dict[str, str]:
    """SPDX's package verification code: SHA-1 of the files' sorted SHA-1s, concatenated."""
    digest = hashlib.sha1("".join(sorted(f.checksums["sha1"] for f in files)).encode(), usedforsecurity=False)
    return {"packageVerificationCodeValue": digest.hexdigest()}


class _Writer:
    def __init__(self, image: ImageDescription, graph: Graph) -> None:
        self.graph = graph
        self.created = timestamp(image.created)
        self.tool = f"Tool: {image.tool.name}-{image.tool.version}"
        self.ids = {e.key: f"SPDXRef-{_PREFIX[e.kind]}-{e.key}" for e in graph.elements.values()}
        self.licenses: dict[str, dict[str, str]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.relationships: set[tuple[str, str, str]] = set()
        self.contained: dict[str, list[File]] = {}

    def annotation(self, name: str, value: str) -> dict[str, str]:
        return {
            "annotationDate": self.created,
            "annotationType": "OTHER",
            "annotator": self.tool,
            "comment": f"{name}: {value}",
        }

    def declared(self, licenses: tuple[str, ...]) -> str:
        parts = []
        for text in licenses:
            expression = spdx_expression(text)
            if expression is None:
                expression = license_ref(text)
                self.licenses[expression] = {"licenseId": expression, "extractedText": text, "name": text[:200]}
            parts.append(expression if len(licenses) == 1 else f"({expression})")
        return " AND ".join(parts)

    def file(self, key: str, owner: str, file: File) -> None:
        """``file`` as SPDX's file of the element ``key`` (an added file, or the program an
        application was read from: ``SPDXRef-File-`` beside its ``SPDXRef-Application-``),
        which ``owner`` CONTAINS."""
        if "sha1" not in file.checksums:
            raise ValueError(f"file {file.path}: SPDX 2.3 needs its sha1 checksum")
        spdx_id = f"SPDXRef-{_PREFIX['file']}-{key}"
        self.files[spdx_id] = {
            "SPDXID": spdx_id,
            "fileName": "./" + file.path.lstrip("/"),
            "checksums": _checksums(file.checksums),
        }
        self.relationships.add((owner, "CONTAINS", spdx_id))
        self.contained.setdefault(owner, []).append(file)

    def package(self, element: Element) -> dict[str, Any]:
        spdx_id = self.ids[element.key]
        package = element.package
        out: dict[str, Any] = {"SPDXID": spdx_id, "name": element.name}
        if element.version:
            out["versionInfo"] = element.version
        if package is not None and package.supplier and (supplier := _supplier(package.supplier)):
            out["supplier"] = supplier
        out["downloadLocation"] = "NOASSERTION"
        files = self.contained.get(spdx_id, [])
        out["filesAnalyzed"] = bool(files)
        if files:
            out["packageVerificationCode"] = _verification_code(files)
        program = element.file if element.kind == "application" and not files else None
        if program is not None:
            # A program given without SHA-1 (reading a large binary twice over costs a build
            # time): the package of the binary itself, by its file name and checksums.
            out["packageFileName"] = "./" + program.path.lstrip("/")
            out["checksums"] = _checksums(program.checksums)
        elif package is not None and package.checksums:
            out["checksums"] = _checksums(package.checksums)
        if package is not None and package.source:
            out["sourceInfo"] = f"built package from: {package.source} {package.source_version}".rstrip()
        if package is not None and package.licenses:
            out["licenseDeclared"] = self.declared(package.licenses)
        refs = []
        if element.purl:
            refs.append(
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": element.purl}
            )
        if element.cpe:
            refs.append(
                {"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": element.cpe}
            )
        if refs:
            out["externalRefs"] = refs
        out["primaryPackagePurpose"] = _PURPOSE[element.kind]
        properties = [*element.properties, *(package.properties if package is not None else ())]
        if properties:
            out["annotations"] = [self.annotation(name, value) for name, value in properties]
        return out

    def document(self, image: ImageDescription, namespace: str) -> dict[str, Any]:
        graph = self.graph
        elements = graph.ordered()
        for element in elements:  # files first: whether a package contains files decides filesAnalyzed
            if element.kind == "file" and element.file is not None:  # the image holds every added file
                self.file(element.key, self.ids[graph.image.key], element.file)
            elif element.kind == "application" and element.file is not None and "sha1" in element.file.checksums:
                self.file(element.key, self.ids[element.key], element.file)
        packages = [self.package(e) for e in elements if e.kind != "file"]
        for source, relation, target in graph.relations:
            if graph.elements[target].kind != "file":
                self.relationships.add((self.ids[source], relation, self.ids[target]))
        relationships = [("SPDXRef-DOCUMENT", "DESCRIBES", self.ids[graph.image.key]), *sorted(self.relationships)]
        creation: dict[str, Any] = {"created": self.created, "creators": [self.tool]}
        if graph.warnings:
            creation["comment"] = "Not described: " + "; ".join(sorted(set(graph.warnings)))
        document: dict[str, Any] = {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": image.name,
            "documentNamespace": namespace,
            "creationInfo": creation,
            "packages": packages,
        }
        if self.files:
            document["files"] = sorted(self.files.values(), key=lambda f: (f["fileName"], f["SPDXID"]))
        document["relationships"] = [
            {"spdxElementId": source, "relationshipType": relation, "relatedSpdxElement": target}
            for source, relation, target in relationships
        ]
        if self.licenses:
            document["hasExtractedLicensingInfos"] = [self.licenses[k] for k in sorted(self.licenses)]
        return document


def render_spdx(image: ImageDescription) -> bytes:
    """The SPDX 2.3 JSON document of ``image``: the same bytes for the same description."""
    document = _Writer(image, describe(image)).document(image, "")
    content = hashlib.sha256(dump(document)).hexdigest()  # of the document, its namespace empty
    identity = uuid.uuid5(_NAMESPACE, f"spdx {image.digest} {content}")
    digest = image.digest.replace(":", "-")
    document["documentNamespace"] = f"https://spdx.org/spdxdocs/{image.tool.name}/{digest}-{identity}"
    return dump(document)
