"""Will it run? The entrypoint checked against the filesystem of the image it lands in.

An ELF program needs its loader (PT_INTERP) and its DT_NEEDED libraries, looked up as the loader
would: RPATH/RUNPATH (``$ORIGIN`` expanded), the image's ``/etc/ld.so.conf`` (and ``.d``), the
Debian/Ubuntu multiarch directories and the default ``/lib``, ``/usr/lib``; then, the same way,
the libraries those need, and every symbol version (``GLIBC_2.34``) the program and its libraries
need from a library that defines versions. A script needs its ``#!`` interpreter. A Mach-O or PE
program cannot run on Linux at all, nor an empty file or one that is neither ELF nor a script.
And the image's user must be allowed to run it: the program's mode and owner in the image, and
the directories above it, are judged as the kernel would.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections import deque

from zeroimage.customize import supplementary_gids
from zeroimage.elf import BinaryInfo
from zeroimage.rootfs import FileTree, Node

#: Libraries followed from one program (a loader gives up long before).
MAX_LIBRARIES = 1024
#: Directories a library is looked for in (RPATH, ld.so.conf, the defaults), at most.
MAX_SEARCH_DIRS = 256

MULTIARCH = {
    "amd64": ("x86_64-linux-gnu",),
    "arm64": ("aarch64-linux-gnu",),
    "arm": ("arm-linux-gnueabihf", "arm-linux-gnueabi"),
    "386": ("i386-linux-gnu", "i686-linux-gnu"),
    "ppc64le": ("powerpc64le-linux-gnu",),
    "s390x": ("s390x-linux-gnu",),
    "riscv64": ("riscv64-linux-gnu",),
    "mips64le": ("mips64el-linux-gnuabi64",),
    "loong64": ("loongarch64-linux-gnu",),
}
_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _ld_so_conf(tree: FileTree, path: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
    dirs: list[str] = []
    text = tree.read_text(path)
    if text is None or depth > 4:
        return dirs
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include "):
            pattern = line[len("include ") :].strip()
            if not pattern.startswith("/"):
                pattern = posixpath.join(posixpath.dirname(path), pattern)
            directory = posixpath.dirname(pattern)
            for child in sorted(tree.children(directory)):
                if fnmatch.fnmatch("/" + child, pattern):
                    dirs += _ld_so_conf(tree, "/" + child, depth + 1)
        else:
            dirs.append(line)
    return dirs


def search_dirs(info: BinaryInfo, entrypoint: str, tree: FileTree) -> list[str]:
    origin = posixpath.dirname(entrypoint)
    dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in info.rpath]
    dirs += _ld_so_conf(tree)
    for triplet in MULTIARCH.get(info.architecture, ()):
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}", f"/usr/local/lib/{triplet}"]
    lib64 = ["/lib64", "/usr/lib64"] if info.bits == 64 else []
    dirs += [*lib64, "/lib", "/usr/lib", "/usr/local/lib"]
    musl = info.interpreter.rsplit("/", 1)[-1]
    if musl.startswith("ld-musl-"):
        text = tree.read_text(f"/etc/{musl.removesuffix('.so.1')}.path")
        if text:
            dirs = [d for line in text.splitlines() for d in line.split(":") if d] + dirs
    # A base's configuration is the base's to write: a hostile one listing a million directories
    # would make every library a million lookups. The loader's own cache holds far fewer.
    return list(dict.fromkeys(dirs))[:MAX_SEARCH_DIRS]


def problems(
    info: BinaryInfo,
    entrypoint: str,
    tree: FileTree,
    image_os: str = "linux",
    *,
    user: tuple[int, int] | None = None,
) -> list[str]:
    """What would stop the entrypoint from starting in this filesystem (empty: nothing found),
    one message per cause.

    ``user`` is the (uid, gid) the image runs the program as, resolved by the caller from
    ``--user`` or the base's ``User``; None is root. The program's node in ``tree`` (when it
    is there) gives the mode and owner the kernel will check.
    """
    if info.format == "empty":
        return [f"{entrypoint} is an empty file"]
    if info.format == "macho":
        return [f"{entrypoint} is a macOS (Mach-O) program; it cannot run in a Linux container"]
    if info.format == "pe" and image_os != "windows":
        return [f"{entrypoint} is a Windows (PE) program; it cannot run in a Linux container"]
    if image_os == "windows":
        return []
    if info.format == "unknown":
        return [f"{entrypoint} is not a program: neither an ELF executable nor a #! script"]
    found = tree.resolve(entrypoint)
    if found is not None and found[1].kind == "dir":
        return [f"{entrypoint} is a directory in the image, not a program"]
    out: list[str] = []
    if found is not None:
        denied = _access_problem(entrypoint, found, tree, user, script=info.format == "script")
        if denied:
            out.append(denied)
    if info.format == "script":
        interpreter = info.shebang
        if interpreter and not tree.exists(interpreter):
            out.append(f"{entrypoint} is a script for {interpreter}, which the image does not have")
    elif info.format == "elf" and not info.static:
        out += _dynamic_problems(info, entrypoint, tree)
    return out


def _dynamic_problems(info: BinaryInfo, entrypoint: str, tree: FileTree) -> list[str]:
    found: list[str] = []
    if info.interpreter and not tree.exists(info.interpreter):
        found.append(f"the ELF loader {info.interpreter} is missing")
    loaded, missing = _load(info, entrypoint, tree)
    if len(missing) == 1:
        found.append(f"the library {missing[0]} is missing")
    elif missing:
        found.append(f"the libraries {', '.join(missing)} are missing")
    found += _version_problems(info, loaded)
    if found:
        return [f"{entrypoint} is dynamically linked and cannot start in this image: {'; '.join(found)}"]
    return []


_EXECUTE, _READ = 0o1, 0o4


def _permits(node: Node, uid: int, gid: int, groups: frozenset[int], want: int) -> bool:
    """Whether a non-root process may ``want`` (read or execute/search) ``node``: the owner's
    bits when it owns it, else the group's when one of its groups does, else the others'."""
    if uid == node.uid:
        return bool(node.mode >> 6 & want)
    if gid == node.gid or node.gid in groups:
        return bool(node.mode >> 3 & want)
    return bool(node.mode & want)


def access_problem(entrypoint: str, tree: FileTree, user: tuple[int, int] | None, script: bool = False) -> str:
    """Why ``user`` may not run ``entrypoint`` as the image holds it ("" when it may, or when
    the image does not hold it)."""
    found = tree.resolve(entrypoint)
    return _access_problem(entrypoint, found, tree, user, script) if found is not None else ""


def _access_problem(
    entrypoint: str, found: tuple[str, Node], tree: FileTree, user: tuple[int, int] | None, script: bool
) -> str:
    """Why the image's user may not run the program, as the kernel would judge it: even root
    needs one execute bit; anyone else needs search on every directory on the way, execute
    on the file, and read as well when it is a script (its interpreter opens it)."""
    path, node = found
    mode = f"mode {node.mode & 0o7777:04o}"
    uid, gid = user or (0, 0)
    if uid == 0:
        return "" if node.mode & 0o111 else f"{entrypoint} ({mode}) is not executable"
    who = f"user {uid}:{gid}"
    groups = supplementary_gids(uid, tree)
    parts = path.split("/")
    for depth in range(1, len(parts)):
        directory = "/".join(parts[:depth])
        found_dir = tree.resolve(directory)  # a real path: each of its directories is one
        parent = found_dir[1] if found_dir is not None else None
        if parent is not None and not _permits(parent, uid, gid, groups, _EXECUTE):
            return (
                f"{entrypoint} cannot be reached by {who}: the directory /{directory} "
                f"(mode {parent.mode & 0o7777:04o}, owner {parent.uid}:{parent.gid}) may not be entered"
            )
    owner = f"{mode}, owner {node.uid}:{node.gid}"
    if not _permits(node, uid, gid, groups, _EXECUTE):
        return f"{entrypoint} ({owner}) cannot be executed by {who}"
    if script and not _permits(node, uid, gid, groups, _READ):
        return f"{entrypoint} ({owner}) cannot be read by {who}, and a script's interpreter must read it"
    return ""


def unreadable(info: BinaryInfo, entrypoint: str, tree: FileTree, user: tuple[int, int]) -> list[str]:
    """The loader and libraries the program needs (those found in the image) that ``user``
    cannot read: it cannot start, or not as that user."""
    if info.format != "elf" or info.static:
        return []
    paths: dict[str, str] = {}
    _load(info, entrypoint, tree, paths)
    uid, gid = user
    groups = supplementary_gids(uid, tree)
    out = []
    for path in paths.values():
        found = tree.resolve(path)
        if found is not None and uid != 0 and not _permits(found[1], uid, gid, groups, _READ):
            out.append(f"/{found[0]} (mode {found[1].mode & 0o7777:04o}, owner {found[1].uid}:{found[1].gid})")
    return out


def _load(
    info: BinaryInfo, entrypoint: str, tree: FileTree, paths: dict[str, str] | None = None
) -> tuple[dict[str, Node], list[str]]:
    """Walk the libraries as the loader would, breadth first from the program's DT_NEEDED and on
    through each library's own (those the listing could read): the nodes found, by name, and the
    names not found ("libpcre2-8.so.0 (needed by libselinux.so.1)" when a library needs it).
    ``paths``, when given, receives where each was found."""
    dirs = search_dirs(info, entrypoint, tree)
    paths = {} if paths is None else paths
    loaded: dict[str, Node] = {}
    missing: list[str] = []
    absent: set[str] = set()
    if info.interpreter:
        # A DT_NEEDED naming the loader (ld-linux-x86-64.so.2) is the loader itself, already in
        # memory: never looked up again, nor listed as a missing library when it is missing.
        loader = tree.resolve(info.interpreter)
        name = posixpath.basename(info.interpreter)
        if loader is None:
            absent.add(name)
        else:
            loaded[name] = loader[1]
            paths[name] = "/" + loader[0]
    queue: deque[tuple[str, str, str, tuple[str, ...]]] = deque((name, "", entrypoint, ()) for name in info.needed)
    while queue and len(loaded) + len(absent) < MAX_LIBRARIES:
        name, needed_by, requester, rpath = queue.popleft()
        if name in loaded or name in absent:
            continue
        origin = posixpath.dirname(requester)
        own = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in rpath]
        candidates = [name] if "/" in name else [posixpath.join(d, name) for d in [*own, *dirs]]
        found = next((hit for hit in map(tree.resolve, candidates) if hit is not None), None)
        if found is None:
            absent.add(name)
            missing.append(f"{name} (needed by {needed_by})" if needed_by else name)
            continue
        path, node = found
        loaded[name] = node
        paths[name] = "/" + path
        if node.library:
            queue.extend((child, name, "/" + path, node.rpath) for child in node.needed)
    return loaded, missing


def _version_problems(info: BinaryInfo, loaded: dict[str, Node]) -> list[str]:
    """Symbol versions a library in the image does not define ("version `GLIBC_2.34' not found" at
    run time): the program built against a newer library than the base has."""
    requesters = [(info.versions_needed, "")] + [(n.versions_needed, name) for name, n in loaded.items()]
    lacking: dict[str, dict[str, set[str]]] = {}
    for needs, requester in requesters:
        for library, version in needs:
            node = loaded.get(library)
            if node is None or not node.versions_defined or version in node.versions_defined:
                continue  # missing (said already), not read, unversioned (musl) or satisfied
            lacking.setdefault(library, {}).setdefault(version, set()).add(requester)
    problems = []
    for library, versions in lacking.items():
        names = sorted(versions, key=_version_key)
        newest = max(
            (v for v in loaded[library].versions_defined if _family(v) == _family(names[-1])),
            key=_version_key,
            default="",
        )
        by = sorted({r for users in versions.values() for r in users if r})
        problems.append(
            f"{library} in the image is older than it was built against: it lacks {', '.join(names)}"
            + (f" (it has up to {newest})" if newest else "")
            + (f", needed by {', '.join(by)}" if by else "")
        )
    return problems


def _family(version: str) -> str:
    """GLIBC_2.34 → GLIBC_; OPENSSL_3.0.0 → OPENSSL_."""
    return version.rstrip("0123456789.")


def _version_key(version: str) -> tuple[str, tuple[int, ...]]:
    family = _family(version)
    numbers = tuple(int(part) for part in version[len(family) :].split(".") if part.isdigit())
    return family, numbers
