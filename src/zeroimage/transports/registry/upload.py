"""Writing to a repository: a blob upload as the OCI distribution spec's named steps, as regclient
has them, and the manifest PUT every writer (the sink, the referrers push) shares.

An :class:`UploadSession` is one upload: :meth:`~UploadSession.start` (``POST .../uploads/``) or
:meth:`~UploadSession.mount` (``POST ...?mount=&from=``, which may finish at once), then either
:meth:`~UploadSession.put_whole` (a monolithic ``PUT ?digest=`` carrying the blob), or
:meth:`~UploadSession.stream` (one ``PATCH`` following a layer as it is compressed) or
:meth:`~UploadSession.patch_chunks` (PATCHes of at least ``OCI-Chunk-Min-Length`` bytes), each then
:meth:`~UploadSession.commit` (``PUT ?digest=``); or :meth:`~UploadSession.cancel` (``DELETE``).
The chunk minimum and the current ``Location`` are state of the session.

:func:`upload_blob` composes them: mount if it can, else a monolithic PUT, falling back to chunks
when the registry refuses that way, retrying a session that failed on the network a few times.
:class:`OpenSessions` keeps the sessions in flight, so that a failed build can cancel them.

:func:`blob_exists` asks whether a repository holds a blob already; :func:`put_manifest` puts a
manifest once its blobs are there and :func:`confirm_manifest` checks the registry took those very
bytes; :func:`pull_scopes` and :func:`push_scopes` are the token scopes each asks for.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal
from urllib.parse import urlencode

from zeroimage.errors import DigestError, NetworkError, RegistryError
from zeroimage.files import CHUNK, Readable
from zeroimage.image import Blob
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.progress import Reporter
from zeroimage.transports.registry.auth import scope_for
from zeroimage.transports.registry.client import RegistryClient, Reply, TransferStalled, error_codes

#: Sessions tried for one blob when the network fails (a final stall ends it at once).
UPLOAD_ATTEMPTS = 4
#: The chunk size of a chunked upload, unless the registry asks for more.
DEFAULT_CHUNK = 16 * 1024 * 1024
#: Digits an OCI-Chunk-Min-Length may have (a petabyte has 16).
_MAX_DIGITS = 15
#: Times a manifest is put again while its registry calls a blob it names unknown (see
#: :func:`put_manifest`).
MANIFEST_BLOB_RETRIES = 4


def pull_scopes(repository: str) -> tuple[str, ...]:
    """The token scopes of a read of ``repository``."""
    return (scope_for(repository, "pull"),)


def push_scopes(repository: str, mount_from: str | None = None) -> tuple[str, ...]:
    """The token scopes of a push to ``repository`` (and a mount from ``mount_from``)."""
    scopes = [scope_for(repository, "pull,push")]
    if mount_from and mount_from != repository:
        scopes.append(scope_for(mount_from, "pull"))
    return tuple(scopes)


def blob_exists(client: RegistryClient, repository: str, desc: Descriptor) -> bool:
    """Whether ``repository`` holds ``desc`` (``HEAD``): a 404 means no, and so does a blob of
    another length than the descriptor says; an error reply is raised."""
    reply = client.request(
        "HEAD", f"/v2/{repository}/blobs/{desc.digest}", scopes=push_scopes(repository), follow_redirects=True
    )
    if reply.status == 200:
        length = reply.headers.get("content-length", "")
        return not (length.isdigit() and int(length) != desc.size)
    if reply.status == 404:
        return False
    client.raise_for_status(reply, f"blob {desc.digest}", repository)
    return False


def put_manifest(
    client: RegistryClient,
    repository: str,
    identifier: str,
    media_type: str,
    data: bytes,
    *,
    wait_for_blobs: bool = True,
) -> Reply:
    """``PUT`` a manifest (or index) under ``identifier`` (a tag or its digest); the reply, for
    :func:`confirm_manifest` to judge. With ``wait_for_blobs`` (every blob it names is confirmed),
    it is put again a few times while the registry calls one of them unknown: while another
    writer commits the same blob (a fleet pushing one program), the CNCF registry's filesystem
    storage rewrites the blob's link in place, and a manifest checked meanwhile finds it empty."""
    for attempt in range(1, MANIFEST_BLOB_RETRIES + 2):
        reply = client.request(
            "PUT",
            f"/v2/{repository}/manifests/{identifier}",
            scopes=push_scopes(repository),
            headers={"Content-Type": media_type},
            body=data,
        )
        if not wait_for_blobs or attempt > MANIFEST_BLOB_RETRIES or "MANIFEST_BLOB_UNKNOWN" not in error_codes(reply):
            break
        client.pause(attempt)
    return reply


