"""Registries as a sink: one image pushed to one or more references of one registry.

A :class:`RegistrySink` takes every reference of a build on one registry (as go-containerregistry's
``MultiWrite``): repositories R1..Rn, each with one or more tags. A new layer goes up once, to R1,
while it is being compressed (:meth:`RegistrySink.layer_tap`); the other repositories mount it
from R1, or find it. Each blob is checked first (``HEAD``): what the repository has is not sent
again; a base layer from another repository of the same registry is mounted from there. Blobs go
up a few at a time; a manifest is put only after every blob it names is confirmed, an index after
its manifests, and a tag after all of them. An image the repository holds already is only tagged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from zeroimage import cancel
from zeroimage.errors import NotFoundError
from zeroimage.files import CHUNK, Readable
from zeroimage.image import (
    Attachments,
    Blob,
    DocumentBudget,
    ImageFormat,
    ImageGraph,
    LayerTap,
    LegacySignature,
    Source,
    WriteResult,
)
from zeroimage.layers.feed import LayerAbandoned
from zeroimage.oci import Descriptor, Manifest, parse_document
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import Reporter
from zeroimage.reference import Reference
from zeroimage.transports.registry.client import RegistryClient, client_for
from zeroimage.transports.registry.source import MANIFEST_ACCEPT, RegistrySource
from zeroimage.transports.registry.upload import (
    OpenSessions,
    UploadSession,
    blob_exists,
    confirm_manifest,
    push_scopes,
    put_manifest,
    upload_blob,
)

if TYPE_CHECKING:
    from zeroimage.transports.registry.pool import ClientPool

#: Blobs uploaded at once to one repository.
UPLOAD_CONCURRENCY = 4
#: The most a failed build spends cancelling its open upload sessions (seconds).
DISCARD_SECONDS = 5.0

Outcome = Literal["uploaded", "mounted", "existing"]


def _no_blobs() -> dict[str, int]:
    return {"uploaded": 0, "mounted": 0, "existing": 0}


class RegistrySink:
    """Pushes an image to ``references``, all of one registry, in the order given.

    ``client`` is used if given (and then left open by :meth:`close`); otherwise the sink makes
    its own on first use."""

    #: New layers stream through memory to the registry: no layer file is needed.
    needs_layer_files = False
    #: Registries take the build's --format.
    fixed_format: ImageFormat | None = None
    #: Referrers (the Referrers API, or the tag schema) and cosign's .sig tags.
    takes_attachments = True

    def __init__(
        self,
        references: Sequence[Reference],
        insecure_registries: tuple[str, ...] = (),
        client: RegistryClient | None = None,
        *,
        clients: ClientPool | None = None,
        budget: DocumentBudget | None = None,
    ) -> None:
        if not references:
            raise ValueError("a RegistrySink needs a reference")
        registry = references[0].registry
        others = sorted({r.registry for r in references} - {registry})
        if others:
            raise ValueError(f"one registry per RegistrySink: {registry}, not also {', '.join(others)}")
        self.references = tuple(references)
        self.registry = registry
        self.description = ", ".join(f"docker://{r}" for r in self.references)
        #: The repositories, in order; new layers are streamed to the first.
        self.repositories = tuple(dict.fromkeys(r.repository for r in self.references))
        self._client = client
        self._clients = clients
        self._owns_client = client is None and clients is None
        self._insecure_registries = insecure_registries
        self._budget = budget or DocumentBudget()
        self._lock = threading.Lock()
        self._streamed: dict[str, _StreamedUpload] = {}  # layers uploaded while compressed, by digest
        self._sessions = OpenSessions()

    @property
    def client(self) -> RegistryClient:
        """Made on first use: a push's first request comes from a layer upload that starts with
        the compressor, so setting up HTTP and TLS overlaps compression."""
        with self._lock:
            if self._client is None:
                if self._clients is not None:
                    self._client = self._clients.get(self.registry, self._insecure_registries)
                else:
                    self._client = client_for(self.registry, self._insecure_registries)
            return self._client

    def layer_sources(self) -> list[Source]:
        """The images under the tags this sink pushes to: what a new layer may be found in,
        read with the build's client of this registry (the sink's own, warm for the upload), made
        when they are first asked for — in the thread that asks."""
        return [
            RegistrySource(ref, self._insecure_registries, clients=self._clients, budget=self._budget, pull="always")
            for ref in self.references
            if not ref.digest
        ]

    # -- new layers while they are made ---------------------------------------------------------------

    def layer_tap(self, reporter: Reporter) -> LayerTap:
        """Upload a new layer to the first repository while it is compressed (see
        :class:`_StreamedUpload`); the sink's write mounts it into the others."""
        return _StreamedUpload(self, reporter)

    def _streamed_layer(self, digest: str, upload: _StreamedUpload) -> None:
        with self._lock:
            self._streamed[digest] = upload

    def _streamed_upload(self, digest: str) -> _StreamedUpload | None:
        with self._lock:
            return self._streamed.pop(digest, None)

    # -- the whole graph ----------------------------------------------------------------------------

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        """Push ``graph`` to every reference: one WriteResult per reference, in the order given,
        each counting the blobs uploaded, mounted or found for that reference alone. With
        ``attachments``, each repository gets them too, after the image (by digest) and before
        any tag: a tag never names an image whose attachments failed to go up."""
        results: dict[Reference, WriteResult] = {}
        holder: str | None = None  # a repository that holds every blob of the graph by now
        for repository in self.repositories:
            references = [r for r in self.references if r.repository == repository]
            results.update(self._write_repository(repository, references, graph, reporter, holder, attachments))
            holder = holder or repository
        return [results[reference] for reference in self.references]

    def _write_repository(
        self,
        repository: str,
        references: list[Reference],
        graph: ImageGraph,
        reporter: Reporter,
        holder: str | None,
        attachments: Attachments | None,
    ) -> dict[Reference, WriteResult]:
        root = graph.root
        results: dict[Reference, WriteResult] = {}
        pending = list(references)
        attach = self._attaching(repository, graph, attachments, reporter)
        streamed_here = repository == self.repositories[0] and any(d in self._streamed for d in graph.new)
        if not streamed_here:  # no new layer went up: the repository may hold this very image already
            for reference in references:
                if self._manifest_digest(repository, reference.tag or root.digest) == root.digest:
                    reporter.info(f"{reference} is this image already: nothing to push")
                    results[reference] = WriteResult(str(reference), root.digest, _no_blobs(), location=reference.name)
                    pending.remove(reference)
            if not pending or self._manifest_digest(repository, root.digest) == root.digest:
                attach()  # an image pushed before gets what this build attaches, then its tags
                for reference in pending:  # the repository holds the image, and so every blob it names
                    results[reference] = self._tag(reference, graph, reporter, _no_blobs())
                return results
        counts = self._push_blobs(repository, graph, reporter, holder)
        for desc in graph.children_first():
            if desc.digest != root.digest and (desc.media_type in mt.MANIFESTS or desc.media_type in mt.INDEXES):
                cancel.check()  # nothing is put after an interrupt
                self._put_manifest(repository, desc.digest, desc, graph.documents[desc.digest])
        first, *others = pending
        cancel.check()
        if attach.needed:
            self._put_manifest(repository, root.digest, root, graph.documents[root.digest])
            attach()
            results[first] = self._tag(first, graph, reporter, counts)
        else:
            self._put_manifest(repository, first.tag or root.digest, root, graph.documents[root.digest])
            results[first] = WriteResult(str(first), root.digest, counts, location=first.name)
        for reference in others:
            results[reference] = self._tag(reference, graph, reporter, _no_blobs())
        return results

    def _tag(self, reference: Reference, graph: ImageGraph, reporter: Reporter, counts: dict[str, int]) -> WriteResult:
        """Put the root under the reference's tag: the repository holds the image already."""
        root = graph.root
        if reference.tag:
            reporter.info(f"{reference.name} has this image: tagging it {reference.tag}")
            cancel.check()
            self._put_manifest(reference.repository, reference.tag, root, graph.documents[root.digest])
        return WriteResult(str(reference), root.digest, counts, location=reference.name)

    # -- attachments ---------------------------------------------------------------------------------

    def _attaching(
        self, repository: str, graph: ImageGraph, attachments: Attachments | None, reporter: Reporter
    ) -> _Attach:
        return _Attach(self, repository, graph, attachments, reporter)

    def _push_legacy(self, repository: str, signature: LegacySignature, reporter: Reporter) -> None:
        """Add a legacy signature to the image under ``sha256-<hex>.sig``, keeping the signatures
        already there (another signer's, or ours, which is then not added twice)."""
        from zeroimage.signing import legacy_signature_image, signature_tag

        tag = signature_tag(signature.digest)
        existing = RegistrySource(Reference(self.registry, repository, tag=tag), client=self.client, pull="always")
        manifest = config = None
        try:
            root = existing.root()
            manifest = existing.document(root)
            parsed = parse_document(manifest, f"{self.registry}/{repository}:{tag}", root.media_type)
            if isinstance(parsed, Manifest):
                config = existing.document(parsed.config)
        except NotFoundError:
            pass  # the first signature of this image here
        image = legacy_signature_image(signature.payload, signature.signature, manifest, config)
        if not image.added:
            return
        from concurrent.futures import ThreadPoolExecutor  # here, not for every build: it imports logging

        blobs = [
            (Descriptor("application/octet-stream", digest, len(data)), data) for digest, data in image.blobs.items()
        ]
        with ThreadPoolExecutor(max_workers=len(blobs) or 1, thread_name_prefix="sig") as pool:
            list(pool.map(lambda blob: self._push_blob(repository, blob[0], blob[1], reporter, None), blobs))
        cancel.check()
        self._put_manifest(
            repository, tag, Descriptor(image.media_type, image.digest, len(image.manifest)), image.manifest
        )

    def _push_blobs(self, repository: str, graph: ImageGraph, reporter: Reporter, holder: str | None) -> dict[str, int]:
        order = graph.children_first()
        blobs = [d for d in order if not (d.media_type in mt.MANIFESTS or d.media_type in mt.INDEXES)]
        reporter.info(f"pushing {len(blobs)} blobs to {self.registry}/{repository}")
        from concurrent.futures import ThreadPoolExecutor  # here, not for every build: it imports logging

        pool = ThreadPoolExecutor(max_workers=UPLOAD_CONCURRENCY, thread_name_prefix="push")
        counts = _no_blobs()
        try:
            futures = [
                pool.submit(
                    self._push_blob,
                    repository,
                    desc,
                    graph.documents.get(desc.digest) or graph.blobs[desc.digest],
                    reporter,
                    holder,
                )
                for desc in blobs
            ]
            for future in futures:
                counts[future.result()] += 1
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # a stalled upload must not hold the failure
            raise
        pool.shutdown()
        reporter.info(
            f"blobs: {counts['uploaded']} uploaded, {counts['mounted']} mounted, {counts['existing']} already there"
        )
        return counts

    def _push_blob(
        self, repository: str, desc: Descriptor, content: Blob | bytes, reporter: Reporter, holder: str | None
    ) -> Outcome:
        """Make ``desc`` present in ``repository``, the cheapest way there is."""
        streamed = self._streamed_upload(desc.digest) if repository == self.repositories[0] else None
        if streamed is not None and streamed.wait():
            return "uploaded"
        if blob_exists(self.client, repository, desc):
            return "existing"
        mount_from = holder
        origin = content.origin if isinstance(content, Blob) else None
        if mount_from is None and origin is not None and origin.registry == self.registry:
            mount_from = origin.repository
        return upload_blob(self.client, repository, desc, content, reporter, mount_from, self._sessions)

    def _put_manifest(self, repository: str, identifier: str, desc: Descriptor, data: bytes) -> None:
        """Put a manifest whose blobs are all confirmed (see :func:`~.upload.put_manifest`)."""
        reply = put_manifest(self.client, repository, identifier, desc.media_type, data)
        confirm_manifest(self.client, reply, repository, f"manifest {identifier}", data)

    def _manifest_digest(self, repository: str, identifier: str) -> str | None:
        """The digest the repository has under ``identifier`` (a tag or digest), by HEAD; None when
        it has none or will not say."""
        reply = self.client.request(
            "HEAD",
            f"/v2/{repository}/manifests/{identifier}",
            scopes=push_scopes(repository),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return reply.headers.get("docker-content-digest") if reply.status == 200 else None

    # -- the rest of a sink's life -------------------------------------------------------------------

    def check_push_access(self) -> None:
        """Start an upload session in each repository (which needs push access) and cancel it:
        nothing is written."""
        for repository in self.repositories:
            UploadSession.start(self.client, repository).cancel()

    def discard(self) -> None:
        """After a failed build: cancel the upload sessions still open (within DISCARD_SECONDS),
        then close."""
        if self._client is not None:
            self._sessions.cancel_all(DISCARD_SECONDS)
        self.close()

    def close(self) -> None:
        with self._lock:
            client, owned = self._client, self._owns_client
            if owned:
                self._client = None  # a later use makes a new one
        if client is not None and owned:
            client.close()


class _Attach:
    """A repository's attachments, pushed when called (once), after the image is there: the
    referrer artifacts (Referrers API, or the tag schema), then cosign's legacy signatures — all
    of them at once, since each is an image of its own under a tag of its own. A registry that
    refuses the referrers gets no ``.sig`` tag either. They are asked of ``attachments`` only
    then: the build makes them meanwhile, while the image goes up."""

    def __init__(
        self,
        sink: RegistrySink,
        repository: str,
        graph: ImageGraph,
        attachments: Attachments | None,
        reporter: Reporter,
    ) -> None:
        self.sink = sink
        self.repository = repository
        self.graph = graph
        self.attachments = attachments
        self.reporter = reporter
        self.needed = attachments is not None

    def __call__(self) -> None:
        if self.attachments is None or not self.needed:
            return
        from concurrent.futures import ThreadPoolExecutor  # here, not for every build: it imports logging

        from zeroimage.transports.registry.referrers import push_artifacts

        where = f"{self.sink.registry}/{self.repository}"
        artifacts = list(self.attachments.referrers(self.graph))
        legacy = list(self.attachments.legacy(self.graph, where))
        cancel.check()
        recorded = push_artifacts(self.sink.client, self.repository, artifacts) if artifacts else []
        for artifact, how in zip(artifacts, recorded, strict=True):
            self.reporter.info(f"attached {artifact.artifact_type} {artifact.descriptor.digest} to {where} ({how})")
        if legacy:
            cancel.check()
            with ThreadPoolExecutor(max_workers=len(legacy), thread_name_prefix="sig") as pool:
                signed = [pool.submit(self.sink._push_legacy, self.repository, s, self.reporter) for s in legacy]
                for done in signed:
                    done.result()
            self.reporter.info(f"signed {len(legacy)} manifests in {where} (cosign's .sig tags)")
        self.needed = False


class _StreamedUpload:
    """Uploads a layer to the sink's first repository while it is compressed: one upload
    session, one PATCH whose body follows the layer's bytes as the compressor makes them
    (chunked transfer encoding), then the commit once the digest is known; the registry checks
    it. The bytes come from the store's file when the layer is kept (the compressor never waits
    for the network), else through a bounded window in memory (it waits for the slowest upload:
    memory stays flat). The sink's write waits for the upload (:meth:`wait`); any failure costs
    only the overlap, since the sink then uploads the blob as any other."""

    def __init__(self, sink: RegistrySink, reporter: Reporter) -> None:
        self.sink = sink
        self.reporter = reporter
        self.worker: cancel.Worker | None = None
        self.failed: BaseException | None = None
        self.descriptor: Descriptor | None = None
        self._settled = threading.Event()  # finish or abort was called

    def start(self, layer: Readable) -> None:
        self.worker = cancel.Worker(lambda: self._run(layer), "stream-upload")
        self.worker.start()

    def _run(self, layer: Readable) -> None:
        sink = self.sink
        session: UploadSession | None = None

        def chunks() -> Iterator[bytes]:
            while chunk := layer.read(CHUNK):
                yield chunk

        try:
            session = UploadSession.start(sink.client, sink.repositories[0], sink._sessions)
            session.stream(chunks)
            self._settled.wait()
            descriptor = self.descriptor
            if descriptor is None:
                raise LayerAbandoned
            session.commit(descriptor)
            session = None
        except BaseException as exc:  # noqa: BLE001 - reported by wait(); the sink uploads the blob itself
            self.failed = exc
        finally:
            layer.close()
            if session is not None:
                session.cancel()

    def finish(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.sink._streamed_layer(descriptor.digest, self)
        self._settled.set()

    def abort(self) -> None:
        self._settled.set()  # the layer's reader raises; the upload session is cancelled

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        pass  # the sink's write finds the layer in the registry, or uploads it from there

    def wait(self) -> bool:
        """Wait for the upload to end; True if the registry confirmed the blob."""
        if self.worker is not None:
            self.worker.wait()
        if self.failed is None:
            return True
        self.reporter.info(
            f"streaming the layer to {self.sink.registry} failed ({self.failed}); uploading it afterwards"
        )
        return False
