"""The filesystem an image will have: base layers listed (headers only) with whiteouts honoured,
plus the entries of new layers, with symlinks resolved inside the image.

Listing a layer streams it once through its decompressor and reads tar headers; the few small
files the build needs to read (``/etc/passwd``, ``/etc/group``, ``/etc/ld.so.conf*``) are kept,
and of each shared library (``*.so``, ``*.so.N``, up to 32 MiB) only what the loader checks: the
libraries it needs, its RPATH/RUNPATH and its symbol versions. Listings are cached per layer
digest, so a base is listed once per machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from zeroimage.elf import BinaryInfo, inspect_binary, parse_elf
from zeroimage.errors import InputError, OutputError
from zeroimage.files import Readable, atomic_write
from zeroimage.image import Blob
from zeroimage.layers.entries import Entry
from zeroimage.oci import mediatypes as mt
from zeroimage.oci import split_digest

#: Files whose content the build reads from the image (users, groups, loader search path).
_KEEP_CONTENT = ("etc/passwd", "etc/group", "etc/ld.so.conf")
_KEEP_PREFIXES = ("etc/ld.so.conf.d/", "etc/ld-musl-")
_MAX_KEPT = 256 * 1024
_MAX_LIBRARY = 32 << 20  # a larger library is listed but not read (its needs go unchecked)
_MAX_LINKS = 40
_FORMAT = 2


@dataclass(frozen=True)
class Node:
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        data = dict(data)
        for name in ("needed", "rpath", "versions_defined"):
            data[name] = tuple(data.get(name, ()))
        data["versions_needed"] = tuple((str(a), str(b)) for a, b in data.get("versions_needed", ()))
        return cls(**data)


def _keep(path: str) -> bool:
    return path in _KEEP_CONTENT or path.startswith(_KEEP_PREFIXES)


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


def _decompressed(blob: Blob) -> tuple[IO[bytes], Readable]:
    raw = blob.open()
    kind = mt.compression_of(blob.descriptor.media_type)
    stream: Any = io.BufferedReader(_Stream(raw), 1 << 20)
    if kind == "gzip":
        from isal import igzip

        stream = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
    elif kind == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(stream)
    return stream, raw


def list_layer(blob: Blob) -> list[tuple[str, Node]]:
    """Every entry of a layer, in order: (path without leading '/', node)."""
    out: list[tuple[str, Node]] = []
    stream, raw = _decompressed(blob)
    what = f"layer {blob.descriptor.digest}"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in _members(tar):
                path = posixpath.normpath(info.name.lstrip("/")).lstrip("/")
                if path in (".", "") or path.startswith("../"):
                    continue
                content = None
                facts: dict[str, Any] = {}
                if info.isreg() and _keep(path) and info.size <= _MAX_KEPT:
                    handle = tar.extractfile(info)
                    if handle is not None:
                        content = handle.read().decode("utf-8", "replace")
                elif info.isreg() and is_library_name(path) and info.size <= _MAX_LIBRARY:
                    handle = tar.extractfile(info)
                    if handle is not None:
                        facts = _read_library(handle.read(), path)
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
                out.append((path, Node(kind, info.mode, info.uid, info.gid, info.linkname, content, **facts)))
        # reading to the end lets the verifying reader check the digest
        while raw.read(1 << 20):
            pass
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"cannot list {what}: {str(exc)[:120]}") from None
    finally:
        raw.close()
    return out


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members of a streamed tar. Some writers (umoci) end a layer without the two zero blocks:
    a clean end after the last member is accepted (the layer's digest is verified anyway)."""
    count = 0
    while True:
        try:
            info = tar.next()
        except tarfile.ReadError as exc:
            if count and "unexpected end of data" in str(exc):
                return
            raise
        if info is None:
            return
        count += 1
        yield info


