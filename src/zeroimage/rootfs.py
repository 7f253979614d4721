"""The filesystem an image will have: base layers listed (headers only) with whiteouts honoured,
plus the entries of new layers, with symlinks resolved inside the image.

Listing a layer streams it once through its decompressor and reads tar headers, within the bounds
of :mod:`zeroimage.untrusted`; the few small files the build needs to read (``/etc/passwd``,
``/etc/group``, ``/etc/ld.so.conf*``, ``os-release``) are kept, and of each shared library
(``*.so``, ``*.so.N``, up to 32 MiB) only what the loader checks: the libraries it needs, its
RPATH/RUNPATH and its symbol versions. Of the package databases an SBOM describes a base by
(dpkg's ``status`` and distroless's ``status.d/*``, Alpine's ``lib/apk/db/installed``) only the
fields it names are kept, one line each, paragraphs as they were: a few MB of a full Debian
``status`` keep a tenth of that. Listings are cached per layer digest, so a base is listed once
per machine.

A base is not trusted to be small. Its filesystem is a tree of directories keyed by name (a long
path costs no more than its last name); entries that differ only in their path share one frozen
:class:`Node`; a whiteout removes its subtree in time proportional to that subtree, so a layer
costs time linear in its entries. One layer, and the filesystem as a whole, may hold at most
:data:`MAX_ENTRIES` entries and :data:`MAX_TEXT` bytes of names, link targets, kept contents and
library facts; beyond either the build stops with an error naming the limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from zeroimage.elf import BinaryInfo, inspect_binary, parse_elf
from zeroimage.errors import InputError, OutputError
from zeroimage.files import Readable
from zeroimage.image import Blob
from zeroimage.layers.entries import Entry
from zeroimage.oci import mediatypes as mt
from zeroimage.oci import split_digest
from zeroimage.untrusted import BoundedTarInfo, TarRefused, next_member

if TYPE_CHECKING:
    from zeroimage.store import BlobStore

#: The distribution's name and version (the SBOM reads the first there is).
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
#: Files whose content the build reads from the image (users, groups, loader search path, the
#: distribution's name and version).
_KEEP_CONTENT = ("etc/passwd", "etc/group", "etc/ld.so.conf", *OS_RELEASE)
_KEEP_PREFIXES = ("etc/ld.so.conf.d/", "etc/ld-musl-")
_MAX_KEPT = 256 * 1024


@dataclass(frozen=True)
class Database:
    """A package database's format, as its listing keeps it: of each paragraph (a package) only
    ``fields``, each on one line; continuation lines, other fields and runs of blank lines
    dropped. ``fold``: its field names are case-insensitive (dpkg's), compared lowercased."""

    fields: frozenset[str]
    fold: bool


#: The package databases the SBOM reads (zeroimage.sbom.base): dpkg's status, distroless's
#: status.d (one file a package, and its .md5sums), Alpine's installed.
DPKG = Database(frozenset({"package", "status", "version", "architecture", "source", "maintainer"}), fold=True)
APK = Database(frozenset({"P", "V", "A", "L", "o", "m"}), fold=False)
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_DIR = "var/lib/dpkg/status.d"
APK_INSTALLED = "lib/apk/db/installed"
_DATABASES = {DPKG_STATUS: DPKG, APK_INSTALLED: APK}
_MAX_DATABASE = 64 << 20  # a larger database is listed but not read (the SBOM says so)
_MAX_COMPACT = 2 << 20  # nor kept when what is kept of it is larger than this
_MAX_DATABASE_LINE = 64 * 1024  # a longer line is dropped
_MAX_LIBRARY = 32 << 20  # a larger library is listed but not read (its needs go unchecked)
_MAX_LINKS = 40
#: Names one lookup walks, links followed included: the kernel's bounds (40 links of at most
#: 4095 bytes) allow more, but no real path needs more than a few dozen.
_MAX_STEPS = 4096
#: Entries (files, directories, links, whiteouts) in one layer, or in an image's filesystem.
MAX_ENTRIES = 1_000_000
#: Bytes of names, link targets, kept file contents and library facts, likewise.
MAX_TEXT = 64 << 20
_STRING_COST = 64  # what a string of library facts costs beyond its characters (its object)
_SHARED = 4096  # distinct nodes shared while listing one layer
_KINDS = ("file", "dir", "symlink", "hardlink", "other")
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class Node:
    """What the build knows of one entry: kind, mode, owner, link target; the content of the few
    files it reads; what the loader checks of a shared library. Entries that differ only in
    their path share one Node, so a million of them cost little more than their names."""

    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    content: str | None = None
    #: a shared library's dynamic section (when it was read): what the loader checks
    library: bool = False
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    versions_needed: tuple[tuple[str, str], ...] = ()
    versions_defined: tuple[str, ...] = ()


#: A directory that only its members imply (runtimes create it on extraction). It is never
#: shared with a directory a layer names, so that applying a layer leaves the mode and owner of
#: a directory already there as they were.
_IMPLIED = Node("dir", 0o755)


def _text(node: Node) -> int:
    """The bytes a node holds beyond its fixed size: what :data:`MAX_TEXT` bounds."""
    size = len(node.target) + (len(node.content) if node.content is not None else 0)
    if node.library:
        strings = [*node.needed, *node.rpath, *node.versions_defined, *(a + b for a, b in node.versions_needed)]
        size += sum(map(len, strings)) + _STRING_COST * len(strings)
    return size


def is_status_part(name: str) -> bool:
    """Whether the file ``name`` of :data:`DPKG_STATUS_DIR` is a package's paragraph (its
    ``.md5sums`` beside it is not)."""
    return bool(name) and "/" not in name and not name.endswith(".md5sums")


def _database(path: str) -> Database | None:
    """The format of the package database at ``path``; None if it is not one."""
    directory, _, name = path.rpartition("/")
    if directory == DPKG_STATUS_DIR and is_status_part(name):
        return DPKG
    return _DATABASES.get(path)


def _keep(path: str) -> bool:
    return path in _KEEP_CONTENT or path.startswith(_KEEP_PREFIXES) or _database(path) is not None


def _kept_content(path: str, handle: IO[bytes], size: int) -> str | None:
    """What is kept of a file :func:`_keep` names, read from ``handle``; None when it is too large."""
    database = _database(path)
    if database is None:
        return handle.read(_MAX_KEPT).decode("utf-8", "replace") if size <= _MAX_KEPT else None
    return _compact(handle, database) if size <= _MAX_DATABASE else None


def _compact(handle: IO[bytes], database: Database) -> str | None:
    """The lines of a package database (RFC 822-style paragraphs: dpkg's, and apk's one-letter
    fields) whose field ``database`` keeps, paragraphs separated by one blank line; None when
    that comes to more than _MAX_COMPACT bytes."""
    fold, fields = database.fold, database.fields
    kept: list[bytes] = []
    size = 0
    blank = True  # no blank line before the first paragraph, nor two in a row
    while line := handle.readline(_MAX_DATABASE_LINE + 1):
        if not line.endswith(b"\n") and len(line) > _MAX_DATABASE_LINE:
            while line and not line.endswith(b"\n"):  # the rest of a line too long to keep
                line = handle.readline(_MAX_DATABASE_LINE + 1)
            continue
        line = line.rstrip(b"\r\n")
        if not line.strip():
            if not blank:
                kept.append(b"\n")
                blank = True
            continue
        if line[:1] in (b" ", b"\t"):
            continue  # the continuation of a multi-line field (Description, Conffiles)
        key = line.partition(b":")[0].decode("utf-8", "replace")
        if (key.lower() if fold else key) not in fields:
            continue
        kept.append(line + b"\n")
        blank = False
        size += len(line) + 1
        if size > _MAX_COMPACT:
            return None
    return b"".join(kept).decode("utf-8", "replace")


def is_library_name(path: str) -> bool:
    """libc.so.6, ld-linux-x86-64.so.2, libfoo.so: names the loader loads."""
    name = posixpath.basename(path)
    return name.endswith(".so") or ".so." in name


def _library_facts(info: BinaryInfo) -> dict[str, Any]:
    if info.format != "elf":
        return {}
    return {
        "library": True,
        "needed": info.needed,
        "rpath": info.rpath,
        "versions_needed": info.versions_needed,
        "versions_defined": info.versions_defined,
    }


def _read_library(data: bytes, path: str) -> dict[str, Any]:
    """What the loader would check of a library in a layer; nothing when it is not a valid ELF."""
    try:
        return _library_facts(parse_elf(lambda offset, length: data[offset : offset + length], len(data), path))
    except InputError:
        return {}


class _Stream(io.RawIOBase):
    """Adapts a Readable to the raw file object that decompressors and tarfile read from."""

    def __init__(self, raw: Readable) -> None:
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


#: The largest window a zstd frame of a base layer may ask for: the decompressor holds that much
#: of the output in memory. 128 MiB is libzstd's and the zstd command's own limit (beyond it they
#: want ``--long=N``/``--memory``): levels 1 to 19 ask for 8 MiB at most, ``--ultra -20`` to
#: ``-22`` and ``--long`` for 32 to 128 MiB. (containerd's decoder takes up to 512 MiB.)
MAX_ZSTD_WINDOW = 128 << 20


def decompressed(blob: Blob) -> tuple[IO[bytes], Readable]:
    """The layer's tar stream (gzip, zstd or none, as its media type says), and the reader of
    its compressed bytes, verified against its digest, to close. What is read of the stream
    raises :class:`Undecompressible` where the bytes are not what the media type says."""
    raw = blob.open()
    kind = mt.compression_of(blob.descriptor.media_type)
    stream: Any = io.BufferedReader(_Stream(raw), 1 << 20)
    what = f"layer {blob.descriptor.digest}"
    if kind == "gzip":
        from isal import igzip, isal_zlib

        reader: Any = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
        # isal's stubs call its error class an instance of Exception; it is the class itself
        stream = _Decompressing(reader, what, "gzip", cast("type[Exception]", isal_zlib.error))
    elif kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW).stream_reader(stream)
        stream = _Decompressing(reader, what, "zstd", zstandard.ZstdError)
    return stream, raw


