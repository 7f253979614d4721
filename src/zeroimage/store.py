"""The local blob store: layers the build made, and the records that let it skip making them.

Layers that a local output needs are written here first, named by digest, and every output
copies from here: one compression serves an OCI archive, a docker-archive and a push at once.
Every read of a stored blob is verified against its digest in the same pass that copies it: a
blob changed on disk (by a bug, a disk, or someone else with access) raises
:class:`CorruptBlob` and is removed, and the build makes it again; wrong bytes never go out
under a digest.

Records map a layer's inputs to the layer they produced (see :mod:`zeroimage.layers.producer`).
The store is bounded (``ZEROIMAGE_CACHE_SIZE`` bytes, default 2 GiB): after each write the least
recently used blobs are removed, never one used in the last ten minutes; records beyond
:data:`MAX_RECORDS` likewise. Concurrent runs are safe: every file appears by atomic rename, and a
missing or unreadable blob or record is a cache miss.

The directory is private to its user (created 0700); one that belongs to another user is refused,
never written into: on a shared machine it could hand us someone else's layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zeroimage.errors import DigestError, OutputError, ZeroimageError
from zeroimage.files import (
    CHUNK,
    O_BINARY,
    RangeReader,
    Readable,
    VerifyingReader,
    atomic_write,
    describe_os_error,
    unlink_quietly,
    write_all,
)
from zeroimage.image import Blob, BuiltLayer
from zeroimage.oci import Descriptor, split_digest

DEFAULT_MAX_BYTES = 2 << 30
#: Layer records kept (a few hundred bytes each); beyond it, the least recently used quarter goes.
MAX_RECORDS = 4096
#: A record larger than this is not one of ours: a cache miss.
MAX_RECORD_SIZE = 64 * 1024
_KEEP_RECENT_SECONDS = 600


def default_cache_dir() -> Path:
    if os.environ.get("ZEROIMAGE_CACHE_DIR"):
        return Path(os.environ["ZEROIMAGE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zeroimage"


class CorruptBlob(DigestError):
    """A stored blob's bytes no longer match its digest; it has been removed from the store."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class BlobStore:
    """Content-addressed files under ``root/blobs/sha256/<hex>`` and small JSON records under
    ``root/<kind>/<key>``."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        env_max = os.environ.get("ZEROIMAGE_CACHE_SIZE", "")
        self.max_bytes = (
            max_bytes if max_bytes is not None else (int(env_max) if env_max.isdigit() else DEFAULT_MAX_BYTES)
        )
        self._blobs = root / "blobs" / "sha256"
        #: Blobs found corrupt (and removed) by this process, whoever read them.
        self.corrupt: set[str] = set()
        _private_dir(root)
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use cache directory {describe_os_error(exc, root)}") from None

    @classmethod
    @contextmanager
    def temporary(cls) -> Iterator[BlobStore]:
        """A store that lives for one build only (``--no-cache``)."""
        root = tempfile.mkdtemp(prefix="zeroimage-")
        try:
            yield cls(Path(root), max_bytes=1 << 62)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- blobs ---------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        return self._blobs / split_digest(digest)[1]

    def has(self, desc: Descriptor) -> bool:
        try:
            return self.path(desc.digest).stat().st_size == desc.size
        except OSError:
            return False

    def open(self, desc: Descriptor) -> Readable:
        """The stored blob, verified as it is read; :class:`CorruptBlob` (and the blob removed)
        if its bytes do not match."""
        return _StoredReader(self, desc)

    def blob(self, desc: Descriptor) -> Blob:
        return Blob(desc, lambda: self.open(desc))

    def new_file(self) -> str:
        """A name for a blob being written: a hidden temporary file in the store, not yet made
        (named first, so that whoever removes it on failure knows it even if an interrupt lands
        while it is created); :meth:`create` makes it."""
        return str(self._blobs / f".new-{os.urandom(8).hex()}.tmp")

    def create(self, tmp: str) -> int:
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | O_BINARY, 0o600)
        except OSError as exc:
            raise OutputError(f"cannot write to the cache: {describe_os_error(exc, self._blobs)}") from None

    def commit(self, tmp: str, digest: str) -> None:
        """Give the complete temporary file ``tmp`` its name: the digest of its bytes."""
        os.replace(tmp, self.path(digest))

    def remove(self, digest: str) -> None:
        unlink_quietly(str(self.path(digest)))

    def touch(self, digest: str) -> None:
        """Mark a blob recently used (kept by :meth:`prune`)."""
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(self.path(digest), (now, now))

    def keep_while_read(self, desc: Descriptor, reader: Readable) -> Readable:
        """``reader`` (a verifying reader of the blob ``desc``) that also writes what it reads
        into the store; the blob takes its name only once every byte was read and verified, so
        a base layer downloaded once is not downloaded again (nor a half or wrong one kept)."""
        return _Keeping(self, desc, reader)

    def document(self, digest: str, limit: int) -> bytes | None:
        """A stored document (manifest, index, config) of at most ``limit`` bytes, verified;
        None when it is not here (or no longer matches its digest, and is removed)."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
        except OSError:
            return None
        if size > limit:
            return None
        reader = self.open(Descriptor("", digest, size))
        try:
            data = b"".join(iter(lambda: reader.read(CHUNK), b""))
        except (DigestError, OSError):
            return None
        finally:
            reader.close()
        self.touch(digest)
        return data

    def put_document(self, desc: Descriptor, data: bytes) -> None:
        """Keep a document (already verified against ``desc``) for builds to come."""
        if self.has(desc):
            return
        with contextlib.suppress(OutputError, OSError), atomic_write(self.path(desc.digest), mode=0o600) as out:
            out.write(data)

    # -- records -------------------------------------------------------------------------------

    def record(self, kind: str, key: str) -> dict[str, object] | None:
        """The JSON object stored under ``kind/key`` (marked recently used), or None: a missing,
        unreadable, oversized or malformed record is a cache miss, never an error."""
        path = self.root / kind / key
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_RECORD_SIZE + 1)
            if len(raw) > MAX_RECORD_SIZE:
                return None
            value = json.loads(raw)
            now = time.time()
            os.utime(path, (now, now))
        except (OSError, ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def put_record(self, kind: str, key: str, value: dict[str, object]) -> None:
        directory = self.root / kind
        with contextlib.suppress(OutputError, OSError):  # a record that cannot be written is a future miss
            directory.mkdir(exist_ok=True)
            with atomic_write(directory / key) as out:
                out.write(json.dumps(value).encode())

    def layer_record(self, key: str, need_blob: bool = True) -> BuiltLayer | None:
        """The layer recorded under ``key``; with ``need_blob``, only if its blob is here too."""
        record = self.record("layers", key)
        if record is None:
            return None
        try:
            desc = Descriptor.from_dict(record["descriptor"])
            diff_id = record["diff_id"]
        except (KeyError, ZeroimageError):
            return None
        if not isinstance(diff_id, str) or (need_blob and not self.has(desc)):
            return None
        if need_blob:
            self.touch(desc.digest)
        return BuiltLayer(desc, diff_id)

    def put_layer_record(self, key: str, layer: BuiltLayer) -> None:
        self.put_record("layers", key, {"descriptor": layer.descriptor.to_dict(), "diff_id": layer.diff_id})

    # -- bounds --------------------------------------------------------------------------------

    def prune(self) -> None:
        """Remove least recently used blobs until the store fits its bound, and least recently
        used records beyond :data:`MAX_RECORDS` of each kind (pushes write records alone)."""
        for kind in self._record_kinds():
            self._prune_records(self.root / kind)
        blobs = []
        for entry in os.scandir(self._blobs):
            try:
                st = entry.stat()
            except OSError:
                continue
            if entry.name.startswith(".new-"):
                if st.st_mtime < time.time() - 86400:
                    unlink_quietly(entry.path)  # left by a run that was killed
                continue
            blobs.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in blobs)
        cutoff = time.time() - _KEEP_RECENT_SECONDS
        for mtime, size, path in sorted(blobs):
            if total <= self.max_bytes or mtime > cutoff:
                break
            unlink_quietly(path)
            total -= size

    def _record_kinds(self) -> list[str]:
        with contextlib.suppress(OSError), os.scandir(self.root) as entries:
            return [e.name for e in entries if e.name != "blobs" and e.is_dir(follow_symlinks=False)]
        return []

    @staticmethod
    def _prune_records(directory: Path) -> None:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
        if len(names) <= MAX_RECORDS:
            return
        records = []
        for name in names:
            with contextlib.suppress(OSError):
                records.append((os.stat(directory / name).st_mtime, name))
        for _, name in sorted(records)[: len(records) - MAX_RECORDS * 3 // 4]:
            unlink_quietly(str(directory / name))


class _StoredReader:
    """A stored blob read through a :class:`VerifyingReader`; a mismatch removes the blob and
    raises :class:`CorruptBlob`, so that the next attempt makes it again."""

    def __init__(self, store: BlobStore, desc: Descriptor) -> None:
        self._store = store
        self._desc = desc
        path = store.path(desc.digest)
        try:
            handle = RangeReader(path, 0, desc.size)
        except OSError as exc:
            raise CorruptBlob(
                f"cached layer {desc.digest} is gone: {describe_os_error(exc, path)}", desc.digest
            ) from None
        self._reader = VerifyingReader(handle, desc.digest, desc.size, f"cached layer {desc.digest}")

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(n)
        except DigestError as exc:
            self._store.remove(self._desc.digest)
            self._store.corrupt.add(self._desc.digest)
            raise CorruptBlob(f"{exc}; it was removed from the cache", self._desc.digest) from None

    def close(self) -> None:
        self._reader.close()


class _Keeping:
    """A blob read through, and written into the store as it is read (see keep_while_read)."""

    def __init__(self, store: BlobStore, desc: Descriptor, reader: Readable) -> None:
        self._store = store
        self._desc = desc
        self._reader = reader
        self._tmp = store.new_file()
        self._fd = -1
        self._seen = 0
        try:
            self._fd = store.create(self._tmp)
        except OutputError:
            self._tmp = ""  # a store that cannot be written only costs the next build a download

    def read(self, n: int = -1) -> bytes:
        # The verifying reader raises on bytes other than the digest's, in the read that ends them.
        data = self._reader.read(n)
        if self._fd >= 0 and data:
            try:
                write_all(self._fd, data)
                self._seen += len(data)
                if self._seen == self._desc.size:  # every byte, verified: the blob is ours
                    os.close(self._fd)
                    self._fd = -1
                    self._store.commit(self._tmp, self._desc.digest)
                    self._tmp = ""
            except OSError:
                self._drop()
        return data

    def _drop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tmp:
            unlink_quietly(self._tmp)
            self._tmp = ""

    def close(self) -> None:
        self._drop()
        self._reader.close()


def _private_dir(root: Path) -> None:
    """Create ``root`` with mode 0700 (its parents as usual); refuse one that is not ours."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o700)
        st = os.lstat(root)
    except OSError as exc:
        raise OutputError(f"cannot use cache directory {describe_os_error(exc, root)}") from None
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(root)  # a symlink to a directory of ours is fine (e.g. a cache on another disk)
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot use cache directory {root}: it is not a directory")
    uid = getattr(os, "getuid", lambda: st.st_uid)()
    if st.st_uid != uid:
        raise OutputError(
            f"cannot use cache directory {root}: it belongs to user {st.st_uid}, not to you ({uid}); "
            "set ZEROIMAGE_CACHE_DIR to a directory of your own, or use --no-cache"
        )
