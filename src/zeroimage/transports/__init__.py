"""Places an image can live, each a source (gives an image graph) and/or a sink (takes one).

Transport names follow skopeo's: ``docker://REF``, ``oci:DIR[:TAG]``, ``oci-archive:PATH[:TAG]``,
``docker-archive:PATH[:NAME:TAG]``, ``docker-daemon:NAME:TAG``. See :mod:`.names`.
"""

from __future__ import annotations

from dataclasses import dataclass

from zeroimage.errors import UsageError
from zeroimage.image import Sink, Source
from zeroimage.transports.names import Location, parse_location

__all__ = ["Location", "TransportOptions", "open_sink", "open_source", "parse_location"]


@dataclass(frozen=True)
class TransportOptions:
    """What transports need to know beyond a location (from the BuildSpec)."""

    mtime: int = 0
    insecure_registries: tuple[str, ...] = ()


def open_source(location: Location, options: TransportOptions) -> Source:
    # Imports are local so that `zeroimage --help` never loads the HTTP stack.
    if location.transport in ("oci", "oci-archive"):
        from zeroimage.transports.oci_layout import LayoutSource

        assert location.path is not None
        if location.transport == "oci":
            return LayoutSource.directory(location.path, location.tag)
        return LayoutSource.archive(location.path, location.tag)
    if location.transport == "docker-archive":
        from zeroimage.transports.docker_archive import DockerArchiveSource

        assert location.path is not None
        return DockerArchiveSource(location.path, location.reference)
    if location.transport == "docker":
        from zeroimage.transports.registry import RegistrySource

        assert location.reference is not None
        return RegistrySource(location.reference, options.insecure_registries)
    raise UsageError(f"{location.transport}: cannot be read from; use docker://, oci:, oci-archive: or docker-archive:")


def open_sink(location: Location, options: TransportOptions) -> Sink:
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
    if location.transport == "docker":
        from zeroimage.transports.registry import RegistrySink

        assert location.reference is not None
        return RegistrySink([location.reference], options.insecure_registries)  # type: ignore[return-value]
    raise UsageError(f"unknown output transport {location.transport!r}")
