"""Registries as a source (pull a base) and a sink (push an image): ``docker://REF``.

Pulling verifies every document and blob against its digest (the root manifest against the
reference's pinned digest or ``Docker-Content-Digest``). Pushing uploads only what the registry
lacks, a few blobs at a time, mounts layers across repositories of the same registry, streams
layers from a source registry straight to the target, and puts a manifest only after every
blob it names is confirmed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from zeroimage import cancel
from zeroimage.errors import DigestError, NetworkError, RegistryError
from zeroimage.feed import LayerAbandoned
from zeroimage.files import CHUNK, Readable, VerifyingReader
from zeroimage.image import Blob, ImageGraph, WriteResult
from zeroimage.oci import MAX_DOCUMENT_SIZE, Descriptor, parse_document, sha256_digest, verify_bytes
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import Reporter
from zeroimage.reference import Reference
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import scope_for
from zeroimage.transports.registry.client import (
    REDIRECT_STATUS,
    RegistryClient,
    Reply,
    TransferStalled,
    client_for,
    read_at_most,
)

MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
MAX_CONFIG_SIZE = 16 * 1024 * 1024
UPLOAD_CONCURRENCY = 4
UPLOAD_ATTEMPTS = 4
#: Tries of a document GET whose reply is cut mid-body (the connection-level retries are the client's).
BODY_ATTEMPTS = 4
DEFAULT_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class RegistryOrigin:
    """Where a blob can be mounted from: same registry, another repository."""

    registry: str
    repository: str


def _read_bounded(client: RegistryClient, response: httpx.Response, limit: int, what: str) -> bytes:
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


class _BlobStream:
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
                if (isinstance(error, TransferStalled) and error.final) or self.resumes > UPLOAD_ATTEMPTS:
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
    """An image in a registry repository, by tag or digest."""

    def __init__(
        self, reference: Reference, insecure_registries: tuple[str, ...] = (), client: RegistryClient | None = None
    ) -> None:
        self.reference = reference
        self.description = f"docker://{reference}"
        self.client = client or client_for(reference.registry, insecure_registries)
        self.origin = RegistryOrigin(reference.registry, reference.repository)
        self._documents: dict[str, bytes] = {}
        self._root: Descriptor | None = None

    def _scopes(self) -> tuple[str, ...]:
        return (scope_for(self.reference.repository, "pull"),)

    def _get_manifest(self, identifier: str, expected: str | None) -> tuple[Descriptor, bytes]:
        repo = self.reference.repository
        what = f"manifest {self.reference}" if identifier == self.reference.identifier else f"manifest {identifier}"
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = self.client.open(
                "GET", f"/v2/{repo}/manifests/{identifier}", scopes=self._scopes(), headers={"Accept": MANIFEST_ACCEPT}
            )
            if response.status_code != 200:
                reply = self.client.reply_of(response)
                if reply.status in REDIRECT_STATUS:
                    raise RegistryError(
                        f"{self.client.registry} answered the request for {what} with a redirect "
                        f"(HTTP {reply.status}); manifests are fetched from the registry itself"
                    )
                self.client.raise_for_status(reply, what, repo)
                raise RegistryError(f"{self.client.registry}: {what} answered HTTP {reply.status}, not a manifest")
            try:
                data = _read_bounded(self.client, response, MAX_DOCUMENT_SIZE, what)
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
        with self.blob(desc).open() as stream:  # type: ignore[attr-defined]
            data = b"".join(iter(lambda: stream.read(CHUNK), b""))
        self._documents[desc.digest] = data
        return data

    def blob(self, desc: Descriptor) -> Blob:
        def opener() -> Readable:
            what = f"blob {desc.digest} of {self.reference.name}"
            return VerifyingReader(
                _BlobStream(self.client, self.reference.repository, desc), desc.digest, desc.size, what
            )

        return Blob(descriptor=desc, open=opener, origin=self.origin)

    def close(self) -> None:
        self.client.close()


class RegistrySink:
    """Pushes an image to a repository, under the reference's tag (or by digest only)."""

    #: A push needs only the identity of its new layers cached (the registry keeps the bytes):
    #: they stream through memory, and no layer file is written.
    layers_cached = False

    def __init__(
        self, reference: Reference, insecure_registries: tuple[str, ...] = (), client: RegistryClient | None = None
    ) -> None:
        self.reference = reference
        self.description = f"docker://{reference}"
        self.stats = {"uploaded": 0, "mounted": 0, "existing": 0}
        self.streams: dict[str, _StreamedUpload] = {}  # layers uploaded while they were compressed
        self.mountable: dict[str, _StreamedUpload] = {}  # ... to another repository of this registry
        self._lock = threading.Lock()
        self._client = client
        self._insecure_registries = insecure_registries

    @property
    def client(self) -> RegistryClient:
        """Made on first use: a push's first request comes from a layer upload that starts with
        the compressor, so setting up HTTP and TLS overlaps compression."""
        with self._lock:
            if self._client is None:
                self._client = client_for(self.reference.registry, self._insecure_registries)
            return self._client

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _scopes(self, mount_from: str | None = None) -> tuple[str, ...]:
        scopes = [scope_for(self.reference.repository, "pull,push")]
        if mount_from and mount_from != self.reference.repository:
            scopes.append(scope_for(mount_from, "pull"))
        return tuple(scopes)

    # -- blobs -----------------------------------------------------------------------------------

    def blob_exists(self, desc: Descriptor) -> bool:
        reply = self.client.request(
            "HEAD",
            f"/v2/{self.reference.repository}/blobs/{desc.digest}",
            scopes=self._scopes(),
            follow_redirects=True,
        )
        if reply.status == 200:
            length = reply.headers.get("content-length")
            return not (length and length.isdigit() and int(length) != desc.size)
        if reply.status == 404:
            return False
        self.client.raise_for_status(reply, f"blob {desc.digest}", self.reference.repository)
        return False

    def push_blob(self, desc: Descriptor, blob: Blob | bytes, reporter: Reporter) -> str:
        """Make ``desc`` present in the repository; returns 'existing', 'mounted' or 'uploaded'."""
        stream = self.streams.pop(desc.digest, None)
        if stream is not None and stream.wait():
            self._count("uploaded")
            return "uploaded"
        if self.blob_exists(desc):
            self._count("existing")
            return "existing"
        origin = blob.origin if isinstance(blob, Blob) else None
        mount_from = None
        if isinstance(origin, RegistryOrigin) and origin.registry == self.reference.registry:
            mount_from = origin.repository
        sibling = self.mountable.pop(desc.digest, None)
        if sibling is not None and sibling.wait(quiet=True):
            mount_from = sibling.sink.reference.repository
        last_error: Exception | None = None
        for attempt in range(UPLOAD_ATTEMPTS):
            started = self._start_upload(desc, mount_from if attempt == 0 else None)
            if started is None:
                self._count("mounted")
                return "mounted"
            location, chunk_min = started
            try:
                self._upload(location, chunk_min, desc, blob, reporter)
                self._count("uploaded")
                return "uploaded"
            except NetworkError as exc:
                self._cancel(location)
                if isinstance(exc, TransferStalled) and exc.final:
                    raise
                last_error = exc
                continue
        raise NetworkError(f"uploading {desc.digest} to {self.reference.name} kept failing: {last_error}")

    def _start_upload(self, desc: Descriptor, mount_from: str | None) -> tuple[str, int] | None:
        """Start an upload session (mounting when ``mount_from`` is given): its Location and its
        chunk minimum; None when the registry mounted the blob."""
        repo = self.reference.repository
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from and mount_from != repo:
            path += "?" + urlencode({"mount": desc.digest, "from": mount_from})
        reply = self.client.request("POST", path, scopes=self._scopes(mount_from))
        if reply.status == 201 and mount_from:
            return None
        if reply.status != 202:
            self.client.raise_for_status(reply, "starting an upload", repo)
            raise RegistryError(f"{self.reference.registry}: unexpected HTTP {reply.status} starting an upload")
        location = str(reply.headers.get("location", ""))
        if not location:
            raise RegistryError(f"{self.reference.registry} started an upload without a Location")
        chunk_min = reply.headers.get("oci-chunk-min-length", "0").strip() or "0"
        if not chunk_min.isdigit() or len(chunk_min) > 15:
            raise RegistryError(
                f"{self.reference.registry} started an upload with an invalid OCI-Chunk-Min-Length {chunk_min[:40]!r}"
            )
        return location, int(chunk_min)

    def _body(self, blob: Blob | bytes, reporter: Reporter, desc: Descriptor) -> Any:
        if isinstance(blob, bytes):
            return blob

        def chunks() -> Iterator[bytes]:
            with reporter.task(f"pushing {desc.digest[7:19]}", desc.size) as task:
                stream = blob.open()
                try:
                    while chunk := stream.read(CHUNK):
                        task.advance(len(chunk))
                        yield chunk
                finally:
                    stream.close()

        return chunks

    def _upload(self, location: str, chunk_min: int, desc: Descriptor, blob: Blob | bytes, reporter: Reporter) -> None:
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}{urlencode({'digest': desc.digest})}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        reply = self.client.request(
            "PUT", url, scopes=self._scopes(), headers=headers, body=self._body(blob, reporter, desc), retry=False
        )
        # Registries that will not take a whole blob in one PUT answer 416 (the spec's "not this
        # way"), 413 (a proxy's body limit), or 400/405 (older servers): send it in chunks instead.
        if reply.status in (413, 416) or (reply.status in (400, 405) and isinstance(blob, Blob)):
            self._upload_chunked(location, chunk_min, desc, blob, reporter)
            return
        self._check_created(reply, desc)

    def _upload_chunked(
        self, location: str, chunk_min: int, desc: Descriptor, blob: Blob | bytes, reporter: Reporter
    ) -> None:
        """PATCH in chunks (at least OCI-Chunk-Min-Length), each streamed from the blob: memory
        stays flat whatever chunk size the registry asks for."""
        started = self._start_upload(desc, None)
        if started is not None:
            location, chunk_min = started
        chunk_size = max(DEFAULT_CHUNK, chunk_min)
        stream: Any = blob.open() if isinstance(blob, Blob) else _BytesReader(blob)
        offset = 0
        try:
            with reporter.task(f"pushing {desc.digest[7:19]} (chunked)", desc.size) as task:
                while offset < desc.size:
                    length = min(chunk_size, desc.size - offset)

                    def chunk(length: int = length) -> Iterator[bytes]:
                        left = length
                        while left and (part := stream.read(min(CHUNK, left))):
                            left -= len(part)
                            task.advance(len(part))
                            yield part
                        if left:
                            raise RegistryError(f"blob {desc.digest} ended {left} bytes early")

                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                        "Content-Length": str(length),
                    }
                    reply = self.client.request(
                        "PATCH", location, scopes=self._scopes(), headers=headers, body=chunk, retry=False
                    )
                    if reply.status != 202:
                        self.client.raise_for_status(reply, f"uploading {desc.digest}", self.reference.repository)
                        raise RegistryError(f"{self.reference.registry}: unexpected HTTP {reply.status} to a chunk")
                    location = reply.headers.get("location", location)
                    offset += length
                    confirmed = reply.headers.get("range", "")
                    if confirmed and confirmed.rsplit("-", 1)[-1].strip() != str(offset - 1):
                        raise RegistryError(
                            f"{self.reference.registry} took a chunk of {desc.digest} only in part "
                            f"(Range {confirmed[:40]!r}, sent up to {offset - 1})"
                        )
        finally:
            stream.close()
        separator = "&" if "?" in location else "?"
        reply = self.client.request(
            "PUT",
            f"{location}{separator}{urlencode({'digest': desc.digest})}",
            scopes=self._scopes(),
            headers={"Content-Length": "0"},
            retry=False,
        )
        self._check_created(reply, desc)

    def _check_created(self, reply: Reply, desc: Descriptor) -> None:
        if reply.status >= 500 or reply.status in (408, 429):
            raise NetworkError(f"{self.reference.registry} answered HTTP {reply.status} to an upload")
        if reply.status != 201:
            self.client.raise_for_status(reply, f"uploading {desc.digest}", self.reference.repository)
            raise RegistryError(f"{self.reference.registry}: unexpected HTTP {reply.status} finishing an upload")
        confirmed = reply.headers.get("docker-content-digest")
        if confirmed and confirmed != desc.digest:
            raise DigestError(f"{self.reference.registry} stored {confirmed} for upload of {desc.digest}")

    @property
    def tap_group(self) -> str:
        """Sinks of one group share one upload of a new layer: the others mount it, or find it."""
        return self.reference.registry

    def layer_tap(self, reporter: Reporter, siblings: Sequence[RegistrySink] = ()) -> _StreamedUpload:
        """Upload a new layer while it is being compressed (see :class:`_StreamedUpload`); the
        ``siblings`` (other repositories or tags on this registry) mount it from here afterwards."""
        return _StreamedUpload(self, reporter, siblings)

    def check_push_access(self) -> None:
        """Start an upload session (which needs push access) and cancel it: nothing is written."""
        started = self._start_upload(Descriptor(mt.OCI_LAYER, sha256_digest(b""), 0), None)
        if started is not None:
            self._cancel(started[0])

    def _cancel(self, location: str) -> None:
        with contextlib.suppress(Exception):  # best effort: an abandoned session expires on its own
            self.client.request("DELETE", location, scopes=self._scopes(), retry=False)

    # -- manifests and the whole graph -----------------------------------------------------------

    def put_manifest(self, identifier: str, desc: Descriptor, data: bytes) -> str:
        reply = self.client.request(
            "PUT",
            f"/v2/{self.reference.repository}/manifests/{identifier}",
            scopes=self._scopes(),
            headers={"Content-Type": desc.media_type},
            body=data,
        )
        if reply.status not in (200, 201, 202):
            self.client.raise_for_status(reply, f"pushing manifest {identifier}", self.reference.repository)
            raise RegistryError(f"{self.reference.registry}: unexpected HTTP {reply.status} to a manifest")
        confirmed = reply.headers.get("docker-content-digest")
        if confirmed and confirmed != desc.digest:
            raise DigestError(f"{self.reference.registry} stored manifest {confirmed}, expected {desc.digest}")
        return desc.digest

    def manifest_digest(self, identifier: str) -> str | None:
        """The digest the repository has under ``identifier`` (a tag or digest), by HEAD; None when
        it has none or will not say."""
        reply = self.client.request(
            "HEAD",
            f"/v2/{self.reference.repository}/manifests/{identifier}",
            scopes=self._scopes(),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return reply.headers.get("docker-content-digest") if reply.status == 200 else None

    def write(self, graph: ImageGraph, reporter: Reporter) -> WriteResult:
        root, tag = graph.root, self.reference.tag
        if not self.streams:  # no new layer went up: the registry may hold this very image already
            if self.manifest_digest(tag or root.digest) == root.digest:
                reporter.info(f"{self.reference} is this image already: nothing to push")
                return WriteResult(self.reference.name, root.digest, dict(self.stats))
            if tag and self.manifest_digest(root.digest) == root.digest:  # and so every blob it names
                reporter.info(f"{self.reference.name} has this image: tagging it {tag}")
                cancel.check()
                self.put_manifest(tag, root, graph.documents[root.digest])
                return WriteResult(self.reference.name, root.digest, dict(self.stats))
        order = graph.children_first()
        documents = [d for d in order if d.media_type in mt.MANIFESTS or d.media_type in mt.INDEXES]
        blobs = [d for d in order if d not in documents]
        reporter.info(f"pushing {len(blobs)} blobs to {self.reference.name}")
        from concurrent.futures import ThreadPoolExecutor  # here, not for every build: it imports logging

        with ThreadPoolExecutor(max_workers=UPLOAD_CONCURRENCY, thread_name_prefix="push") as pool:
            futures = [
                pool.submit(self.push_blob, d, graph.documents.get(d.digest) or graph.blobs[d.digest], reporter)
                for d in blobs
            ]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        reporter.info(
            f"blobs: {self.stats['uploaded']} uploaded, {self.stats['mounted']} mounted, "
            f"{self.stats['existing']} already there"
        )
        for desc in documents:
            cancel.check()  # nothing is tagged after an interrupt
            is_root = desc.digest == graph.root.digest
            identifier = self.reference.tag if is_root and self.reference.tag else desc.digest
            self.put_manifest(identifier, desc, graph.documents[desc.digest])
        return WriteResult(self.reference.name, graph.root.digest, dict(self.stats))


class _StreamedUpload:
    """Uploads a layer while it is compressed: one upload session, one PATCH whose body follows
    the layer's bytes as the compressor makes them (chunked transfer encoding), then PUT ?digest=
    once the digest is known; the registry checks it. The bytes come from the store's file when
    the layer is kept (the compressor never waits for the network), else through a bounded window
    in memory (it waits for the slowest upload: memory stays flat). The sink's write waits for
    the upload (:meth:`wait`); any failure costs only the overlap, since the sink then uploads
    the blob as any other."""

    def __init__(self, sink: RegistrySink, reporter: Reporter, siblings: Sequence[RegistrySink] = ()) -> None:
        self.sink = sink
        self.reporter = reporter
        self.siblings = siblings
        self.worker: cancel.Worker | None = None
        self.failed: BaseException | None = None
        self.descriptor: Descriptor | None = None
        self._settled = threading.Event()  # finish or abort was called

    def start(self, layer: Readable) -> None:
        self.worker = cancel.Worker(lambda: self._run(layer), "stream-upload")
        self.worker.start()

    def _run(self, layer: Readable) -> None:
        sink = self.sink
        location = ""

        def chunks() -> Iterator[bytes]:
            while chunk := layer.read(CHUNK):
                yield chunk

        try:
            started = sink._start_upload(Descriptor(mt.OCI_LAYER, sha256_digest(b""), 0), None)
            location = started[0] if started is not None else ""
            scopes = sink._scopes()
            headers = {"Content-Type": "application/octet-stream"}
            reply = sink.client.request("PATCH", location, scopes=scopes, headers=headers, body=chunks, retry=False)
            if reply.status != 202:
                raise RegistryError(f"PATCH answered HTTP {reply.status}")
            location = reply.headers.get("location", location)
            self._settled.wait()
            descriptor = self.descriptor
            if descriptor is None:
                raise LayerAbandoned
            separator = "&" if "?" in location else "?"
            url = f"{location}{separator}{urlencode({'digest': descriptor.digest})}"
            reply = sink.client.request("PUT", url, scopes=scopes, headers={"Content-Length": "0"}, retry=False)
            sink._check_created(reply, descriptor)
            location = ""
        except BaseException as exc:  # noqa: BLE001 - reported by wait(); the sink uploads the blob itself
            self.failed = exc
        finally:
            layer.close()
            if location:
                sink._cancel(location)

    def finish(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.sink.streams[descriptor.digest] = self
        for sibling in self.siblings:
            sibling.mountable[descriptor.digest] = self
        self._settled.set()

    def abort(self) -> None:
        self._settled.set()  # the layer's reader raises; the upload session is cancelled

    def cached(self, descriptor: Descriptor, path: Path) -> None:
        pass  # the sink's write finds the layer in the registry, or uploads it from there

    def wait(self, quiet: bool = False) -> bool:
        """Wait for the upload to end; True if the registry confirmed the blob."""
        if self.worker is not None:
            self.worker.wait()
        if self.failed is None or quiet:
            return self.failed is None
        self.reporter.info(
            f"streaming the layer to {self.sink.reference.registry} failed ({self.failed}); uploading it afterwards"
        )
        return False


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out = bytes(self.data[self.pos : end])
        self.pos += len(out)
        return out

    def close(self) -> None:
        pass
