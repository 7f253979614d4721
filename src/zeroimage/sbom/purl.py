"""Package URLs, as the purl specification builds them (its "How to build purl string" and
"Character encoding", and the type definitions of golang, cargo, deb, apk and oci).

Every component is UTF-8 and percent-encoded except the letters, digits, ``.-_~`` and the colon
(which the specification never encodes); the namespace is encoded segment by segment;
qualifiers are sorted by key, the empty ones left out. Type rules: golang's namespace and name,
deb's and apk's vendor and name, oci's name are lowercased; cargo has no namespace; a golang
purl needs a namespace (a module path with a ``/``), or there is none.
"""

from __future__ import annotations

from collections.abc import Mapping

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_~:")


def encode(text: str) -> str:
    """``text`` percent-encoded as the purl specification does it (upper-case hex)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode("utf-8", "replace"))


def build(
    type_: str,
    name: str,
    *,
    namespace: str = "",
    version: str = "",
    qualifiers: Mapping[str, str] | None = None,
    subpath: str = "",
) -> str:
    """``pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS#SUBPATH`` from its components (type-specific
    normalisation is the caller's)."""
    text = f"pkg:{type_.lower()}/"
    segments = [s for s in namespace.strip("/").split("/") if s]
    if segments:
        text += "/".join(encode(s) for s in segments) + "/"
    text += encode(name.strip("/"))
    if version:
        text += "@" + encode(version)
    pairs = sorted(f"{key.lower()}={encode(value)}" for key, value in (qualifiers or {}).items() if value)
    if pairs:
        text += "?" + "&".join(pairs)
    parts = [s for s in subpath.strip("/").split("/") if s not in ("", ".", "..")]
    if parts:
        text += "#" + "/".join(encode(s) for s in parts)
    return text


def golang(module: str, version: str) -> str:
    """``pkg:golang/NAMESPACE/NAME@VERSION`` of a Go module: its path split at the last ``/``,
    both lowercased as the golang type requires (the package's name keeps the module's own
    spelling); no version for the main module's ``(devel)``. "" for a path without ``/``,
    which has no namespace and so no valid purl."""
    namespace, slash, name = module.rpartition("/")
    if not slash or not namespace.strip("/") or not name:
        return ""
    if version == "(devel)":
        version = ""
    return build("golang", name.lower(), namespace=namespace.lower(), version=version)


def cargo(name: str, version: str) -> str:
    """``pkg:cargo/NAME@VERSION`` of a crate from crates.io."""
    return build("cargo", name, version=version) if name.strip("/") else ""


def _distro_package(type_: str, vendor: str, name: str, version: str, qualifiers: Mapping[str, str]) -> str:
    if not vendor.strip("/") or not name.strip("/"):
        return ""
    return build(type_, name.lower(), namespace=vendor.lower(), version=version, qualifiers=qualifiers)


def deb(vendor: str, name: str, version: str, *, arch: str = "", distro: str = "", upstream: str = "") -> str:
    """``pkg:deb/VENDOR/NAME@VERSION?arch=…&distro=…&upstream=…`` (``distro`` as syft and Grype
    write it: ``debian-12``; ``upstream``: the source package, ``NAME`` or ``NAME@VERSION``)."""
    return _distro_package("deb", vendor, name, version, {"arch": arch, "distro": distro, "upstream": upstream})


def apk(vendor: str, name: str, version: str, *, arch: str = "", distro: str = "", upstream: str = "") -> str:
    """``pkg:apk/VENDOR/NAME@VERSION?arch=…&distro=…&upstream=…``."""
    return _distro_package("apk", vendor, name, version, {"arch": arch, "distro": distro, "upstream": upstream})


def oci(repository: str, digest: str, *, arch: str = "", tag: str = "") -> str:
    """``pkg:oci/NAME@DIGEST?arch=…&repository_url=…&tag=…`` of an image: NAME is the last part
    of its repository, lowercased; ``repository_url`` the repository (``registry/path``)."""
    name = repository.rstrip("/").rpartition("/")[2].lower()
    if not name or not digest:
        return ""
    return build("oci", name, version=digest, qualifiers={"arch": arch, "repository_url": repository, "tag": tag})
