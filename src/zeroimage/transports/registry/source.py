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
from typing import TYPE_CHECKING, Literal

from zeroimage.errors import DigestError, InputError, NetworkError, NotFoundError, RegistryError
from zeroimage.files import CHUNK, Readable, VerifyingReader
from zeroimage.image import Blob, DocumentBudget, MountSource
from zeroimage.oci import MAX_CONFIG_SIZE, MAX_DOCUMENT_SIZE, Descriptor, parse_document, sha256_digest, verify_bytes
from zeroimage.oci import mediatypes as mt
from zeroimage.reference import Reference

if TYPE_CHECKING:
    from zeroimage.store import BlobStore
    from zeroimage.transports.registry.pool import ClientPool
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.client import (
    REDIRECT_STATUS,
    RegistryClient,
    TransferStalled,
    client_for,
)
from zeroimage.transports.registry.replies import content_type, read_bounded
from zeroimage.transports.registry.upload import pull_scopes

MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
#: Tries of a document GET whose reply is cut mid-body (the connection-level retries are the client's).
BODY_ATTEMPTS = 4
#: Times a blob download resumes after its connection broke.
BLOB_RESUMES = 4


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
            scopes=pull_scopes(self.repository),
            headers=headers,
            follow_redirects=True,
        )
        if response.status_code not in (200, 206):
            reply = self.client.reply_of(response)
            self.client.raise_for_status(reply, f"blob {self.desc.digest}", self.repository, expected=(200, 206))
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
    if the source made it.

    With a ``store``, what the build reads is kept for the builds to come: documents and layers
    by digest (verified), and what each tag named. ``pull`` says when the registry is asked:
    ``always`` (every document from the registry; layers already kept are not fetched again),
    ``missing`` (one request resolves a tag; what is kept is read from the store) or ``never``
    (offline: the store alone, and one clear line naming what it lacks)."""

    def __init__(
        self,
        reference: Reference,
        insecure_registries: tuple[str, ...] = (),
        client: RegistryClient | None = None,
        *,
        clients: ClientPool | None = None,
        budget: DocumentBudget | None = None,
        store: BlobStore | None = None,
        pull: Literal["always", "missing", "never"] = "always",
    ) -> None:
        self.reference = reference
        self.description = f"docker://{reference}"
        self.name = str(reference)
        self._owns_client = client is None and clients is None
        self._client = client
        self._clients = clients
        self._insecure_registries = insecure_registries
        self.origin = MountSource(reference.registry, reference.repository)
        self.budget = budget or DocumentBudget()
        self.store = store
        self.pull = pull
        self._documents: dict[str, bytes] = {}
        self._root: Descriptor | None = None

    @property
    def client(self) -> RegistryClient:
        """Made on first use (or taken from the build's pool): a build that finds all it needs in
        the store makes none."""
        if self._client is None:
            registry = self.reference.registry
            if self._clients is not None:
                self._client = self._clients.get(registry, self._insecure_registries)
            else:
                self._client = client_for(registry, self._insecure_registries)
        return self._client

    def _scopes(self) -> tuple[str, ...]:
        return pull_scopes(self.reference.repository)

    def _get_manifest(self, identifier: str, expected: str | None) -> tuple[Descriptor, bytes]:
        repo = self.reference.repository
        registry = self.client.registry
        what = f"manifest {self.reference}" if identifier == self.reference.identifier else f"manifest {identifier}"
        data: bytes | None = None
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
                self.client.raise_for_status(reply, what, repo, expected=(200,))
            try:
                data = read_bounded(self.client, response, MAX_DOCUMENT_SIZE, what)
                break
            except TransferStalled as exc:
                if exc.final or attempt == BODY_ATTEMPTS:
                    raise
            except NetworkError:  # the reply was cut mid-body: ask again
                if attempt == BODY_ATTEMPTS:
                    raise
        if data is None:
            raise RegistryError(f"{what} is larger than {MAX_DOCUMENT_SIZE} bytes; refusing it")
        header = response.headers.get("docker-content-digest", "")
        digest = expected or (header if header.startswith("sha256:") else "") or sha256_digest(data)
        verify_bytes(data, digest, f"manifest {self.reference.name}@{identifier}")
        if header and expected and header != expected and header.startswith("sha256:"):
            raise DigestError(f"registry says manifest {identifier} is {header}, expected {expected}")
        desc = self._hold(digest, data, f"manifest {identifier}", content_type(response))
        if self.store is not None:
            self.store.put_document(desc, data)
        return desc, data

    def _hold(self, digest: str, data: bytes, what: str, media_type: str = "") -> Descriptor:
        """Keep a verified manifest or index for this build (charged to its budget)."""
        doc = parse_document(data, what, media_type)
        if digest not in self._documents:
            self.budget.charge(len(data), f"{self.description} {what}")
            self._documents[digest] = data
        return Descriptor(doc.media_type, digest, len(data))

    # -- the root, as the pull policy says --------------------------------------------------------

    def root(self) -> Descriptor:
        if self._root is None:
            self._root = self._resolve()
        return self._root

    def _resolve(self) -> Descriptor:
        ref = self.reference
        if self.pull != "always" and self.store is not None:
            digest = ref.digest or (self._recorded() if self.pull == "never" else self._current())
            if digest:
                data = self.store.document(digest, MAX_DOCUMENT_SIZE)
                if data is not None:
                    desc = self._hold(digest, data, f"manifest {ref}")
                    self._record(desc)
                    return desc
        if self.pull == "never":
            raise InputError(
                f"{ref} is not in zeroimage's cache, and --pull=never forbids asking {ref.registry} for it"
            )
        desc, _ = self._get_manifest(ref.identifier, ref.digest)
        self._record(desc)
        return desc

    def _current(self) -> str:
        """The digest the tag names now, by one HEAD request ("" when the registry will not say)."""
        reply = self.client.request(
            "HEAD",
            f"/v2/{self.reference.repository}/manifests/{self.reference.identifier}",
            scopes=self._scopes(),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        digest = reply.headers.get("docker-content-digest", "")
        return digest if reply.status == 200 and _is_sha256(digest) else ""

    def _tag_key(self) -> str:
        return sha256_digest(str(self.reference.with_tag(self.reference.tag or "latest")).encode())[7:]

    def _recorded(self) -> str:
        """The digest the tag named when the store last saw it (for --pull=never)."""
        assert self.store is not None
        record = self.store.record("tags", self._tag_key())
        digest = record.get("digest") if record else None
        return digest if isinstance(digest, str) and _is_sha256(digest) else ""

    def _record(self, desc: Descriptor) -> None:
        if self.store is not None and not self.reference.digest:
            self.store.put_record("tags", self._tag_key(), {"reference": str(self.reference), "digest": desc.digest})

    # -- documents and blobs ----------------------------------------------------------------------

    def document(self, desc: Descriptor) -> bytes:
        if desc.digest in self._documents:
            return self._documents[desc.digest]
        manifest = desc.media_type in mt.MANIFESTS or desc.media_type in mt.INDEXES
        limit = MAX_DOCUMENT_SIZE if manifest else MAX_CONFIG_SIZE
        if desc.size > limit:
            raise RegistryError(f"document {desc.digest} is larger than {limit} bytes; refusing it")
        kept = self.store.document(desc.digest, limit) if self.store is not None and self.pull != "always" else None
        if kept is not None:
            data = kept
        elif self.pull == "never":
            raise InputError(f"{self.description}: document {desc.digest} is not in zeroimage's cache (--pull=never)")
        elif manifest:
            _, data = self._get_manifest(desc.digest, desc.digest)
        else:
            self.budget.charge(desc.size, f"{self.description} config {desc.digest}")
            stream = self._download(desc)
            try:
                data = b"".join(iter(lambda: stream.read(CHUNK), b""))
            finally:
                stream.close()
            if self.store is not None:
                self.store.put_document(desc, data)
        if len(data) != desc.size:
            raise DigestError(f"document {desc.digest} has {len(data)} bytes, its descriptor says {desc.size}")
        if desc.digest not in self._documents:
            if kept is not None:
                self.budget.charge(len(data), f"{self.description} document {desc.digest}")
            self._documents[desc.digest] = data
        return data

    def _download(self, desc: Descriptor) -> Readable:
        what = f"blob {desc.digest} of {self.reference.name}"
        return VerifyingReader(
            ResumingBlobStream(self.client, self.reference.repository, desc), desc.digest, desc.size, what
        )

    def blob(self, desc: Descriptor) -> Blob:
        """A layer: from the store when it is kept there (verified as it is read), else
        downloaded — and kept, so that the next build does not download it again."""

        def opener() -> Readable:
            store = self.store
            if store is not None and store.has(desc):
                return store.open(desc)
            if self.pull == "never":
                raise InputError(f"{self.description}: layer {desc.digest} is not in zeroimage's cache (--pull=never)")
            reader = self._download(desc)
            return store.keep_while_read(desc, reader) if store is not None else reader

        return Blob(descriptor=desc, open=opener, origin=self.origin)

    def referrers(self, digest: str) -> list[Descriptor]:
        from zeroimage.transports.registry.referrers import list_referrers

        return list_referrers(self.client, self.reference.repository, digest)

    def tagged(self, tag: str) -> Descriptor | None:
        other = RegistrySource(self.reference.with_tag(tag), client=self.client, budget=self.budget, pull="always")
        try:
            desc = other.root()
        except NotFoundError:
            return None
        self._documents.update(other._documents)  # read once: this source serves it from now on
        return desc

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()


def _is_sha256(digest: str) -> bool:
    return len(digest) == 71 and digest.startswith("sha256:") and all(c in "0123456789abcdef" for c in digest[7:])
