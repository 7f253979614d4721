"""What one platform's image will hold, decided before any layer is made, as a Dockerfile would:

    FROM base                       the base's filesystem (listed), or nothing
    ADD  --with / --add / WORKDIR   the extra files' layer (when there is any)
    COPY program ENTRYPOINT-PATH    the program's layer
    ENV / USER / … / ENTRYPOINT     the config

As BuildKit's ``COPY`` does, every layer carries an entry for each parent of each of its entries,
before the entries below it: a parent the base has keeps the base's mode and owner, one it lacks
is 0755 and root's. A destination is followed through the base's symlinks (``/bin/app`` on a base
whose ``/bin`` links to ``usr/bin`` lands in ``/usr/bin/app``), a destination that ends in ``/``
or names a directory of the base takes the program inside it, and a base's directory is never
replaced by a file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from zeroimage.elf import BinaryInfo
from zeroimage.errors import UsageError
from zeroimage.layers.entries import Entry, clean_image_path
from zeroimage.oci import Platform
from zeroimage.rootfs import FileTree

#: The PATH Docker and BuildKit give an image that sets none (containerd's ``ctr run`` adds
#: none of its own, so a FROM-scratch image without it starts its process with no PATH).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Member:
    """One platform's member of the image: a program and the platform its image is for (its
    own: from --platform or its ELF header)."""

    path: str  # the program on the host, as given
    name: str
    info: BinaryInfo
    platform: Platform


def entrypoint_of(request: str | None, name: str, tree: FileTree) -> str:
    """Where the program goes: ``request`` (``--entrypoint-path``; default ``/NAME``), or
    ``request/NAME`` when it ends in ``/`` or names a directory the image has."""
    if request is None or request.strip("/") == "":
        return clean_image_path("/" + name)
    path = clean_image_path(request)
    if request.endswith("/") or tree.is_dir(path):
        return clean_image_path(f"{path}/{name}")
    return path


def into_directory(entries: list[Entry], tree: FileTree) -> list[Entry]:
    """An added file whose destination is a directory of the image goes inside it, as
    ``COPY conf /app`` puts /app/conf when /app is a directory; never a file over a directory."""
    if len(entries) == 1 and entries[0].kind != "dir":
        (entry,) = entries
        if entry.source is not None and tree.is_dir(entry.path):
            return [replace(entry, path=f"{entry.path.rstrip('/')}/{entry.source.name}")]
    return entries


def real_path(tree: FileTree, path: str) -> str:
    """``path`` with each component that exists in the image followed through its symlinks, as
    a layer's entry must name it to land where the image's links lead; refused where a
    component is something other than a directory (a base file is never replaced)."""
    parts = [p for p in path.strip("/").split("/") if p]
    done = ""
    for index, part in enumerate(parts):
        candidate = f"{done}/{part}"
        found = tree.resolve(candidate)
        if found is None:
            return "/" + "/".join([done.strip("/"), *parts[index:]]).strip("/")
        resolved, node = found
        if index < len(parts) - 1 and node.kind != "dir":
            raise UsageError(
                f"cannot put anything at {path}: /{resolved} is a {node.kind} in the image, not a directory"
            )
        done = "/" + resolved if resolved else ""
    return done or "/"


def place(entries: Iterable[Entry], tree: FileTree) -> list[Entry]:
    """Each entry at its real path (its parent followed through the image's symlinks)."""
    placed = []
    for entry in entries:
        parent = real_path(tree, posixpath.dirname(entry.path))
        path = posixpath.join(parent, posixpath.basename(entry.path))
        placed.append(entry if path == entry.path else replace(entry, path=path))
    return placed


def with_parents(entries: Sequence[Entry], tree: FileTree) -> list[Entry]:
    """``entries`` with a directory entry for every parent none of them is, and every directory
    that the image has already written with the image's mode and owner — as BuildKit's COPY
    writes them — so that a layer unpacks the same on every runtime (AWS Lambda refuses one
    whose parents are missing)."""
    have = {e.path: e for e in entries}
    out: dict[str, Entry] = {}
    for entry in sorted(entries, key=lambda e: e.path.count("/")):
        # Up from the entry to the first ancestor known already (every ancestor of a shallower
        # entry is): linear in the tree's entries, however deep it goes.
        missing: list[str] = []
        parent = posixpath.dirname(entry.path)
        while parent not in ("/", "") and parent not in have and parent not in out:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for path in reversed(missing):  # parents before children
            out[path] = _as_in_image(Entry(path, "dir", 0o755), tree)
        out[entry.path] = _as_in_image(entry, tree) if entry.kind == "dir" else entry
    return list(out.values())


def _as_in_image(entry: Entry, tree: FileTree) -> Entry:
    """A directory entry with the mode and owner the image gives that directory already."""
    found = tree.resolve(entry.path)
    if found is None or found[1].kind != "dir" or found[0] != entry.path.lstrip("/"):
        return entry
    node = found[1]
    return replace(entry, mode=node.mode & 0o7777, uid=node.uid, gid=node.gid)


def program_layer(program: Entry, tree: FileTree) -> tuple[Entry, ...]:
    """The program's layer: the program at its real path, and its parents."""
    (placed,) = place([program], tree)
    found = tree.resolve(placed.path)
    if found is not None and found[1].kind == "dir":
        raise UsageError(f"cannot put the program at {program.path}: the image has a directory there")
    return tuple(with_parents([placed], tree))


def files_layer(entries: Sequence[Entry], tree: FileTree) -> tuple[Entry, ...]:
    """The extra files' layer: each at its real path, with its parents."""
    return tuple(with_parents(place(entries, tree), tree)) if entries else ()


def image_platform(program: Platform, base: Platform | None) -> Platform:
    """The platform the image says it is for: the program's, spelt as the base spells it when
    the two are the same platform (``arm64/v8`` for ``arm64``), with the base's os.version and
    os.features."""
    from zeroimage.platform import normalize

    if base is None:
        return normalize(program)
    same = normalize(replace(base, os_version="", os_features=())) == normalize(program)
    chosen = base if same else normalize(program)
    return replace(chosen, os_version=base.os_version, os_features=base.os_features)
