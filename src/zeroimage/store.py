"""The local blob store: layers the build made, and the records that let it skip making them.

Layers that a local output needs are written here first, named by digest, and every output
copies from here: one compression serves an OCI archive, a docker-archive and a push at once.
Every read of a stored blob is verified against its digest in the same pass that copies it: a
blob changed on disk (by a bug, a disk, or someone else with access) raises
:class:`CorruptBlob` and is removed, and the build makes it again; wrong bytes never go out
under a digest.

Records map a layer's inputs to the layer they produced (see :mod:`zeroimage.layers.producer`),
a tag to the digest it named, a layer to its listing (:class:`zeroimage.rootfs.ListingCache`).
A record is untrusted input: bounded, every field checked, and a miss when anything is wrong.
The store is bounded (``ZEROIMAGE_CACHE_SIZE`` bytes, default 2 GiB): after each write the least
recently used blobs are removed, never one used in the last ten minutes; records beyond
:data:`MAX_RECORDS` likewise. Concurrent runs are safe: every file appears by atomic rename, and a
missing or unreadable blob or record is a cache miss.

The cache is ours alone, and only ours is touched:

* **Marked.** A cache directory holds ``CACHEDIR.TAG`` (https://bford.info/cachedir/, so that
  backup tools skip it) and :data:`LAYOUT_FILE`, the version of its layout. A directory is used
  only if it carries that mark with a version this zeroimage knows, or is empty (it is then
  marked), or holds nothing but the structure an earlier, unmarked zeroimage made (marked in
  place: the layout is the same). Anything else is refused, never written into: pointing
  ``ZEROIMAGE_CACHE_DIR`` at ``~/.cache`` or a project folder must not cost a file. A cache of
  an older marked layout is emptied of its own structure (the names below, nothing else) and
  marked anew; one of a newer layout is refused.
* **Only our structure.** The directories in :data:`DIRECTORIES` and, inside them, names of the
  forms the store writes (hex keys and digests, ``.new-*.tmp`` temporaries). Nothing else is
  read, pruned or removed.
* **Private.** The root and each of those directories must belong to the user and not be
  writable by group or others (checked with ``lstat``), or the cache is refused with one line
  saying how to fix it: on a shared machine such a directory could hand us someone else's
  layer, or steer our writes. A root that is a symlink (a cache on another disk) is resolved
  once, and its target must pass the same checks; inside the cache no symlink is followed: files
  are opened with ``O_NOFOLLOW`` (a symlink at a blob's name is a missing blob, replaced when the
  blob is made), times are set on the link itself, temporaries are made with ``O_EXCL`` and
  renamed over whatever holds the name — a rename replaces a symlink, never writes through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal, get_args

from zeroimage import files
from zeroimage.errors import DigestError, InputError, OutputError
from zeroimage.files import (
    CHUNK,
    O_BINARY,
    RangeReader,
    Readable,
    VerifyingReader,
    describe_os_error,
    unlink_quietly,
    write_all,
)
from zeroimage.image import Blob, BuiltLayer
from zeroimage.oci import Descriptor, split_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import loads
from zeroimage.untrusted import open_regular, read_regular, whole_number

DEFAULT_MAX_BYTES = 2 << 30
#: Layer records kept (a few hundred bytes each); beyond it, the least recently used quarter goes.
MAX_RECORDS = 4096
#: A record larger than this is not one of ours: a cache miss.
MAX_RECORD_SIZE = 64 * 1024
_KEEP_RECENT_SECONDS = 600
#: A temporary file older than this was left by a run that was killed: prune removes it.
_STALE_SECONDS = 86400

# -- the layout, declared once -------------------------------------------------------------------

#: The version of the layout below; bumped when it changes (see :func:`_layout_state`).
LAYOUT_VERSION = 1
#: The file that marks a directory as a zeroimage cache, holding :data:`LAYOUT_VERSION`.
LAYOUT_FILE = "zeroimage-layout"
#: The Cache Directory Tagging Specification's tag (https://bford.info/cachedir/).
CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
CACHEDIR_TAG_CONTENT = (
    CACHEDIR_SIGNATURE + b"\n"
    b"# This file is a cache directory tag created by zeroimage.\n"
    b"# For information about cache directory tags, see:\n"
    b"#\thttps://bford.info/cachedir/\n"
)
#: What records are kept, each in a directory of its own: a layer by its inputs' identity
#: (``layers``), their shape (``shapes``) or its content (``contents``); the digest a tag named
#: (``tags``); a base layer's listing (``listings``).
RecordKind = Literal["layers", "shapes", "contents", "tags", "listings"]
RECORD_KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
#: The record kinds that name a layer (:meth:`BlobStore.layer_record`).
LayerKind = Literal["layers", "shapes", "contents"]
#: Blobs, named by their digest's hex, whatever its algorithm.
BLOBS = os.path.join("blobs", "sha256")
#: Every directory of a cache, parents first: the store makes these and touches nothing else.
DIRECTORIES: tuple[str, ...] = ("blobs", BLOBS, *RECORD_KINDS)
#: The names the store gives files inside those directories: a key or a digest's hex ...
_NAME = re.compile(r"[0-9a-f]{64}(?:[0-9a-f]{64})?")
#: ... and a file being written (``.new-*.tmp``; ``.<name>.<hex>.tmp`` from zeroimage before 1).
_TEMPORARY = re.compile(r"\.new-[0-9a-f]{16}\.tmp|\.[0-9a-f]{64}(?:[0-9a-f]{64})?\.[0-9a-f]{12}\.tmp")
#: The layer media types a record may name: those zeroimage makes.
_LAYER_MEDIA_TYPES = frozenset({mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD})
#: A recorded layer larger than this (1 TiB) is not one zeroimage made: a miss.
MAX_RECORDED_LAYER = 1 << 40

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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
    ``root/<kind>/<key>`` (see the module for what a directory must be to be used).

    ``root`` is kept as given (for messages); the store works in the directory it resolves to."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        env_max = os.environ.get("ZEROIMAGE_CACHE_SIZE", "").strip()
        if max_bytes is None:
            max_bytes = whole_number(env_max, "ZEROIMAGE_CACHE_SIZE", 1 << 62) if env_max else DEFAULT_MAX_BYTES
        self.max_bytes = max_bytes
        self._dir = _open_cache(root)
        self._blobs = self._dir / BLOBS
        #: Blobs found corrupt (and removed) by this process, whoever read them.
        self.corrupt: set[str] = set()

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
        """Whether the blob is here: a regular file of its size at its name (a symlink there
        is not, and is replaced when the blob is made)."""
        try:
            st = os.lstat(self.path(desc.digest))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == desc.size

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
        return str(self._blobs / _temporary_name())

    def create(self, tmp: str) -> int:
        """Make the temporary file ``tmp`` (from :meth:`new_file`): a new file, never whatever
        holds the name (``O_EXCL`` neither opens an existing file nor follows a symlink)."""
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | O_BINARY, 0o600)
        except OSError as exc:
            raise OutputError(f"cannot write to the cache: {describe_os_error(exc, self._blobs)}") from None

    def commit(self, tmp: str, digest: str) -> None:
        """Give the complete temporary file ``tmp`` its name: the digest of its bytes."""
        os.replace(tmp, self.path(digest))

    def remove(self, digest: str) -> None:
        unlink_quietly(str(self.path(digest)))

    def touch(self, digest: str) -> None:
        """Mark a blob recently used (kept by :meth:`prune`)."""
        _touch(self.path(digest))

    def keep_while_read(self, desc: Descriptor, reader: Readable) -> Readable:
        """``reader`` (a verifying reader of the blob ``desc``) that also writes what it reads
        into the store; the blob takes its name only once every byte was read and verified, so
        a base layer downloaded once is not downloaded again (nor a half or wrong one kept)."""
        return _Keeping(self, desc, reader)

    def document(self, digest: str, limit: int) -> bytes | None:
        """A stored document (manifest, index, config) of at most ``limit`` bytes, verified;
        None when it is not here (or no longer matches its digest, and is removed)."""
        try:
            st = os.lstat(self.path(digest))
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        try:
            reader = self.open(Descriptor("", digest, st.st_size))
        except DigestError:
            return None
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
        with contextlib.suppress(OutputError), _writing(self._blobs, split_digest(desc.digest)[1]) as out:
            out.write(data)

    # -- records -------------------------------------------------------------------------------

    def record_path(self, kind: RecordKind, key: str) -> Path:
        """Where the record ``kind/key`` is kept; ``key`` must be a store name (lowercase hex of
        64 or 128 digits): any other is a bug of the caller's, a ValueError."""
        if kind not in RECORD_KINDS or not _NAME.fullmatch(key):
            raise ValueError(f"not a record of the store: {kind}/{key}")
        return self._dir / kind / key

    def open_record(self, kind: RecordKind, key: str) -> int | None:
        """A descriptor of the record ``kind/key`` open for reading (marked recently used), or
        None when there is none that is a regular file itself (a symlink is never followed)."""
        path = self.record_path(kind, key)
        try:
            fd = open_regular(path, str(path))
        except (OSError, InputError):
            return None
        _touch(path)
        return fd

    @contextmanager
    def writing(self, kind: RecordKind, key: str) -> Iterator[BinaryIO]:
        """A file that becomes the record ``kind/key`` if the block completes (atomically: a
        reader sees the old record or the new one, whole); OutputError if it cannot be made."""
        with _writing(self._dir / kind, self.record_path(kind, key).name) as out:
            yield out

    def forget(self, kind: RecordKind, key: str) -> None:
        """Remove the record ``kind/key`` (a symlink there goes, never what it points at)."""
        unlink_quietly(self.record_path(kind, key))

    def record(self, kind: RecordKind, key: str) -> dict[str, object] | None:
        """The JSON object stored under ``kind/key`` (marked recently used), or None: a missing,
        unreadable, oversized or malformed record is a cache miss, never an error."""
        fd = self.open_record(kind, key)
        if fd is None:
            return None
        try:
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read(MAX_RECORD_SIZE + 1)
            if len(raw) > MAX_RECORD_SIZE:
                return None
            return loads(raw, f"record {kind}/{key}")
        except (OSError, InputError):
            return None

    def put_record(self, kind: RecordKind, key: str, value: Mapping[str, object]) -> None:
        """Keep ``value`` (JSON) under ``kind/key``; a record that cannot be written is a future miss."""
        with contextlib.suppress(OutputError), self.writing(kind, key) as out:
            out.write(json.dumps(value).encode())

    def layer_record(
        self, key: str, need_blob: bool = True, *, kind: LayerKind = "layers", media_type: str | None = None
    ) -> BuiltLayer | None:
        """The layer recorded under ``kind/key`` (of ``media_type`` when given); with
        ``need_blob``, only if its blob is here too (marked recently used). A record that is
        not exactly what :meth:`put_layer_record` writes is a miss."""
        record = self.record(kind, key)
        layer = layer_of_record(record, media_type) if record is not None else None
        if layer is None or (need_blob and not self.has(layer.descriptor)):
            return None
        if need_blob:
            self.touch(layer.descriptor.digest)
        return layer

    def put_layer_record(self, key: str, layer: BuiltLayer, *, kind: LayerKind = "layers") -> None:
        self.put_record(kind, key, record_of_layer(layer))

    # -- bounds --------------------------------------------------------------------------------

    def prune(self) -> None:
        """Remove least recently used blobs until the store fits its bound, and least recently
        used records beyond :data:`MAX_RECORDS` of each kind (pushes write records alone).
        Only files of the store's own names are looked at; temporaries left by killed runs go."""
        for kind in RECORD_KINDS:
            self._prune_records(self._dir / kind)
        blobs = [(st.st_mtime, st.st_size, path) for path, st in _own_files(self._blobs)]
        total = sum(size for _, size, _ in blobs)
        cutoff = time.time() - _KEEP_RECENT_SECONDS
        for mtime, size, path in sorted(blobs):
            if total <= self.max_bytes or mtime > cutoff:
                break
            unlink_quietly(path)
            total -= size

    @staticmethod
    def _prune_records(directory: Path) -> None:
        records = sorted((st.st_mtime, path) for path, st in _own_files(directory))
        if len(records) <= MAX_RECORDS:
            return
        for _, path in records[: len(records) - MAX_RECORDS * 3 // 4]:
            unlink_quietly(path)


def record_of_layer(layer: BuiltLayer) -> dict[str, object]:
    """What a layer record holds: the blob's media type, digest and size, and the diff_id."""
    desc = layer.descriptor
    return {
        "descriptor": {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size},
        "diff_id": layer.diff_id,
    }


def layer_of_record(record: Mapping[str, object], media_type: str | None = None) -> BuiltLayer | None:
    """The layer ``record`` names if it is exactly what :func:`record_of_layer` writes — those
    keys alone, a layer media type zeroimage makes (``media_type`` when given), a positive size
    below :data:`MAX_RECORDED_LAYER`, sha256 digests — else None."""
    desc, diff_id = record.get("descriptor"), record.get("diff_id")
    if set(record) != {"descriptor", "diff_id"} or not isinstance(desc, dict) or not _is_sha256(diff_id):
        return None
    if set(desc) != {"mediaType", "digest", "size"} or not _is_sha256(desc["digest"]):
        return None
    kind, size = desc["mediaType"], desc["size"]
    if not isinstance(kind, str) or kind not in _LAYER_MEDIA_TYPES or (media_type is not None and kind != media_type):
        return None
    if type(size) is not int or not 0 < size <= MAX_RECORDED_LAYER:
        return None
    assert isinstance(diff_id, str)
    return BuiltLayer(Descriptor(kind, desc["digest"], size), diff_id)


_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


class _StoredReader:
    """A stored blob read through a :class:`VerifyingReader`; a mismatch removes the blob and
    raises :class:`CorruptBlob`, so that the next attempt makes it again."""

    def __init__(self, store: BlobStore, desc: Descriptor) -> None:
        self._store = store
        self._desc = desc
        path = store.path(desc.digest)
        what = f"cached layer {desc.digest}"
        try:
            handle = RangeReader(open_regular(path, what), 0, desc.size)  # never through a symlink
        except OSError as exc:
            raise CorruptBlob(f"{what} is gone: {describe_os_error(exc, path)}", desc.digest) from None
        except InputError as exc:
            raise CorruptBlob(str(exc), desc.digest) from None
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


# -- the directory: ours, private, marked -----------------------------------------------------------


def _open_cache(root: Path) -> Path:
    """The directory the cache ``root`` names — made (0700) if missing, resolved once if a
    symlink — checked private, holding every directory of :data:`DIRECTORIES` (each checked), and
    marked; OutputError, one line saying how to fix it, for one that cannot be used."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o700)
        st = os.lstat(root)
        real = root
        if stat.S_ISLNK(st.st_mode):  # a cache kept on another disk: the link decides where we write
            _check_owner(root, root, st, link=True)
            real = Path(os.path.realpath(root))
            st = os.lstat(real)
    except OSError as exc:
        raise OutputError(f"cannot use cache directory {describe_os_error(exc, root)}") from None
    _check_private(root, real, st)
    state = _layout_state(root, real)
    # An unmarked directory holds nothing but our structure: one an earlier zeroimage made, whose
    # subdirectories took the umask's mode (0775 under a umask of 002). Nobody else could enter
    # them while the root was closed to all but its owner; they are made private, not refused.
    tighten = state == "unmarked" and files.POSIX_MODES and stat.S_IMODE(st.st_mode) & 0o077 == 0
    for name in DIRECTORIES:
        _make_dir(root, real / name, tighten)
    if state == "older":
        for name in DIRECTORIES:
            for path, _ in _own_files(real / name):
                unlink_quietly(path)
    _mark(root, real, state != "marked")
    return real


def _uid(st: os.stat_result) -> int:
    """The user's id; ``st``'s owner on a host without user ids (Windows), where any owner is."""
    getuid = getattr(os, "getuid", None)
    return st.st_uid if getuid is None else int(getuid())


def _check_owner(root: Path, path: Path, st: os.stat_result, link: bool = False) -> None:
    uid = _uid(st)
    if st.st_uid != uid and not (link and st.st_uid == 0):
        where = "it" if path == root else str(path)
        raise OutputError(
            f"cannot use cache directory {root}: {where} belongs to user {st.st_uid}, not to you ({uid}); "
            "set ZEROIMAGE_CACHE_DIR to a directory of your own, or use --no-cache"
        )


def _check_private(root: Path, path: Path, st: os.stat_result) -> None:
    """Refuse ``path`` (the root, or a directory in it) unless it is a directory itself, the
    user's, and not writable by group or others."""
    where = "it" if path == root else str(path)
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"cannot use cache directory {root}: {where} is a symlink, which zeroimage never follows inside "
            "its cache; remove it (to keep the cache elsewhere, point ZEROIMAGE_CACHE_DIR, or a symlink, "
            "at the whole directory)"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot use cache directory {root}: {where} is not a directory; remove it")
    _check_owner(root, path, st)
    if files.POSIX_MODES and st.st_mode & 0o022:
        raise OutputError(
            f"cannot use cache directory {root}: {where} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), who could put their layers in your images; "
            f"make it private (chmod go-w {path}), or set ZEROIMAGE_CACHE_DIR to a directory of your own"
        )


def _make_dir(root: Path, path: Path, tighten: bool) -> None:
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.lstat(path)
        if tighten and stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022 and st.st_uid == _uid(st):
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
            st = os.lstat(path)
    except OSError as exc:
        raise OutputError(f"cannot use cache directory {root}: {describe_os_error(exc, path)}") from None
    _check_private(root, path, st)


def _layout_state(root: Path, real: Path) -> Literal["marked", "older", "unmarked"]:
    """Whether ``real`` is a cache of this layout, of an older one of ours, or unmarked and
    holding nothing but our structure (empty, or made by a zeroimage before the mark);
    OutputError for a newer layout and for anything else."""
    version = _read_layout(root, real)
    if version is None:
        try:
            names = os.listdir(real)
        except OSError as exc:
            raise OutputError(f"cannot use cache directory {describe_os_error(exc, real)}") from None
        if LAYOUT_FILE in names:  # marked meanwhile, by a run beside this one
            version = _read_layout(root, real)
    if version == LAYOUT_VERSION:
        return "marked"
    if version is not None:
        if version > LAYOUT_VERSION:
            raise OutputError(
                f"cannot use cache directory {root}: it is the cache of a newer zeroimage (layout {version}; "
                f"this one knows {LAYOUT_VERSION}); set ZEROIMAGE_CACHE_DIR to another directory for this "
                "version, or remove this one to start afresh"
            )
        return "older"
    foreign = sorted(name for name in names if not _ours(real, name))
    if foreign:
        shown = ", ".join(repr(name) for name in foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise OutputError(
            f"cannot use cache directory {root}: it is not empty and not a zeroimage cache (it holds {shown}); "
            "zeroimage keeps its cache in a directory of its own and never touches other files: set "
            "ZEROIMAGE_CACHE_DIR to a new directory (e.g. ~/.cache/zeroimage), or move those files away"
        )
    return "unmarked"


def _read_layout(root: Path, real: Path) -> int | None:
    """The layout version ``real`` is marked with; None if it carries no mark."""
    path = real / LAYOUT_FILE
    if not os.path.lexists(path):
        return None
    how = f"set ZEROIMAGE_CACHE_DIR to a directory of its own, or remove {root} if it is a cache of zeroimage's"
    try:
        data = read_regular(path, 64, str(path))
    except FileNotFoundError:  # gone since it was seen
        return None
    except InputError as exc:
        raise OutputError(f"cannot use cache directory {root}: {exc}; {how}") from None
    match = re.fullmatch(rb"([0-9]{1,9})\n?", data)
    if match is None:
        raise OutputError(f"cannot use cache directory {root}: {path} is not a layout file zeroimage wrote; {how}")
    return int(match.group(1))


def _ours(real: Path, name: str) -> bool:
    """Whether the entry ``name`` of an unmarked cache directory is one zeroimage makes there."""
    path = real / name
    if name == CACHEDIR_TAG:  # ours, or another tool's tag that says the same: kept as it is
        try:
            return read_regular(path, 4096, name).startswith(CACHEDIR_SIGNATURE)
        except (InputError, FileNotFoundError):
            return False
    if name == "blobs":  # a blobs/ of anything but sha256/ is another program's store
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return set(os.listdir(path)) <= {"sha256"}
        return True  # not a directory: refused by name when the directories are checked
    return name in DIRECTORIES or _TEMPORARY.fullmatch(name) is not None


def _mark(root: Path, real: Path, version: bool) -> None:
    """Give ``real`` its cache directory tag (unless it has one) and, with ``version``, its
    layout file: the last step of making a directory a cache, so that one interrupted before
    it holds only our structure, and is taken again."""
    try:
        if not os.path.lexists(real / CACHEDIR_TAG):
            with _writing(real, CACHEDIR_TAG) as out:
                out.write(CACHEDIR_TAG_CONTENT)
        if version:
            with _writing(real, LAYOUT_FILE) as out:
                out.write(f"{LAYOUT_VERSION}\n".encode())
    except OutputError as exc:
        raise OutputError(f"cannot use cache directory {root}: {exc}") from None


# -- files inside: never through a symlink ----------------------------------------------------------


def _temporary_name() -> str:
    return f".new-{os.urandom(8).hex()}.tmp"


@contextmanager
def _writing(directory: Path, name: str) -> Iterator[BinaryIO]:
    """A new file that becomes ``directory/name`` if the block completes. It is made with
    ``O_EXCL`` (never an existing file, never through a symlink at its name) and renamed over
    whatever holds the name (a symlink there is replaced, never written through)."""
    tmp = directory / _temporary_name()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | O_BINARY, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot write to the cache: {describe_os_error(exc, directory)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp, directory / name)
    except OSError as exc:
        unlink_quietly(tmp)
        raise OutputError(f"cannot write to the cache: {describe_os_error(exc, directory / name)}") from None
    except BaseException:
        unlink_quietly(tmp)
        raise


def _touch(path: Path) -> None:
    """Mark a file of the store recently used: the time of a symlink there is its own."""
    now = time.time()
    with contextlib.suppress(OSError):
        if os.utime in os.supports_follow_symlinks:
            os.utime(path, (now, now), follow_symlinks=False)
        elif stat.S_ISREG(os.lstat(path).st_mode):  # a host that cannot say so: look first
            os.utime(path, (now, now))


def _own_files(directory: Path) -> Iterator[tuple[str, os.stat_result]]:
    """The regular files of ``directory`` named as the store names them, with their ``lstat``;
    temporaries left by a run killed a day ago are removed on the way. Nothing else is looked at."""
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError:
        return
    stale = time.time() - _STALE_SECONDS
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if _NAME.fullmatch(entry.name):
            yield entry.path, st
        elif _TEMPORARY.fullmatch(entry.name) and st.st_mtime < stale:
            unlink_quietly(entry.path)
