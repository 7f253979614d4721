"""An image in a registry as a source (``docker://REF`` for ``--from`` and ``inspect``).

Every document and blob is verified against its digest: the root manifest against the
reference's pinned digest, else the registry's ``Docker-Content-Digest``. Documents are bounded
(:data:`~zeroimage.oci.MAX_DOCUMENT_SIZE` for manifests, :data:`MAX_CONFIG_SIZE` for configs);
manifests are fetched from the registry itself, never through a redirect. Blobs stream,
resuming with a ``Range`` request when a connection breaks. Each blob names its origin
(:class:`~zeroimage.image.MountSource`), so that a push to another repository of the same
registry mounts it rather than copies it.
"""

from __future__ import annotations

from collections.abc import Iterator

from zeroimage.errors import DigestError, NetworkError, RegistryError
from zeroimage.files import CHUNK, Readable, VerifyingReader
from zeroimage.image import Blob, MountSource
from zeroimage.oci import MAX_DOCUMENT_SIZE, Descriptor, parse_document, sha256_digest, verify_bytes
from zeroimage.oci import mediatypes as mt
from zeroimage.reference import Reference
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import scope_for
from zeroimage.transports.registry.client import (
    REDIRECT_STATUS,
    RegistryClient,
    TransferStalled,
    client_for,
    read_at_most,
)

MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
MAX_CONFIG_SIZE = 16 * 1024 * 1024
#: Tries of a document GET whose reply is cut mid-body (the connection-level retries are the client's).
BODY_ATTEMPTS = 4
#: Times a blob download resumes after its connection broke.
BLOB_RESUMES = 4


def _read_document(client: RegistryClient, response: httpx.Response, limit: int, what: str) -> bytes:
    """A document's body, at most ``limit`` bytes (a larger one is refused); the response is closed."""
    declared = response.headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes; refusing it")
        data, whole = read_at_most(response, limit)
    except httpx.TransportError as exc:
        raise client.transfer_error(exc, response.url.netloc.decode(), what) from None
    finally:
        response.close()
    if not whole:
        raise RegistryError(f"{what} is larger than {limit} bytes; refusing it")
    return data


class ResumingBlobStream:
    """A blob download that resumes with a Range request when the connection breaks."""

    def __init__(self, client: RegistryClient, repository: str, desc: Descriptor) -> None:
        self.client = client
        self.repository = repository
        self.desc = desc
        self.position = 0
        self.resumes = 0
        self.response: httpx.Response | None = None
        self.chunks: Iterator[bytes] | None = None
        self.pending = b""

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        response = self.client.open(
            "GET",
            f"/v2/{self.repository}/blobs/{self.desc.digest}",
            scopes=(scope_for(self.repository, "pull"),),
            headers=headers,
            follow_redirects=True,
        )
        if response.status_code not in (200, 206):
            reply = self.client.reply_of(response)
            self.client.raise_for_status(reply, f"blob {self.desc.digest}", self.repository)
            raise RegistryError(
                f"{self.client.registry}: blob {self.desc.digest} answered HTTP {reply.status}, not its bytes"
            )
        skip = self.position if response.status_code == 200 else 0
        self.response = response
        self.chunks = response.iter_raw(CHUNK)
        while skip:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.pending = chunk[skip:]
            skip -= min(skip, len(chunk))

    def read(self, n: int = -1) -> bytes:
        while not self.pending:
            if self.chunks is None:
                self._open()
                if self.pending:
                    break
            assert self.chunks is not None
            try:
                chunk = next(self.chunks, b"")
            except httpx.TransportError as exc:
                where = self.response.url.netloc.decode() if self.response is not None else self.client.host
                self._drop()
                error = self.client.transfer_error(exc, where, f"blob {self.desc.digest}")
                self.resumes += 1
                if (isinstance(error, TransferStalled) and error.final) or self.resumes > BLOB_RESUMES:
                    raise error from None
                continue
            if not chunk:
                return b""
            self.pending = chunk
        if n < 0 or n >= len(self.pending):
            data, self.pending = self.pending, b""
        else:
            data, self.pending = self.pending[:n], self.pending[n:]
        self.position += len(data)
        return data

    def _drop(self) -> None:
        if self.response is not None:
            self.response.close()
        self.response = None
        self.chunks = None

    def close(self) -> None:
        self._drop()


