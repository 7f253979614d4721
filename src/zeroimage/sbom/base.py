"""What a base image holds, as its own package databases say: the distribution (os-release) and
its packages — dpkg's ``var/lib/dpkg/status`` (Debian, Ubuntu), distroless's
``var/lib/dpkg/status.d/*`` (one paragraph a file), Alpine's ``lib/apk/db/installed``.

The files come from the base's listing (:mod:`zeroimage.rootfs` keeps os-release whole and the
databases compacted to the fields read here), whiteouts honoured and symlinks followed. A
database too large to have been kept, an entry without a name or a version, more than
:data:`MAX_PACKAGES` packages: each is a warning for the caller to report, never an error.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Mapping

from zeroimage.rootfs import (
    APK,
    APK_INSTALLED,
    DPKG,
    DPKG_STATUS,
    DPKG_STATUS_DIR,
    OS_RELEASE,
    Database,
    FileTree,
    is_status_part,
)
from zeroimage.sbom import purl
from zeroimage.sbom.model import BaseContents, Distro, Package

MAX_PACKAGES = 100_000
#: dpkg states whose files are (at least partly) on disk; "not-installed" and "config-files" are not.
_GONE = ("not-installed", "config-files")


def _unquote(value: str) -> str:
    """An os-release value: shell-like, in double or single quotes or none."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        out, i = [], 0
        while i < len(value):
            if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in '"\\$`':
                i += 1
            out.append(value[i])
            i += 1
        return "".join(out)
    return value


def parse_os_release(text: str) -> Distro | None:
    """The distribution an os-release file names; None without an ID."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and key and not key.startswith("#"):
            fields[key] = _unquote(value)
    if not fields.get("ID"):
        return None
    return Distro(
        id=fields["ID"],
        version_id=fields.get("VERSION_ID", ""),
        version_codename=fields.get("VERSION_CODENAME", ""),
        pretty_name=fields.get("PRETTY_NAME", ""),
        id_like=tuple(fields.get("ID_LIKE", "").split()),
    )


def paragraphs(text: str, *, fold: bool) -> Iterator[dict[str, str]]:
    """The paragraphs of a dpkg or apk database: ``Field: value`` (``F:value``) lines, a blank
    line between paragraphs; field names lowercased when ``fold`` (dpkg's are case-insensitive).
    Continuation lines are skipped (no field read here has them)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
            continue
        if line[:1] in (" ", "\t"):
            continue
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.lower() if fold else key, value.strip())
    if fields:
        yield fields


def _source(field: str, version: str) -> tuple[str, str]:
    """dpkg's ``Source: NAME`` or ``Source: NAME (VERSION)``: the name, and the version (the
    binary package's when not given)."""
    name, _, rest = field.partition(" ")
    rest = rest.strip()
    if rest.startswith("(") and rest.endswith(")"):
        return name, rest[1:-1].strip()
    return name, version


def _upstream(name: str, source: str, source_version: str, version: str) -> str:
    """The purl's ``upstream`` qualifier (syft's): the source package, with its version when it
    differs from the binary's; "" when the package is its own source."""
    if not source or (source == name and source_version == version):
        return ""
    return f"{source}@{source_version}" if source_version and source_version != version else source


#: A database's paragraph (its fields) as a package, given the vendor and the distro qualifier
#: of its purl; None for a package whose files are not installed.
PackageOf = Callable[[Mapping[str, str], str, str], Package | None]


class _Reader:
    def __init__(self, tree: FileTree) -> None:
        self.tree = tree
        self.warnings: list[str] = []
        self.packages: dict[str, Package] = {}  # by purl
        self.skipped = 0
        self.full = False

    def text(self, path: str) -> str | None:
        """A database's kept content; None, with a warning, when it exists but was not kept."""
        found = self.tree.resolve(path)
        if found is None or found[1].kind != "file":
            return None
        if found[1].content is None:
            self.warnings.append(f"/{path} is larger than zeroimage reads: its packages are not described")
        return found[1].content

    def read(self, text: str, database: Database, package_of: PackageOf, vendor: str, distro: str) -> None:
        """The packages of one database's ``text``: each paragraph as ``package_of`` makes it,
        one without a name or a version counted (:attr:`skipped`), the first of each purl kept."""
        for fields in paragraphs(text, fold=database.fold):
            package = package_of(fields, vendor, distro)
            if package is None:
                continue
            if not package.name or not package.version:
                self.skipped += 1
            elif package.purl in self.packages:
                continue
            elif len(self.packages) >= MAX_PACKAGES:
                self.full = True
            else:
                self.packages[package.purl] = package


def _distro_qualifier(distro: Distro | None) -> str:
    """``debian-12``, as syft and Grype write purls' distro qualifier."""
    if distro is None:
        return ""
    return f"{distro.id}-{distro.version_id}" if distro.version_id else distro.id


def _dpkg_package(fields: Mapping[str, str], vendor: str, distro: str) -> Package | None:
    status = fields.get("status", "").split()
    if status and status[-1] in _GONE:
        return None
    name, version, arch = fields.get("package", ""), fields.get("version", ""), fields.get("architecture", "")
    source, source_version = _source(fields["source"], version) if fields.get("source") else ("", "")
    return Package(
        name=name,
        version=version,
        ecosystem="deb",
        purl=purl.deb(
            vendor, name, version, arch=arch, distro=distro, upstream=_upstream(name, source, source_version, version)
        ),
        supplier=fields.get("maintainer", ""),
        source=source,
        source_version=source_version if source else "",
    )


def _apk_package(fields: Mapping[str, str], vendor: str, distro: str) -> Package:
    name, version, arch, origin = fields.get("P", ""), fields.get("V", ""), fields.get("A", ""), fields.get("o", "")
    return Package(
        name=name,
        version=version,
        ecosystem="apk",
        purl=purl.apk(vendor, name, version, arch=arch, distro=distro, upstream=origin if origin != name else ""),
        licenses=(fields["L"],) if fields.get("L") else (),
        supplier=fields.get("m", ""),
        source=origin,
    )


def read_base(tree: FileTree) -> BaseContents:
    """The distribution and packages of the filesystem ``tree`` (a base's, see
    :func:`zeroimage.rootfs.base_tree`)."""
    reader = _Reader(tree)
    distro = None
    for path in OS_RELEASE:
        text = tree.read_text(path)
        if text is not None:
            distro = parse_os_release(text)
            break
    qualifier = _distro_qualifier(distro)
    vendor = distro.id if distro is not None else ""
    status = reader.text(DPKG_STATUS)
    if status is not None:
        reader.read(status, DPKG, _dpkg_package, vendor or "debian", qualifier)
    found = tree.resolve(DPKG_STATUS_DIR)
    if found is not None and found[1].kind == "dir":
        for path in sorted(tree.children(found[0])):
            if is_status_part(posixpath.basename(path)) and (text := reader.text(path)) is not None:
                reader.read(text, DPKG, _dpkg_package, vendor or "debian", qualifier)
    installed = reader.text(APK_INSTALLED)
    if installed is not None:
        reader.read(installed, APK, _apk_package, vendor or "alpine", qualifier)
    if reader.skipped:
        reader.warnings.append(f"{reader.skipped} entries of the base's package databases have no name or version")
    if reader.full:
        reader.warnings.append(f"the base lists more than {MAX_PACKAGES} packages: only the first are described")
    packages = sorted(reader.packages.values(), key=lambda p: (p.ecosystem or "", p.name, p.version, p.purl))
    return BaseContents(distro=distro, packages=tuple(packages), warnings=tuple(reader.warnings))
