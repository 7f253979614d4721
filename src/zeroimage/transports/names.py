"""Transport names, as skopeo spells them, parsed into a :class:`Location`.

    docker://REF                      a registry (a bare REF means this for --from and --push)
    oci:DIR[:TAG]                     an OCI layout directory
    oci-archive:PATH[:TAG]            an OCI layout in a tar (a bare PATH means this for -o)
    docker-archive:PATH[:NAME:TAG]    what ``docker save`` writes / ``docker load`` reads
    docker-daemon:NAME:TAG            a running Docker Engine (output only)

As in skopeo, the path ends at the first ``:`` after the transport name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zeroimage.errors import InvalidReference
from zeroimage.reference import Reference, parse_reference

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "docker-daemon")


@dataclass(frozen=True)
class Location:
    transport: str
    path: Path | None = None
    tag: str | None = None
    reference: Reference | None = None

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.reference}"
        if self.transport == "docker-daemon":
            return f"docker-daemon:{self.tag}"
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")

    @property
    def is_registry(self) -> bool:
        return self.transport == "docker"


def parse_location(text: str, default: str) -> Location:
    """Parse ``text``; a string with no known transport prefix uses ``default``."""
    transport, sep, rest = text.partition(":")
    if text.startswith("docker://"):
        transport, rest = "docker", text[len("docker://") :]
    elif not sep or transport not in TRANSPORTS:
        transport, rest = default, text
    if not rest:
        raise InvalidReference(f"invalid location {text!r}: nothing after '{transport}:'")
    if transport == "docker":
        return Location("docker", reference=parse_reference(rest))
    if transport == "docker-daemon":
        reference = parse_reference(rest)
        if reference.digest:
            raise InvalidReference(f"invalid location {text!r}: docker-daemon: needs NAME:TAG, not a digest")
        return Location("docker-daemon", tag=str(reference), reference=reference)
    path, _, tag = rest.partition(":")
    if not path:
        raise InvalidReference(f"invalid location {text!r}: no path")
    if transport == "docker-archive" and tag:
        reference = parse_reference(tag)
        return Location(transport, path=Path(path), tag=str(reference), reference=reference)
    return Location(transport, path=Path(path), tag=tag or None)