class Undecompressible(InputError):
    """A layer whose bytes are not the compressed stream its media type names: the message
    names the layer, ``why`` says alone what is wrong (for whoever says what it was doing)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} does not decompress: {why}")
        self.why = why


class _Decompressing:
    """A decompressor's stream whose own errors (which are no OSError: ISA-L's on a corrupt
    deflate block, zstd's on anything) are :class:`Undecompressible`; a zstd frame asking for a
    window over :data:`MAX_ZSTD_WINDOW` is refused so, before any of it is allocated."""

    def __init__(self, reader: Any, what: str, kind: str, errors: type[Exception]) -> None:
        self._reader = reader
        self._what = what
        self._kind = kind
        self._errors = errors

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._reader.read(n)
        except self._errors as exc:
            if "too much memory" in str(exc):  # libzstd: ZSTD_error_frameParameter_windowTooLarge
                raise Undecompressible(
                    self._what,
                    f"a zstd frame asks for a window larger than {MAX_ZSTD_WINDOW >> 20} MiB, "
                    "the most zeroimage decompresses",
                ) from None
            raise Undecompressible(self._what, f"not valid {self._kind} data ({str(exc)[:120]})") from None
        return data


class _Dir(dict[str, "Node | _Dir"]):
    """A directory: its own node, and its entries by name."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node