def confirm_manifest(client: RegistryClient, reply: Reply, repository: str, what: str, data: bytes) -> None:
    """Raise unless ``reply`` says the registry took the manifest ``data`` (``what``, for the
    message) and stored it under its digest."""
    client.raise_for_status(reply, f"pushing {what}", repository, expected=(200, 201, 202))
    confirmed = reply.headers.get("docker-content-digest", "")
    expected = sha256_digest(data)
    if confirmed and confirmed != expected:
        raise DigestError(f"{client.registry} stored {confirmed} for {what}, expected {expected}")


def _with_digest(location: str, digest: str) -> str:
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{urlencode({'digest': digest})}"


class OpenSessions:
    """The upload sessions of a sink that are neither committed nor cancelled. Thread-safe."""

    def __init__(self) -> None:
        self._sessions: set[UploadSession] = set()
        self._lock = threading.Lock()

    def add(self, session: UploadSession) -> None:
        with self._lock:
            self._sessions.add(session)

    def discard(self, session: UploadSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    def cancel_all(self, seconds: float) -> None:
        """Cancel every open session, within ``seconds`` in all (best effort: a session left
        open expires on the registry)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            session.cancel(timeout=left)


class UploadSession:
    """One upload of one blob to one repository: see the module docstring for its steps."""

    def __init__(
        self, client: RegistryClient, repository: str, reply: Reply, opened: OpenSessions | None = None
    ) -> None:
        self.client = client
        self.repository = repository
        self.location = str(reply.headers.get("location", ""))
        if not self.location:
            raise RegistryError(f"{client.registry} started an upload without a Location")
        minimum = reply.headers.get("oci-chunk-min-length", "0").strip() or "0"
        if not minimum.isdigit() or len(minimum) > _MAX_DIGITS:
            raise RegistryError(
                f"{client.registry} started an upload with an invalid OCI-Chunk-Min-Length {minimum[:40]!r}"
            )
        #: The smallest chunk the registry takes in a PATCH (0: any).
        self.chunk_min = int(minimum)
        self._scopes = push_scopes(repository)
        self._opened = opened
        if opened is not None:
            opened.add(self)

    @classmethod
    def start(cls, client: RegistryClient, repository: str, opened: OpenSessions | None = None) -> UploadSession:
        """``POST /v2/REPO/blobs/uploads/``: a new session."""
        reply = client.request("POST", f"/v2/{repository}/blobs/uploads/", scopes=push_scopes(repository))
        client.raise_for_status(reply, "starting an upload", repository, expected=(202,))
        return cls(client, repository, reply, opened)

    @classmethod
    def mount(
        cls, client: RegistryClient, repository: str, digest: str, source: str, opened: OpenSessions | None = None
    ) -> UploadSession | None:
        """``POST ...?mount=DIGEST&from=SOURCE``: None when the registry mounted the blob; a
        session when it started an upload instead (it may not mount, or not from there)."""
        path = f"/v2/{repository}/blobs/uploads/?" + urlencode({"mount": digest, "from": source})
        reply = client.request("POST", path, scopes=push_scopes(repository, source))
        if reply.status == 201:
            return None
        client.raise_for_status(reply, "starting an upload", repository, expected=(202,))
        return cls(client, repository, reply, opened)

    def put_whole(self, desc: Descriptor, body: bytes | Callable[[], Iterable[bytes]], refusable: bool) -> bool:
        """The monolithic upload: ``PUT ?digest=`` carrying the whole blob. False when the registry
        refuses to take a blob this way — 416 (the spec's "not this way"), 413 (a proxy's body
        limit), or with ``refusable`` also 400/405 (older servers) —: send it in chunks then."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        url = _with_digest(self.location, desc.digest)
        reply = self.client.request("PUT", url, scopes=self._scopes, headers=headers, body=body, retry=False)
        if reply.status in (413, 416) or (refusable and reply.status in (400, 405)):
            return False
        self._check_created(reply, desc)
        return True

    def stream(self, chunks: Callable[[], Iterator[bytes]]) -> None:
        """One ``PATCH`` whose body is ``chunks`` (sent with chunked transfer encoding): a layer
        uploaded as it is made, its size and digest not known yet."""
        headers = {"Content-Type": "application/octet-stream"}
        reply = self.client.request(
            "PATCH", self.location, scopes=self._scopes, headers=headers, body=chunks, retry=False
        )
        self.client.raise_for_status(reply, "uploading a layer", self.repository, expected=(202,))
        self.location = str(reply.headers.get("location", self.location))

    def patch_chunks(self, desc: Descriptor, stream: Readable, reporter: Reporter) -> None:
        """PATCHes of ``max(DEFAULT_CHUNK, chunk_min)`` bytes, each streamed from ``stream``:
        memory stays flat whatever chunk size the registry asks for. A registry that confirms
        less than it was sent (``Range``) ends the upload: the bytes are not kept to send again."""
        chunk_size = max(DEFAULT_CHUNK, self.chunk_min)
        offset = 0
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
                        raise DigestError(f"blob {desc.digest} ended {left} bytes short of its size")

                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + length - 1}",
                    "Content-Length": str(length),
                }
                reply = self.client.request(
                    "PATCH", self.location, scopes=self._scopes, headers=headers, body=chunk, retry=False
                )
                self.client.raise_for_status(reply, f"uploading {desc.digest}", self.repository, expected=(202,))
                self.location = str(reply.headers.get("location", self.location))
                offset += length
                confirmed = reply.headers.get("range", "")
                if confirmed and confirmed.rsplit("-", 1)[-1].strip() != str(offset - 1):
                    raise RegistryError(
                        f"{self.client.registry} took a chunk of {desc.digest} only in part "
                        f"(Range {confirmed[:40]!r}, sent up to byte {offset - 1})"
                    )

    def commit(self, desc: Descriptor) -> None:
        """``PUT ?digest=`` without a body: the registry checks the digest of what it received."""
        reply = self.client.request(
            "PUT",
            _with_digest(self.location, desc.digest),
            scopes=self._scopes,
            headers={"Content-Length": "0"},
            retry=False,
        )
        self._check_created(reply, desc)

    def cancel(self, timeout: float | None = None) -> None:
        """``DELETE`` the session, best effort (an abandoned session expires on its own)."""
        self._close()
        with contextlib.suppress(Exception):
            self.client.request("DELETE", self.location, scopes=self._scopes, retry=False, timeout=timeout)

    def _close(self) -> None:
        if self._opened is not None:
            self._opened.discard(self)

    def _check_created(self, reply: Reply, desc: Descriptor) -> None:
        registry = self.client.registry
        if reply.status >= 500 or reply.status in (408, 429):
            raise NetworkError(f"{registry} answered HTTP {reply.status} to an upload")
        self.client.raise_for_status(reply, f"uploading {desc.digest}", self.repository, expected=(201,))
        self._close()
        confirmed = reply.headers.get("docker-content-digest")
        if confirmed and confirmed != desc.digest:
            raise DigestError(f"{registry} stored {confirmed} for upload of {desc.digest}")