class RegistrySource:
    """An image in a registry repository, by tag or digest. ``close`` closes the client only
    if the source made it."""

    def __init__(
        self, reference: Reference, insecure_registries: tuple[str, ...] = (), client: RegistryClient | None = None
    ) -> None:
        self.reference = reference
        self.description = f"docker://{reference}"
        self._owns_client = client is None
        self.client = client or client_for(reference.registry, insecure_registries)
        self.origin = MountSource(reference.registry, reference.repository)
        self._documents: dict[str, bytes] = {}
        self._root: Descriptor | None = None

    def _scopes(self) -> tuple[str, ...]:
        return (scope_for(self.reference.repository, "pull"),)

    def _get_manifest(self, identifier: str, expected: str | None) -> tuple[Descriptor, bytes]:
        repo = self.reference.repository
        registry = self.client.registry
        what = f"manifest {self.reference}" if identifier == self.reference.identifier else f"manifest {identifier}"
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = self.client.open(
                "GET", f"/v2/{repo}/manifests/{identifier}", scopes=self._scopes(), headers={"Accept": MANIFEST_ACCEPT}
            )
            if response.status_code != 200:
                reply = self.client.reply_of(response)
                if reply.status in REDIRECT_STATUS:
                    raise RegistryError(
                        f"{registry} answered the request for {what} with a redirect (HTTP {reply.status}); "
                        "manifests are fetched from the registry itself"
                    )
                self.client.raise_for_status(reply, what, repo)
                raise RegistryError(f"{registry}: {what} answered HTTP {reply.status}, not a manifest")
            try:
                data = _read_document(self.client, response, MAX_DOCUMENT_SIZE, what)
                break
            except TransferStalled as exc:
                if exc.final or attempt == BODY_ATTEMPTS:
                    raise
            except NetworkError:  # the reply was cut mid-body: ask again
                if attempt == BODY_ATTEMPTS:
                    raise
        header = response.headers.get("docker-content-digest", "")
        digest = expected or (header if header.startswith("sha256:") else "") or sha256_digest(data)
        verify_bytes(data, digest, f"manifest {self.reference.name}@{identifier}")
        if header and expected and header != expected and header.startswith("sha256:"):
            raise DigestError(f"registry says manifest {identifier} is {header}, expected {expected}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        doc = parse_document(data, f"manifest {identifier}", content_type)
        desc = Descriptor(doc.media_type, digest, len(data))
        self._documents[digest] = data
        return desc, data

    def root(self) -> Descriptor:
        if self._root is None:
            self._root, _ = self._get_manifest(self.reference.identifier, self.reference.digest)
        return self._root

    def document(self, desc: Descriptor) -> bytes:
        if desc.digest in self._documents:
            return self._documents[desc.digest]
        if desc.media_type in mt.MANIFESTS or desc.media_type in mt.INDEXES:
            _, data = self._get_manifest(desc.digest, desc.digest)
            if len(data) != desc.size:
                raise DigestError(f"manifest {desc.digest} has {len(data)} bytes, its descriptor says {desc.size}")
            return data
        if desc.size > MAX_CONFIG_SIZE:
            raise RegistryError(f"config {desc.digest} is larger than {MAX_CONFIG_SIZE} bytes; refusing it")
        stream = self.blob(desc).open()
        try:
            data = b"".join(iter(lambda: stream.read(CHUNK), b""))
        finally:
            stream.close()
        self._documents[desc.digest] = data
        return data

    def blob(self, desc: Descriptor) -> Blob:
        def opener() -> Readable:
            what = f"blob {desc.digest} of {self.reference.name}"
            return VerifyingReader(
                ResumingBlobStream(self.client, self.reference.repository, desc), desc.digest, desc.size, what
            )

        return Blob(descriptor=desc, open=opener, origin=self.origin)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