def _weight(name: str, child: Node | _Dir) -> tuple[int, int]:
    """The entries and text bytes of ``child`` and of everything below it."""
    entries = text = 0
    stack: list[tuple[str, Node | _Dir]] = [(name, child)]
    while stack:
        name, child = stack.pop()
        entries += 1
        if isinstance(child, _Dir):
            text += len(name) + _text(child.node)
            stack.extend(child.items())
        else:
            text += len(name) + _text(child)
    return entries, text


class _Tree:
    """Entries by name below a root directory; their number and text bounded."""

    def __init__(self, what: str) -> None:
        self._root = _Dir(_IMPLIED)
        self._what = what
        self._entries = 0
        self._text = 0

    def _grow(self, entries: int, text: int) -> None:
        self._entries += entries
        self._text += text
        if self._entries > MAX_ENTRIES:
            raise InputError(f"{self._what} has more than {MAX_ENTRIES} entries, more than zeroimage lists")
        if self._text > MAX_TEXT:
            raise InputError(
                f"{self._what} holds more than {MAX_TEXT >> 20} MiB of names, link targets and file contents, "
                "more than zeroimage lists"
            )

    def _drop(self, directory: _Dir, name: str) -> None:
        child = directory.pop(name, None)
        if child is not None:
            entries, text = _weight(name, child)
            self._entries -= entries
            self._text -= text

    def _put(self, path: str, node: Node) -> None:
        """``node`` at ``path``, in place of what was there; a member implies its parents."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts:
            return
        directory = self._root
        for name in parts[:-1]:
            child = directory.get(name)
            directory = child if isinstance(child, _Dir) else self._set_dir(directory, name, _IMPLIED)
        if node.kind == "dir":
            self._set_dir(directory, parts[-1], node)
        else:
            self._set_leaf(directory, parts[-1], node)

    def _set_dir(self, directory: _Dir, name: str, node: Node) -> _Dir:
        """The directory ``name`` with ``node``; one already there keeps its entries."""
        old = directory.get(name)
        if isinstance(old, _Dir):
            self._grow(0, _text(node) - _text(old.node))
            old.node = node
            return old
        self._drop(directory, name)
        new = directory[name] = _Dir(node)
        self._grow(1, len(name) + _text(node))
        return new

    def _set_leaf(self, directory: _Dir, name: str, node: Node) -> None:
        self._drop(directory, name)
        directory[name] = node
        self._grow(1, len(name) + _text(node))

    def _lookup(self, path: str) -> Node | _Dir | None:
        """The entry at ``path`` taken literally (no symlink followed)."""
        child: Node | _Dir = self._root
        for name in path.split("/"):
            if name in ("", "."):
                continue
            if not isinstance(child, _Dir):
                return None
            found = child.get(name)
            if found is None:
                return None
            child = found
        return child


#: Entries without a parent entry kept per listing (their number is always counted).
MAX_ORPHANS = 8


class Listing(_Tree):
    """The entries of one layer, whiteouts included, as :meth:`FileTree.apply` takes them and
    :class:`ListingCache` keeps them. Iterating gives ``(path, node)``, parents first.

    Also what AWS Lambda judges a layer by: its ``size`` uncompressed, and its ``orphans`` —
    entries that come without an entry for their parent directory before them in the layer
    (Lambda refuses such a layer: MissingParentDirectory); ``orphan_count`` counts them all."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.size = 0
        self.orphans: tuple[str, ...] = ()
        self.orphan_count = 0

    def add(self, path: str, node: Node) -> None:
        self._put(path, node)

    def add_in_order(self, path: str, node: Node) -> None:
        """``add``, for an entry read from a layer in its order: note it if its parent has no
        entry of its own before it."""
        parent = posixpath.dirname(path)
        if parent:
            found = self._lookup(parent)
            if not isinstance(found, _Dir) or found.node is _IMPLIED:
                self.orphan_count += 1
                if len(self.orphans) < MAX_ORPHANS:
                    self.orphans += (path,)
        self._put(path, node)

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        stack: list[tuple[str, _Dir]] = [("", self._root)]
        while stack:
            prefix, directory = stack.pop()
            for name, child in directory.items():
                path = prefix + name
                if isinstance(child, _Dir):
                    if child.node is not _IMPLIED:
                        yield path, child.node
                    stack.append((path + "/", child))
                else:
                    yield path, child