class FileTree:
    """Paths (no leading '/') to nodes; layers applied in order."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {"": Node("dir", 0o755)}

    def _remove(self, path: str, keep_self: bool = False) -> None:
        prefix = path + "/" if path else ""
        for key in [k for k in self.nodes if k.startswith(prefix) and k]:
            del self.nodes[key]
        if not keep_self and path:
            self.nodes.pop(path, None)

    def apply(self, entries: Iterable[tuple[str, Node]]) -> None:
        """Apply one layer: opaque directories and whiteouts first, then its entries."""
        entries = list(entries)
        added = []
        for path, node in entries:
            directory, name = posixpath.split(path)
            if name == ".wh..wh..opq":
                self._remove(directory, keep_self=True)
            elif name.startswith(".wh."):
                self._remove(posixpath.join(directory, name[4:]))
            else:
                added.append((path, node))
        for path, node in added:
            if node.kind != "dir" and path in self.nodes and self.nodes[path].kind == "dir":
                self._remove(path)
            self.nodes[path] = node
            # a member implies its parents (runtimes create them on extraction)
            parent = posixpath.dirname(path)
            while parent and parent not in self.nodes:
                self.nodes[parent] = Node("dir", 0o755)
                parent = posixpath.dirname(parent)

    def add_entries(self, entries: Iterable[Entry]) -> None:
        self.apply((e.path.lstrip("/"), _entry_node(e)) for e in entries)

    def resolve(self, path: str) -> tuple[str, Node] | None:
        """Follow symlinks (in every component) inside the image; None if it does not exist."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/".join([*resolved, part])
            node = self.nodes.get(candidate)
            if node is None:
                return None
            if node.kind == "symlink":
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = node.target
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if node.kind == "hardlink":
                linked = self.nodes.get(node.target.lstrip("/"))
                node = linked if linked is not None else node
            resolved.append(part)
            if parts and node.kind != "dir":
                return None
        final = "/".join(resolved)
        return final, self.nodes[final] if final in self.nodes else self.nodes[""]

    def exists(self, path: str) -> bool:
        return self.resolve(path) is not None

    def is_dir(self, path: str) -> bool:
        found = self.resolve(path)
        return found is not None and found[1].kind == "dir"

    def read_text(self, path: str) -> str | None:
        found = self.resolve(path)
        return found[1].content if found else None

    def children(self, directory: str) -> Iterator[str]:
        prefix = directory.strip("/") + "/"
        for key in self.nodes:
            if key.startswith(prefix) and "/" not in key[len(prefix) :]:
                yield key


def _entry_node(entry: Entry) -> Node:
    path = entry.path.lstrip("/")
    content = entry.data.decode("utf-8", "replace") if entry.data is not None and _keep(path) else None
    if content is None and _keep(path) and entry.source is not None and entry.size <= _MAX_KEPT:
        # an /etc/passwd added from the host is read as a base's would be (--user NAME needs it)
        with contextlib.suppress(OSError), open(entry.source, "rb") as handle:
            content = handle.read(_MAX_KEPT).decode("utf-8", "replace")
    facts: dict[str, Any] = {}
    if entry.kind == "file" and entry.source is not None and is_library_name(path):
        with contextlib.suppress(InputError):  # an added library is checked like the base's
            facts = _library_facts(inspect_binary(entry.source))
    return Node(entry.kind, entry.mode, entry.uid, entry.gid, entry.target, content, **facts)


class ListingCache:
    """Layer listings by digest, as small JSON files beside the blob store."""

    def __init__(self, root: Path | None) -> None:
        self.root = root / "listings" if root else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def listing(self, blob: Blob) -> list[tuple[str, Node]]:
        path = self.root / split_digest(blob.descriptor.digest)[1] if self.root else None
        if path is not None and path.exists():
            try:
                record = json.loads(path.read_text())
                if record.get("format") == _FORMAT:
                    return [(p, Node.from_dict(n)) for p, n in record["entries"]]
            except (OSError, ValueError, TypeError, KeyError):
                pass
        entries = list_layer(blob)
        if path is not None:
            record = json.dumps({"format": _FORMAT, "entries": [[p, asdict(n)] for p, n in entries]})
            with contextlib.suppress(OutputError), atomic_write(path) as out:
                out.write(record.encode())  # a listing that cannot be kept is listed again next time
        return entries


def base_tree(layers: Iterable[Blob], cache: ListingCache) -> FileTree:
    tree = FileTree()
    for blob in layers:
        tree.apply(cache.listing(blob))
    return tree
