"""Image references as Docker reads them: ``[registry/]repository[:tag][@digest]``.

``busybox`` is ``docker.io/library/busybox:latest``; the first path component names a registry
only if it contains ``.`` or ``:`` or is ``localhost``. Requests for docker.io go to
``registry-1.docker.io``, and its credentials are stored under ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from zeroimage.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CREDENTIAL_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_HOST = re.compile(
    r"^(?:\[[0-9a-fA-F:.]+\]|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*)"
    r"(?::[0-9]{1,5})?$"
)
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def credential_key(self) -> str:
        return DOCKER_HUB_CREDENTIAL_KEY if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _fail(text: str, why: str) -> InvalidReference:
    return InvalidReference(f"invalid reference {text[:200]!r}: {why}")


def parse_reference(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse a Docker-style reference; InvalidReference names the rule a bad one breaks."""
    if not isinstance(text, str) or not text:
        raise _fail(str(text), "it is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise _fail(text, "it contains white space")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        if not _DIGEST.match(digest):
            raise _fail(text, "the digest must be sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")
    registry, path = DOCKER_HUB, remainder
    first, slash, rest = remainder.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST.match(first):
            raise _fail(text, f"{first!r} is not a valid registry host[:port]")
        registry, path = first.lower(), rest
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.match(tag):
            raise _fail(text, "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    if not path:
        raise _fail(text, "the repository name is empty")
    components = path.split("/")
    for component in components:
        if not component:
            raise _fail(text, "the repository name has an empty path component")
        if not _COMPONENT.match(component):
            if _COMPONENT.match(component.lower()):
                raise _fail(text, "repository name must be lowercase")
            raise _fail(
                text,
                f"path component {component[:60]!r} must be lowercase letters and digits, "
                "separated by '.', '_', '__' or '-'",
            )
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        raise _fail(text, f"the name is longer than {MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag, digest)
