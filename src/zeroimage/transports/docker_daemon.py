"""``docker-daemon:NAME:TAG``: load the image into a running Docker Engine through its API.

The daemon is the one the Docker CLI would use (:mod:`.docker_host`: ``DOCKER_HOST`` with
``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, or the current Docker context, or the default socket),
and it is asked whether it answers before the build starts. The docker-archive form of the image
is then written to a temporary file (Docker needs the whole archive to load it), streamed to
``POST /images/load``, and its answer read within bounds (:mod:`.docker_client`). The temporary
file is removed whatever happens, an interrupt included; an interrupt during the upload leaves
Docker a cut archive, which it does not load.
"""

from __future__ import annotations

import os
import tempfile

from zeroimage.files import unlink_quietly
from zeroimage.image import Attachments, ImageFormat, ImageGraph, LayerTap, Source, WriteResult
from zeroimage.progress import Reporter
from zeroimage.reference import DOCKER_HUB, Reference
from zeroimage.transports.docker_archive import familiar_name, single_image, write_docker_archive
from zeroimage.transports.docker_client import DockerClient
from zeroimage.transports.docker_host import resolve_endpoint


class DockerDaemonSink:
    fixed_format: ImageFormat | None = None
    needs_layer_files = True
    #: Docker's formats have no place for signatures or SBOMs.
    takes_attachments = False

    def __init__(self, reference: Reference, mtime: int) -> None:
        self.reference = reference
        self.mtime = mtime
        self.description = f"docker-daemon:{familiar_name(reference)}"
        self.client = DockerClient(resolve_endpoint(os.environ), os.environ)
        self.client.ping()  # fail before the build, not after it

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return None

    def layer_sources(self) -> list[Source]:
        return []

    def discard(self) -> None:
        pass  # its temporary archive is removed by write() itself

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        _, manifest = single_image(graph, self.description)
        tls = self.client.endpoint.tls
        if tls is not None and not tls.verify:
            reporter.warn(
                f"DOCKER_TLS is set without DOCKER_TLS_VERIFY: the certificate of the Docker daemon at "
                f"{self.client.where} is not verified (as with the Docker CLI)"
            )
        fd, tmp = tempfile.mkstemp(prefix="zeroimage-load-", suffix=".tar")
        try:
            with os.fdopen(fd, "w+b", buffering=0) as archive:
                write_docker_archive(graph, archive, self.reference, self.mtime, reporter, self.description)
                size = os.fstat(archive.fileno()).st_size
                archive.seek(0)
                name = familiar_name(self.reference)
                self.client.load(archive, size, name, manifest.config.digest, reporter, spellings(self.reference))
        finally:
            unlink_quietly(tmp)
        return [WriteResult(self.description, manifest.config.digest, image_id=True)]  # as Docker shows it


def spellings(reference: Reference) -> list[str]:
    """The names a daemon may give the image loaded under ``reference``'s familiar name (what
    Docker says): its full name (``docker.io/library/app:v1``), and for a Docker Hub name the
    ``localhost/`` one Podman's Docker-compatible API gives a name without a registry."""
    tag = reference.tag or "latest"
    names = [f"{reference.name}:{tag}"]
    if reference.registry == DOCKER_HUB:
        names.append(f"localhost/{familiar_name(reference)}")
    return names