class FileTree(_Tree):
    """An image's filesystem, its layers applied in order; paths have no leading '/'."""

    def __init__(self) -> None:
        super().__init__("the image's filesystem")
        self.layers_size = 0  # the listed layers' size, uncompressed (base_tree)

    def apply(self, entries: Iterable[tuple[str, Node]]) -> None:
        """Apply one layer: in each directory its opaque marker and whiteouts first (they remove
        what lower layers left, never the layer's own entries), then its entries."""
        if not isinstance(entries, Listing):
            listing = Listing("a layer")
            for path, node in entries:
                listing.add(path, node)
            entries = listing
        stack = [(self._root, entries._root)]
        while stack:
            lower, layer = stack.pop()
            if _OPAQUE in layer:
                for name in list(lower):
                    self._drop(lower, name)
            for name in layer:
                if name.startswith(_WHITEOUT) and name != _OPAQUE:
                    self._drop(lower, name[len(_WHITEOUT) :])
            for name, child in layer.items():
                if name.startswith(_WHITEOUT):
                    continue
                if not isinstance(child, _Dir):
                    self._set_leaf(lower, name, child)
                    continue
                existing = lower.get(name)
                if child.node is _IMPLIED and isinstance(existing, _Dir):
                    stack.append((existing, child))
                else:
                    stack.append((self._set_dir(lower, name, child.node), child))

    def add_entries(self, entries: Iterable[Entry]) -> None:
        self.apply((e.path.lstrip("/"), _entry_node(e)) for e in entries)

    def resolve(self, path: str) -> tuple[str, Node] | None:
        """Follow symlinks (in every component) inside the image, and a hard link to the entry
        it links; None if it does not exist, or takes more than _MAX_LINKS links or
        _MAX_STEPS names to reach (as the kernel gives up with ELOOP)."""
        pending = [p for p in reversed(path.split("/")) if p not in ("", ".")]
        dirs = [self._root]  # the directories walked through, the root first
        names: list[str] = []
        node = self._root.node
        hops = steps = 0
        while pending:
            steps += 1
            if steps > _MAX_STEPS or len(pending) > _MAX_STEPS:
                return None
            part = pending.pop()
            if part == "..":
                if names:
                    names.pop()
                    dirs.pop()
                node = dirs[-1].node
                continue
            child = dirs[-1].get(part)
            if child is None:
                return None
            node = child.node if isinstance(child, _Dir) else child
            if node.kind == "symlink":
                hops += 1
                if hops > _MAX_LINKS or node.target.count("/") > _MAX_STEPS:
                    return None
                if node.target.startswith("/"):
                    dirs, names = [self._root], []
                pending += [p for p in reversed(node.target.split("/")) if p not in ("", ".")]
                node = dirs[-1].node
                continue
            if node.kind == "hardlink":
                linked = self._lookup(node.target)
                if linked is not None:
                    child = linked
                    node = linked.node if isinstance(linked, _Dir) else linked
            names.append(part)
            if isinstance(child, _Dir):
                dirs.append(child)
            elif pending:
                return None
        return "/".join(names), node

    def exists(self, path: str) -> bool:
        return self.resolve(path) is not None

    def is_dir(self, path: str) -> bool:
        found = self.resolve(path)
        return found is not None and found[1].kind == "dir"

    def read_text(self, path: str) -> str | None:
        found = self.resolve(path)
        return found[1].content if found else None

    def children(self, directory: str) -> Iterator[str]:
        """The paths of a directory's entries (the directory taken literally)."""
        found = self._lookup(directory)
        if isinstance(found, _Dir):
            prefix = "/".join(p for p in directory.split("/") if p not in ("", "."))
            yield from (f"{prefix}/{name}" if prefix else name for name in list(found))


