"""Image references as Docker reads them: ``[registry/]repository[:tag][@digest]``.

``busybox`` is ``docker.io/library/busybox:latest``; the first path component names a registry
only if it contains ``.`` or ``:`` or is ``localhost`` (so ``[::1]:5000`` does too). Requests for
docker.io go to ``registry-1.docker.io``; its credentials are stored under ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from zeroimage.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CREDENTIAL_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
MAX_NAME_LENGTH = 255

# docker/distribution's grammar. re.ASCII: Go's \w is [0-9A-Za-z_], Python's is all of Unicode.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"(?:\[[a-fA-F0-9:]+\]|{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*)(?::[0-9]{{1,5}})?")
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``registry`` is ``docker.io`` for Docker Hub, else ``host[:port]`` (host
    lowercased); ``repository`` is the path (``library/busybox``). Tag and digest may both be set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return api_host_of(self.registry)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag``, without a digest."""
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


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise _fail(text, "a digest is ALGORITHM:HEX, such as sha256:<64 lowercase hex digits>")
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise _fail(text, f"unsupported digest algorithm {algorithm[:40]!r} (use sha256 or sha512)")
    if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
        raise _fail(text, f"a {algorithm} digest is exactly {length} lowercase hex digits")


def parse_reference(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse a Docker-style reference; InvalidReference names the input and the rule it breaks.

    The tag is ``default_tag`` only when the input gives neither a tag nor a digest.
    """
    if not isinstance(text, str) or not text:
        raise _fail(str(text), "it is empty")
    if any(c.isspace() for c in text):
        raise _fail(text, "it contains white space")
    if _IMAGE_ID.fullmatch(text):
        raise _fail(text, "a repository name cannot be 64 hexadecimal digits (that is an image ID)")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        _check_digest(text, digest)
    registry, path = DOCKER_HUB, remainder
    first, slash, rest = remainder.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST.fullmatch(first):
            raise _fail(text, f"{first[:100]!r} is not a valid registry HOST[:PORT]")
        registry, path = first.lower(), rest
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
    tag = None
    colon = path.rfind(":")
    if colon > path.rfind("/"):
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _fail(text, "a tag is 1 to 128 ASCII letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    if not path:
        raise _fail(text, "the repository name is empty")
    components = path.split("/")
    for component in components:
        if not component:
            raise _fail(text, "the repository name has an empty path component")
        if not _COMPONENT.fullmatch(component):
            if _COMPONENT.fullmatch(component.lower()):
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
        if not _TAG.fullmatch(default_tag):
            raise _fail(text, f"the default tag {default_tag[:200]!r} is not a valid tag")
        tag = default_tag
    return Reference(registry, path, tag, digest)


def parse_registry(text: str) -> str:
    """A registry as ``docker login`` takes it (``https://host:port/``, ``host``, ``docker.io``),
    normalised to how references name it (``docker.io`` for Docker Hub)."""
    value = text.strip()
    for prefix in ("https://", "http://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    value = value.split("/", 1)[0].lower()
    if not value or not _HOST.fullmatch(value):
        raise InvalidReference(f"invalid registry {text[:200]!r}: expected HOST[:PORT]")
    return DOCKER_HUB if value in _HUB_ALIASES else value


def api_host_of(registry: str) -> str:
    """The host that serves the registry API: ``registry-1.docker.io`` for Docker Hub."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry
