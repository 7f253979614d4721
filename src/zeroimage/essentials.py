"""What a FROM-scratch image lacks, as layer entries (``--with``) and files from the host (``--add``).

``ca-certs``   /etc/ssl/certs/ca-certificates.crt: the host's bundle, else certifi's.
``tzdata``     /usr/share/zoneinfo: the IANA database of the ``tzdata`` package (so the result does
               not depend on the build host); the host's tree only if that package is missing.
``users``      /etc/passwd and /etc/group with root (0), nonroot (65532) and nobody (65534),
               and their home directories.
``tmp``        /tmp, mode 1777.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from zeroimage.errors import InputError, UsageError
from zeroimage.files import describe_os_error
from zeroimage.layers.entries import Entry, clean_image_path

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
    return tuple(dict.fromkeys(chosen))


def _data(path: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(path=path, kind="file", mode=mode, data=data, size=len(data))


def _dir(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="dir", mode=mode, uid=uid, gid=gid)


def essential_entries(names: Iterable[str]) -> list[Entry]:
    entries: list[Entry] = []
    for name in names:
        if name == "ca-certs":
            entries.append(_file_from(_ca_bundle(), "/etc/ssl/certs/ca-certificates.crt"))
        elif name == "tzdata":
            entries.extend(_tree(_zoneinfo(), "/usr/share/zoneinfo", keep_links=False))
        elif name == "users":
            entries += [
                _data("/etc/passwd", PASSWD.encode()),
                _data("/etc/group", GROUP.encode()),
                _dir("/root", 0o700),
                _dir("/home/nonroot", 0o700, 65532, 65532),
            ]
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
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = Path(directory).relative_to(root)
        for name in dirs:
            entries.append(_dir(str(PurePosixPath(dest, rel, name))))
        for name in sorted(files):
            if name.endswith((".py", ".pyc")):
                continue
            path = Path(directory, name)
            target = str(PurePosixPath(dest, rel, name))
            if path.is_symlink() and keep_links:
                entries.append(Entry(target, "symlink", 0o777, target=os.readlink(path)))
            else:
                entries.append(Entry(target, "file", 0o644, source=path.resolve(), size=path.stat().st_size))
    return entries


# -- --add SRC:DEST ----------------------------------------------------------------------------------


def parse_add(value: str) -> tuple[Path, str]:
    source, sep, dest = value.rpartition(":")
    if not sep or not source or not dest:
        raise UsageError(f"--add {value!r}: expected SRC:DEST, e.g. --add ./static:/srv/static")
    if not dest.startswith("/"):
        raise UsageError(f"--add {value!r}: DEST must be an absolute path in the image")
    return Path(source), dest


def add_entries(source: Path, dest: str, uid: int = 0, gid: int = 0) -> list[Entry]:
    """Entries for a host file or directory tree: modes kept, symlinks kept as symlinks (never
    followed), owner root (or ``uid:gid``); hard links and special files are refused."""
    try:
        st = os.lstat(source)
    except OSError as exc:
        raise InputError(f"--add: cannot read {describe_os_error(exc, source)}") from None
    if stat.S_ISDIR(st.st_mode):
        entries = [Entry(clean_image_path(dest), "dir", stat.S_IMODE(st.st_mode), uid=uid, gid=gid)]
        for directory, dirs, files in os.walk(source):
            dirs.sort()
            rel = Path(directory).relative_to(source)
            for name in [*dirs, *sorted(files)]:
                path = Path(directory, name)
                entries.append(_host_entry(path, str(PurePosixPath(dest, rel, name)), uid, gid))
            dirs[:] = [d for d in dirs if not Path(directory, d).is_symlink()]
        return entries
    target = dest.rstrip("/") + "/" + source.name if dest.endswith("/") else dest
    return [_host_entry(source, target, uid, gid)]


def _host_entry(path: Path, dest: str, uid: int, gid: int) -> Entry:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise InputError(f"--add: cannot read {describe_os_error(exc, path)}") from None
    mode = stat.S_IMODE(st.st_mode)
    dest = clean_image_path(dest)
    if stat.S_ISLNK(st.st_mode):
        return Entry(dest, "symlink", 0o777, target=os.readlink(path), uid=uid, gid=gid)
    if stat.S_ISDIR(st.st_mode):
        return Entry(dest, "dir", mode, uid=uid, gid=gid)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"--add: {path} is a special file (device, socket or pipe); only files, "
            "directories and symlinks can be added"
        )
    if st.st_nlink > 1:
        raise InputError(f"--add: {path} is a hard link ({st.st_nlink} names); copy it to a plain file first")
    if not os.access(path, os.R_OK):
        raise InputError(f"--add: cannot read {path}: permission denied")
    return Entry(dest, "file", mode, source=path, size=st.st_size, uid=uid, gid=gid)


def parse_chown(value: str | None) -> tuple[int, int]:
    if not value:
        return 0, 0
    uid, _, gid = value.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise UsageError(f"--chown {value!r}: expected numeric UID[:GID]")
    return int(uid), int(gid or uid)
