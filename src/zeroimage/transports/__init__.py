"""Places an image can live, each a source (gives an image graph) and/or a sink (takes one).

Transport names follow skopeo's: ``docker://REF``, ``oci:DIR[:TAG]``, ``oci-archive:PATH[:TAG]``,
``docker-archive:PATH[:NAME:TAG]``, ``docker-daemon:NAME:TAG``. See :mod:`.names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from zeroimage.errors import UsageError
from zeroimage.image import DocumentBudget, Sink, Source
from zeroimage.reference import Reference
from zeroimage.store import BlobStore
from zeroimage.transports.locations import Location, parse_location, parse_output, parse_source
from zeroimage.transports.registry.pool import ClientPool

__all__ = [
    "Location",
    "PullPolicy",
    "TransportOptions",
    "open_sinks",
    "open_source",
    "parse_location",
    "parse_output",
    "parse_source",
]


#: When a registry is asked for a base it was asked for before: always; when the cache lacks
#: what the tag names now (one request resolves the tag); never (offline, from the cache alone).
PullPolicy = Literal["always", "missing", "never"]


@dataclass(frozen=True)
class TransportOptions:
    """What transports need to know beyond a location (from the BuildSpec)."""

    mtime: int = 0
    insecure_registries: tuple[str, ...] = ()
    #: The documents one build reads, bounded in total (one budget per build).
    budget: DocumentBudget = field(default_factory=DocumentBudget)
    #: Where a registry base's documents and layers are kept for the builds to come.
    store: BlobStore | None = None
    pull: PullPolicy = "missing"
    #: The build's registry clients, one per registry, shared by its sources and sinks.
    clients: ClientPool = field(default_factory=ClientPool)

    def close(self) -> None:
        """Close what the build's transports share (its registry clients)."""
        self.clients.close()


def open_source(location: Location, options: TransportOptions) -> Source:
    # Imports are local so that `zeroimage --help` never loads the HTTP stack.
    if location.transport in ("oci", "oci-archive"):
        from zeroimage.transports.oci_layout import LayoutSource

        assert location.path is not None
        if location.transport == "oci":
            return LayoutSource.directory(location.path, location.tag, options.budget)
        return LayoutSource.archive(location.path, location.tag, options.budget)
    if location.transport == "docker-archive":
        from zeroimage.transports.docker_archive import DockerArchiveSource

        assert location.path is not None
        return DockerArchiveSource(location.path, location.reference, options.budget)
    if location.transport == "docker":
        from zeroimage.transports.registry import RegistrySource

        assert location.reference is not None
        return RegistrySource(
            location.reference,
            options.insecure_registries,
            clients=options.clients,
            budget=options.budget,
            store=options.store,
            pull=options.pull,
        )
    raise UsageError(f"{location.transport}: cannot be read from; use docker://, oci:, oci-archive: or docker-archive:")


def open_sinks(locations: Sequence[Location], options: TransportOptions) -> list[Sink]:
    """A sink for each output, in the order given; the references of one registry share one sink,
    which uploads a new layer once and tags or mounts it for the others."""
    order: list[Location | str] = []  # a location, or a registry standing for all its references
    by_registry: dict[str, list[Reference]] = {}
    for location in locations:
        if location.reference is not None and location.is_registry:
            registry = location.reference.registry
            if registry not in by_registry:
                by_registry[registry] = []
                order.append(registry)
            by_registry[registry].append(location.reference)
        else:
            order.append(location)
    sinks: list[Sink] = []
    for item in order:
        if isinstance(item, str):
            from zeroimage.transports.registry import RegistrySink

            sinks.append(
                RegistrySink(
                    by_registry[item], options.insecure_registries, clients=options.clients, budget=options.budget
                )
            )
        else:
            sinks.append(_open_sink(item, options))
    return sinks


def _open_sink(location: Location, options: TransportOptions) -> Sink:
    if location.transport == "oci-archive":
        from zeroimage.transports.oci_layout import OciArchiveSink

        assert location.path is not None
        return OciArchiveSink(location.path, location.tag or "latest", options.mtime)
    if location.transport == "oci":
        from zeroimage.transports.oci_layout import OciDirSink

        assert location.path is not None
        return OciDirSink(location.path, location.tag or "latest")
    if location.transport == "docker-archive":
        from zeroimage.transports.docker_archive import DockerArchiveSink

        assert location.path is not None
        return DockerArchiveSink(location.path, location.reference, options.mtime)
    if location.transport == "docker-daemon":
        from zeroimage.transports.docker_daemon import DockerDaemonSink

        assert location.reference is not None
        return DockerDaemonSink(location.reference, options.mtime)
    raise UsageError(f"unknown output transport {location.transport!r}")