def _entry_node(entry: Entry) -> Node:
    path = entry.path.lstrip("/")
    content = None
    if entry.data is not None and _keep(path):
        content = _kept_content(path, io.BytesIO(entry.data), len(entry.data))
    elif _keep(path) and entry.source is not None:
        # an /etc/passwd added from the host is read as a base's would be (--user NAME needs it)
        with contextlib.suppress(OSError), open(entry.source, "rb") as handle:
            content = _kept_content(path, handle, entry.size)
    facts: dict[str, Any] = {}
    if entry.kind == "file" and entry.source is not None and is_library_name(path):
        with contextlib.suppress(InputError):  # an added library is checked like the base's
            facts = _library_facts(inspect_binary(entry.source))
    return Node(entry.kind, entry.mode, entry.uid, entry.gid, entry.target, content, **facts)


class _Nodes:
    """One Node for all the entries that differ only in their path (most of a layer)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int, str], Node] = {}

    def get(self, kind: str, mode: int, uid: int, gid: int, target: str) -> Node:
        key = (kind, mode, uid, gid, target)
        node = self._known.get(key)
        if node is None:
            node = Node(*key)
            if len(self._known) < _SHARED:
                self._known[key] = node
        return node


def list_layer(blob: Blob) -> Listing:
    """Every entry of a layer (its whiteouts too), in one pass over its bytes."""
    what = f"layer {blob.descriptor.digest}"
    listing = Listing(what)
    nodes = _Nodes()
    stream, raw = decompressed(blob)
    counted = _Counted(stream)
    try:
        with tarfile.open(fileobj=counted, mode="r|", tarinfo=BoundedTarInfo) as tar:  # type: ignore[call-overload]
            for info in _members(tar):
                path = posixpath.normpath(info.name.lstrip("/")).lstrip("/")
                if path in (".", "", "..") or path.startswith("../"):
                    continue
                listing.add_in_order(path, _member_node(tar, info, path, nodes))
        # reading to the end counts the layer's whole size, and lets the verifying reader check the digest
        while counted.read(1 << 20):
            pass
        while raw.read(1 << 20):
            pass
        listing.size = counted.count
    except Undecompressible as exc:
        raise InputError(f"cannot list {what}: {exc.why}") from None
    except TarRefused as exc:
        raise InputError(f"cannot list {what}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"cannot list {what}: {str(exc)[:120]}") from None
    finally:
        raw.close()
    return listing


class _Counted:
    """A stream that counts the bytes read from it (a layer's uncompressed size)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.count += len(data)
        return data


def _member_node(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, nodes: _Nodes) -> Node:
    kind = (
        "dir"
        if info.isdir()
        else "symlink"
        if info.issym()
        else "hardlink"
        if info.islnk()
        else "file"
        if info.isreg()
        else "other"
    )
    if info.isreg() and _keep(path):
        handle = tar.extractfile(info)
        content = _kept_content(path, handle, info.size) if handle is not None else None
        if content is not None:
            return Node(kind, info.mode, info.uid, info.gid, info.linkname, content)
    elif info.isreg() and is_library_name(path) and info.size <= _MAX_LIBRARY:
        handle = tar.extractfile(info)
        facts = _read_library(handle.read(), path) if handle is not None else {}
        if facts:
            return Node(kind, info.mode, info.uid, info.gid, info.linkname, **facts)
    return nodes.get(kind, info.mode, info.uid, info.gid, info.linkname)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members of a streamed tar, each forgotten by ``tar`` once read. Some writers (umoci) end
    a layer without the two zero blocks: a clean end after the last member is accepted (the
    layer's digest is verified anyway)."""
    count = 0
    while True:
        try:
            info = next_member(tar)
        except tarfile.ReadError as exc:
            if count and "unexpected end of data" in str(exc):
                return
            raise
        if info is None:
            return
        count += 1
        yield info


#: The first line of a cached listing: its format.
_HEADER = b"zeroimage listing 5\n"
#: A listing whose cached form would be larger is not kept (it is listed again when needed).
MAX_CACHED = 32 << 20
_MAX_RECORD = 4 << 20  # one entry's line: a kept file's content (escaped), or a library's facts
_EXTRAS = {"content", "library", "needed", "rpath", "versions_needed", "versions_defined"}


class _BadRecord(Exception):
    """A cached listing that is not what :func:`_write_listing` writes."""


class _TooLarge(Exception):
    """A listing too large to keep."""


class ListingCache:
    """Layer listings by digest, kept as records of the store (``listings``, see
    :class:`~zeroimage.store.BlobStore`): a header line, one JSON array per entry, then
    ``{"entries": N}``. A file that is anything else — cut short, larger than
    :data:`MAX_CACHED`, not a regular file, nested without end, of the wrong types — is a miss:
    the layer is listed again, and the file replaced. Without a store, nothing is kept."""

    def __init__(self, store: BlobStore | None) -> None:
        self._store = store

    def listing(self, blob: Blob) -> Listing:
        what = f"layer {blob.descriptor.digest}"
        key = split_digest(blob.descriptor.digest)[1]
        fd = self._store.open_record("listings", key) if self._store is not None else None
        if fd is not None:
            cached = _read_listing(fd, what)
            if cached is not None:
                return cached
        listing = list_layer(blob)
        if self._store is not None:
            # a listing that cannot be kept, or is too large to, is listed again next time
            with contextlib.suppress(OutputError, _TooLarge), self._store.writing("listings", key) as out:
                _write_listing(listing, out)
        return listing


def _record(path: str, node: Node) -> bytes:
    record: list[object] = [path, node.kind, node.mode, node.uid, node.gid, node.target]
    extras: dict[str, object] = {}
    if node.content is not None:
        extras["content"] = node.content
    if node.library:
        extras.update(
            library=True,
            needed=node.needed,
            rpath=node.rpath,
            versions_needed=node.versions_needed,
            versions_defined=node.versions_defined,
        )
    if extras:
        record.append(extras)
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _write_listing(listing: Listing, out: BinaryIO) -> None:
    """The listing in its cached form, written in large pieces; _TooLarge past MAX_CACHED."""
    pending = [_HEADER]
    written = count = 0

    def flush() -> None:
        nonlocal written
        data = b"".join(pending)
        pending.clear()
        written += len(data)
        if written > MAX_CACHED:
            raise _TooLarge
        out.write(data)

    for path, node in listing:
        pending.append(_record(path, node))
        count += 1
        if len(pending) >= 4096:
            flush()
    trailer = {"entries": count, "size": listing.size, "orphans": listing.orphans, "orphan_count": listing.orphan_count}
    pending.append(json.dumps(trailer, separators=(",", ":")).encode() + b"\n")
    flush()


def _read_listing(fd: int, what: str) -> Listing | None:
    """The cached listing open at ``fd`` (closed here), or None for anything but a whole,
    well-formed one."""
    with os.fdopen(fd, "rb") as handle:
        nodes = _Nodes()
        try:
            if os.fstat(fd).st_size > MAX_CACHED or handle.readline(len(_HEADER)) != _HEADER:
                return None
            listing = Listing(what)
            count = 0
            while True:
                line = handle.readline(_MAX_RECORD + 1)
                if not line.endswith(b"\n"):
                    return None  # cut short, or longer than any record written
                value = json.loads(line)
                if isinstance(value, dict):
                    return listing if _trailer(value, count, listing) and not handle.read(1) else None
                listing.add(*_entry(value, nodes))
                count += 1
        except (OSError, ValueError, RecursionError, InputError, _BadRecord):
            return None


def _trailer(value: dict[str, object], count: int, listing: Listing) -> bool:
    """Whether ``value`` is the trailer of a listing of ``count`` entries; it fills ``listing``'s
    size and orphans in."""
    if set(value) != {"entries", "size", "orphans", "orphan_count"}:
        return False
    if type(value["entries"]) is not int or value["entries"] != count:
        return False
    size, orphans, orphan_count = value["size"], value["orphans"], value["orphan_count"]
    if type(size) is not int or type(orphan_count) is not int or size < 0 or orphan_count < 0:
        return False
    try:
        listing.orphans = _strings(orphans)[:MAX_ORPHANS]
    except _BadRecord:
        return False
    listing.size, listing.orphan_count = size, orphan_count
    return True


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _BadRecord
    return tuple(value)


def _entry(value: object, nodes: _Nodes) -> tuple[str, Node]:
    """One cached entry, its every field checked."""
    if not isinstance(value, list) or len(value) not in (6, 7):
        raise _BadRecord
    path, kind, mode, uid, gid, target = value[:6]
    numbers = (mode, uid, gid)
    if not (
        isinstance(path, str)
        and isinstance(kind, str)
        and kind in _KINDS
        and all(type(n) is int for n in numbers)
        and isinstance(target, str)
    ):
        raise _BadRecord
    if len(value) == 6:
        return path, nodes.get(kind, mode, uid, gid, target)
    extras = value[6]
    if not isinstance(extras, dict) or not extras or not set(extras) <= _EXTRAS:
        raise _BadRecord
    content = extras.get("content")
    library = extras.get("library", False)
    pairs = [_strings(pair) for pair in _list(extras.get("versions_needed", []))]
    if not (content is None or isinstance(content, str)) or type(library) is not bool:
        raise _BadRecord
    if any(len(pair) != 2 for pair in pairs):
        raise _BadRecord
    return path, Node(
        kind,
        mode,
        uid,
        gid,
        target,
        content,
        library,
        _strings(extras.get("needed", [])),
        _strings(extras.get("rpath", [])),
        tuple((a, b) for a, b in pairs),
        _strings(extras.get("versions_defined", [])),
    )


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise _BadRecord
    return value


def base_tree(layers: Iterable[Blob], cache: ListingCache) -> FileTree:
    """The filesystem the layers make, applied in order; its ``layers_size`` is their size
    uncompressed, all together."""
    tree = FileTree()
    for blob in layers:
        listing = cache.listing(blob)
        tree.apply(listing)
        tree.layers_size += listing.size
    return tree