def upload_blob(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    content: Blob | bytes,
    reporter: Reporter,
    mount_from: str | None = None,
    opened: OpenSessions | None = None,
) -> Literal["mounted", "uploaded"]:
    """Make ``desc`` present in ``repository``: mounted from ``mount_from`` (same registry) when
    the registry will, else uploaded whole, else in chunks. A session that fails on the network
    is cancelled and another one tried, a few times; a final stall is not retried."""
    last_error: NetworkError | None = None
    for attempt in range(UPLOAD_ATTEMPTS):
        if attempt == 0 and mount_from and mount_from != repository:
            mounted = UploadSession.mount(client, repository, desc.digest, mount_from, opened)
            if mounted is None:
                return "mounted"
            session = mounted
        else:
            session = UploadSession.start(client, repository, opened)
        try:
            if not session.put_whole(desc, _body(content, reporter, desc), refusable=isinstance(content, Blob)):
                session.cancel()
                session = UploadSession.start(client, repository, opened)  # the refused one may be spent
                stream = content.open() if isinstance(content, Blob) else _BytesReader(content)
                try:
                    session.patch_chunks(desc, stream, reporter)
                finally:
                    stream.close()
                session.commit(desc)
            return "uploaded"
        except NetworkError as exc:
            session.cancel()
            if isinstance(exc, TransferStalled) and exc.final:
                raise
            last_error = exc
        except BaseException:
            session.cancel()
            raise
    raise NetworkError(f"uploading {desc.digest} to {client.registry}/{repository} kept failing: {last_error}")


def _body(content: Blob | bytes, reporter: Reporter, desc: Descriptor) -> bytes | Callable[[], Iterator[bytes]]:
    """A monolithic PUT's body: the bytes, or a blob read afresh on each try."""
    if isinstance(content, bytes):
        return content

    def chunks() -> Iterator[bytes]:
        with reporter.task(f"pushing {desc.digest[7:19]}", desc.size) as task:
            stream = content.open()
            try:
                while chunk := stream.read(CHUNK):
                    task.advance(len(chunk))
                    yield chunk
            finally:
                stream.close()

    return chunks


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
