"""What a FROM-scratch image lacks, as layer entries (``--with``) and files from the host (``--add``).

``ca-certs``   /etc/ssl/certs/ca-certificates.crt: the host's bundle, else certifi's.
``tzdata``     /usr/share/zoneinfo: the IANA database of the ``tzdata`` package (so the result does
               not depend on the build host); the host's tree only if that package is missing.
``users``      /etc/passwd and /etc/group with root (0), nonroot (65532) and nobody (65534),
               and their home directories; on a base that has these files, merged into them:
               every base entry stays, ours are added only where name and id are free.
``tmp``        /tmp, mode 1777.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from zeroimage.customize import MAX_ID, is_id, valid_id
from zeroimage.errors import InputError, UsageError
from zeroimage.files import describe_os_error
from zeroimage.layers.entries import Entry, clean_image_path, host_mode, image_path, link_target, shown
from zeroimage.layers.walk import walk
from zeroimage.progress import NullReporter, Reporter
from zeroimage.rootfs import FileTree

ESSENTIALS = ("ca-certs", "tzdata", "users", "tmp")
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n"


def parse_essentials(values: Iterable[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            if item == "all":
                chosen.extend(ESSENTIALS)
            elif item in ESSENTIALS:
                chosen.append(item)
            else:
                raise UsageError(f"--with {item!r}: choose from {', '.join(ESSENTIALS)} or all")
    return tuple(e for e in ESSENTIALS if e in chosen)  # one order, whatever the flags': one image


def _data(path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="file", mode=mode, data=data, size=len(data), uid=uid, gid=gid)


def _dir(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="dir", mode=mode, uid=uid, gid=gid)


def _merge(base: str, ours: str, file: str, kind: str, id_name: str) -> tuple[str, list[str]]:
    """``base`` with the entries of ``ours`` whose name and id it does not use appended."""
    names: dict[str, str] = {}  # name → id, as the base has them
    ids: dict[str, str] = {}  # id → name
    for line in base.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] and not line.startswith("#"):
            names.setdefault(fields[0], fields[2])
            ids.setdefault(fields[2], fields[0])
    added: list[str] = []
    warnings: list[str] = []
    for line in ours.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[0] or not is_id(fields[2]):
            raise ValueError(f"not a {file} entry: {line!r}")
        name, number = fields[0], fields[2]
        if name in names:
            if names[name] != number:
                warnings.append(
                    f"the base's {file} has the {kind} {name!r} as {id_name} {names[name]}; "
                    f"keeping it, not adding {name} ({id_name} {number})"
                )
        elif number in ids:
            warnings.append(
                f"the base's {file} has {id_name} {number} as {ids[number]!r}; keeping it, not adding {name}"
            )
        else:
            added.append(line)
            names[name], ids[number] = number, name
    if not added:
        return base, warnings
    joint = "" if not base or base.endswith("\n") else "\n"
    return base + joint + "".join(line + "\n" for line in added), warnings


def merge_passwd(base: str, ours: str) -> tuple[str, list[str]]:
    """The base's /etc/passwd with our users added where both name and uid are free, and one
    warning for each of ours left out because the base uses its name or uid for another.

    Every base line stays as it is and where it is, malformed ones too (and their names and
    ids count as used); a base user identical in name and uid to ours is no clash.
    """
    return _merge(base, ours, "/etc/passwd", "user", "uid")


def merge_group(base: str, ours: str) -> tuple[str, list[str]]:
    """The base's /etc/group with our groups added where both name and gid are free: as
    :func:`merge_passwd`, for groups."""
    return _merge(base, ours, "/etc/group", "group", "gid")


def _users_file(path: str, ours: str, base: FileTree | None, reporter: Reporter) -> tuple[Entry | None, str]:
    """The entry for /etc/passwd or /etc/group over ``base`` (None: the base's stays as it is)
    and the text the image will hold."""
    found = base.resolve(path) if base is not None else None
    if found is None:
        return _data(path, ours.encode()), ours
    node = found[1]
    if node.content is None:  # over the listing's size bound, or a link to a file not kept
        reporter.warn(f"the base's {path} could not be read; keeping it as it is, adding no entries to it")
        return None, ""
    merge = merge_passwd if path == "/etc/passwd" else merge_group
    text, warnings = merge(node.content, ours)
    for warning in warnings:
        reporter.warn(warning)
    if text == node.content:
        return None, text
    return _data(path, text.encode(), node.mode, node.uid, node.gid), text


def _user_entries(base: FileTree | None, reporter: Reporter) -> list[Entry]:
    """/etc/passwd and /etc/group, and a home (0700, the user's own) for each of our users the
    image gets from us, not for a base's user of the same name (nobody's home is none)."""
    passwd, passwd_text = _users_file("/etc/passwd", PASSWD, base, reporter)
    group, _ = _users_file("/etc/group", GROUP, base, reporter)
    entries = [e for e in (passwd, group) if e is not None]
    held = set(passwd_text.splitlines())
    for line in PASSWD.splitlines():
        _, _, uid, gid, _, home, _ = line.split(":")
        if line in held and home != "/nonexistent":
            entries.append(_dir(home, 0o700, int(uid), int(gid)))
    return entries


def essential_entries(
    names: Iterable[str], *, base: FileTree | None = None, reporter: Reporter | None = None
) -> list[Entry]:
    """The layer entries of the essentials ``names``; ``users`` merged into the /etc/passwd
    and /etc/group of ``base`` (the base's filesystem) when it has them, with a warning to
    ``reporter`` for each of our users or groups left out."""
    reporter = reporter or NullReporter()
    entries: list[Entry] = []
    for name in names:
        if name == "ca-certs":
            entries.append(_file_from(_ca_bundle(), "/etc/ssl/certs/ca-certificates.crt"))
        elif name == "tzdata":
            entries.extend(_tree(_zoneinfo(), "/usr/share/zoneinfo", keep_links=False))
        elif name == "users":
            entries += _user_entries(base, reporter)
        elif name == "tmp":
            entries.append(_dir("/tmp", 0o1777))
    return entries


def _ca_bundle() -> Path:
    for candidate in HOST_CA_BUNDLES:
        if os.path.isfile(candidate):
            return Path(candidate)
    import certifi

    return Path(certifi.where())


def _zoneinfo() -> Path:
    import importlib.resources

    try:  # the tzdata package is a dependency: its files are the database
        root = Path(str(importlib.resources.files("tzdata").joinpath("zoneinfo")))
        if root.is_dir():
            return root
    except ImportError:
        pass
    if os.path.isdir("/usr/share/zoneinfo"):
        return Path("/usr/share/zoneinfo")
    raise InputError("no time zone database: install the tzdata package (pip install tzdata)")


def _file_from(source: Path, dest: str) -> Entry:
    data = source.read_bytes()
    return _data(dest, data, 0o644)


def _tree(root: Path, dest: str, keep_links: bool) -> list[Entry]:
    entries = [_dir(dest)]
    for directory, rel, dirs, others in walk(root, str(root)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in dirs:
            entries.append(_dir(image_path(dest, rel, name)))
        for name in others:
            if name.endswith((".py", ".pyc")):
                continue
            path = directory / name
            target = image_path(dest, rel, name)
            if path.is_symlink() and keep_links:
                entries.append(Entry(target, "symlink", 0o777, target=link_target(path)))
            elif path.is_dir():  # a link to a directory, not followed: an empty directory
                entries.append(_dir(target))
            else:
                entries.append(Entry(target, "file", 0o644, source=path.resolve(), size=path.stat().st_size))
    return entries


# -- --add SRC:DEST ----------------------------------------------------------------------------------


def parse_add(value: str) -> tuple[Path, str]:
    source, sep, dest = value.rpartition(":")
    if not sep or not source or not dest:
        raise UsageError(f"--add {value[:200]!r}: expected SRC:DEST, e.g. --add ./static:/srv/static")
    if "\0" in value:
        raise UsageError(f"--add {value[:200]!r}: a path cannot hold a NUL character")
    if not dest.startswith("/"):
        raise UsageError(f"--add {value[:200]!r}: DEST must be an absolute path in the image")
    return Path(source), dest


def add_entries(source: Path, dest: str, uid: int = 0, gid: int = 0) -> list[Entry]:
    """Entries for a host file or directory tree: modes kept (:func:`host_mode`), symlinks kept
    as symlinks (never followed), owner root (or ``uid:gid``); hard links and special files are
    refused."""
    try:
        st = os.lstat(source)
    except OSError as exc:
        raise InputError(f"--add: cannot read {describe_os_error(exc, shown(source))}") from None
    if stat.S_ISDIR(st.st_mode):
        entries = [Entry(clean_image_path(dest), "dir", host_mode(source, st), uid=uid, gid=gid)]
        for directory, rel, dirs, others in walk(source, f"--add {shown(source)}"):
            for name in [*dirs, *others]:
                path = directory / name
                try:
                    entries.append(_host_entry(path, image_path(dest, rel, name), uid, gid))
                except UsageError as exc:  # a path too long for an image: the tree's doing
                    raise InputError(f"--add {shown(path)}: {exc.message}") from None
        return entries
    target = dest.rstrip("/") + "/" + source.name if dest.endswith("/") else dest
    return [_host_entry(source, target, uid, gid)]


def _host_entry(path: Path, dest: str, uid: int, gid: int) -> Entry:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise InputError(f"--add: cannot read {describe_os_error(exc, shown(path))}") from None
    dest = clean_image_path(dest)
    if stat.S_ISLNK(st.st_mode):
        return Entry(dest, "symlink", 0o777, target=link_target(path), uid=uid, gid=gid)
    if stat.S_ISDIR(st.st_mode):
        return Entry(dest, "dir", host_mode(path, st), uid=uid, gid=gid)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"--add: {shown(path)} is a special file (device, socket or pipe); only files, "
            "directories and symlinks can be added"
        )
    if st.st_nlink > 1:
        raise InputError(f"--add: {shown(path)} is a hard link ({st.st_nlink} names); copy it to a plain file first")
    if not os.access(path, os.R_OK):
        raise InputError(f"--add: cannot read {shown(path)}: permission denied")
    return Entry(dest, "file", host_mode(path, st), source=path, size=st.st_size, uid=uid, gid=gid)


def parse_chown(value: str | None) -> tuple[int, int]:
    if not value:
        return 0, 0
    uid, _, gid = value.partition(":")
    if not valid_id(uid) or (gid and not valid_id(gid)):
        raise UsageError(f"--chown {value[:100]!r}: expected numeric UID[:GID], each from 0 to {MAX_ID}")
    return int(uid), int(gid or uid)


def _a(kind: str) -> str:
    return {"dir": "a directory", "file": "a file", "symlink": "a symlink"}.get(kind, kind)


def check_collisions(groups: Sequence[tuple[str, Sequence[Entry]]], program_paths: Sequence[str]) -> None:
    """Refuse (UsageError naming both sources) entries of several ``--add`` sources that would
    make one path two things in one layer: two files, links or a file and a directory on one
    path; a file where another source needs a directory for what it puts below; anything on a
    program's path or under it, or a file where a program needs a directory.

    ``groups`` pairs each source's description (as the user wrote it, e.g. ``--add ./a:/srv``)
    with its :func:`add_entries`. Two directories on one path are no collision: they merge,
    the later's mode and owner winning, as two ``COPY`` would (:func:`combine_adds`).
    """
    programs = set(program_paths)
    claims: dict[str, tuple[str, str]] = {}  # path → (kind, source) of an entry
    below: dict[str, str] = {}  # directory → the first source with entries below it
    for source, entries in groups:
        for entry in entries:
            path = entry.path
            if path in programs:
                raise UsageError(f"{source} puts {_a(entry.kind)} at {shown(path)}, the program's path")
            parent = posixpath.dirname(path)
            # An ancestor in ``below`` was checked with all of its own when it got there, and
            # cannot be claimed by anything but a directory since: stop there. (Walking every
            # entry up to the root costs depth² per entry on a deep tree.)
            while parent != "/" and parent not in below:
                if parent in programs:
                    raise UsageError(f"{source} puts {shown(path)} below {shown(parent)}, the program's path")
                kind, other = claims.get(parent, ("dir", ""))
                if kind != "dir":
                    raise UsageError(
                        f"{other} puts {_a(kind)} at {shown(parent)}, "
                        f"where {source} needs a directory for {shown(path)}"
                    )
                below.setdefault(parent, source)
                parent = posixpath.dirname(parent)
            if path in claims and not (entry.kind == "dir" and claims[path][0] == "dir"):
                kind, other = claims[path]
                raise UsageError(
                    f"{other} and {source} both put something at {shown(path)}: {_a(kind)} and {_a(entry.kind)}"
                )
            if entry.kind != "dir" and path in below:
                raise UsageError(
                    f"{source} puts {_a(entry.kind)} at {shown(path)}, where {below[path]} needs a directory"
                )
            claims[path] = (entry.kind, source)
    for program in programs:
        parent = posixpath.dirname(program)
        while parent != "/":
            kind, other = claims.get(parent, ("dir", ""))
            if kind != "dir":
                raise UsageError(
                    f"{other} puts {_a(kind)} at {shown(parent)}, where the program {shown(program)} needs a directory"
                )
            parent = posixpath.dirname(parent)


def combine_adds(groups: Sequence[tuple[str, Sequence[Entry]]], program_paths: Sequence[str]) -> list[Entry]:
    """The entries of several ``--add`` sources as one layer's, after :func:`check_collisions`:
    one entry per path, a directory two sources share taking the later one's mode and owner."""
    check_collisions(groups, program_paths)
    combined: dict[str, Entry] = {}
    for _, entries in groups:
        for entry in entries:
            combined[entry.path] = entry
    return list(combined.values())
