"""``docker-daemon:NAME:TAG``: load the image into a running Docker Engine through its API.

The docker-archive form of the image is written to a temporary file (Docker needs the whole
archive to load it) and streamed to ``POST /images/load`` on ``DOCKER_HOST`` or the default
socket ``/var/run/docker.sock``. The temporary file is removed whatever happens.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from zeroimage.errors import NetworkError, RegistryError, UsageError
from zeroimage.image import ImageFormat, ImageGraph, LayerTap, Source, WriteResult
from zeroimage.progress import Reporter
from zeroimage.reference import Reference
from zeroimage.transports.docker_archive import familiar_name, single_image, write_docker_archive
from zeroimage.transports.http import httpx

DEFAULT_SOCKET = "/var/run/docker.sock"


def _endpoint() -> tuple[str, str | None]:
    """(base URL, unix socket path or None) from DOCKER_HOST."""
    host = os.environ.get("DOCKER_HOST", "") or f"unix://{DEFAULT_SOCKET}"
    if host.startswith("unix://"):
        return "http://docker", host[len("unix://") :]
    if host.startswith("tcp://"):
        return "http://" + host[len("tcp://") :], None
    raise UsageError(f"DOCKER_HOST={host!r} is not supported: use unix:///path or tcp://host:port")


class DockerDaemonSink:
    fixed_format: ImageFormat | None = None
    needs_layer_files = True

    def __init__(self, reference: Reference, mtime: int) -> None:
        self.reference = reference
        self.mtime = mtime
        self.description = f"docker-daemon:{familiar_name(reference)}"
        self._ping()  # fail before the build, not after it

    def _client(self) -> httpx.Client:
        base, socket = _endpoint()
        transport = httpx.HTTPTransport(uds=socket) if socket else httpx.HTTPTransport()
        return httpx.Client(transport=transport, base_url=base, timeout=httpx.Timeout(30, read=300))

    def _ping(self) -> None:
        base, socket = _endpoint()
        with self._client() as client:
            try:
                client.get("/_ping").raise_for_status()
            except httpx.HTTPError as exc:
                where = socket or base
                raise NetworkError(
                    f"no Docker daemon answers at {where} ({type(exc).__name__}); start Docker or set DOCKER_HOST"
                ) from None

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return None

    def layer_sources(self) -> list[Source]:
        return []

    def discard(self) -> None:
        pass  # its temporary archive is removed by write() itself

    def write(self, graph: ImageGraph, reporter: Reporter) -> list[WriteResult]:
        _, manifest = single_image(graph, self.description)
        base, socket = _endpoint()
        where = socket or base
        fd, tmp = tempfile.mkstemp(prefix="zeroimage-load-", suffix=".tar")
        try:
            with os.fdopen(fd, "w+b", buffering=0) as out:
                write_docker_archive(graph, out, self.reference, self.mtime, reporter, self.description)
            size = Path(tmp).stat().st_size
            with self._client() as client:
                try:
                    with (
                        open(tmp, "rb") as body,
                        client.stream(
                            "POST",
                            "/images/load?quiet=1",
                            content=_chunks(body),
                            headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
                        ) as response,
                    ):
                        text = response.read().decode(errors="replace")
                except httpx.TransportError as exc:
                    raise NetworkError(
                        f"no Docker daemon answers at {where} ({type(exc).__name__}); start Docker or set DOCKER_HOST"
                    ) from None
        finally:
            os.unlink(tmp)
        if response.status_code != 200:
            raise RegistryError(f"Docker daemon at {where} refused the image: HTTP {response.status_code} {text[:200]}")
        for line in text.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("error"):
                raise RegistryError(f"Docker daemon at {where} refused the image: {str(message['error'])[:200]}")
        return [WriteResult(self.description, manifest.config.digest, image_id=True)]  # as Docker shows it


def _chunks(body: object) -> Iterator[bytes]:
    while chunk := body.read(1 << 20):  # type: ignore[attr-defined]
        yield chunk
