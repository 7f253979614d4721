"""Will it run? The entrypoint checked against the filesystem of the image it lands in.

An ELF program needs its loader (PT_INTERP) and its DT_NEEDED libraries, looked up as the loader
would: RPATH/RUNPATH (``$ORIGIN`` expanded), the image's ``/etc/ld.so.conf`` (and ``.d``), the
Debian/Ubuntu multiarch directories and the default ``/lib``, ``/usr/lib``. A script needs its
``#!`` interpreter. A Mach-O or PE program cannot run on Linux at all.
"""

from __future__ import annotations

import fnmatch
import posixpath

from zeroimage.elf import BinaryInfo
from zeroimage.rootfs import FileTree

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
    return list(dict.fromkeys(dirs))


def problems(info: BinaryInfo, entrypoint: str, tree: FileTree, image_os: str = "linux") -> list[str]:
    """What would stop the entrypoint from starting in this filesystem (empty: nothing found)."""
    if info.format == "macho":
        return [f"{entrypoint} is a macOS (Mach-O) program; it cannot run in a Linux container"]
    if info.format == "pe" and image_os != "windows":
        return [f"{entrypoint} is a Windows (PE) program; it cannot run in a Linux container"]
    if info.format == "script":
        interpreter = info.shebang
        if interpreter and not tree.exists(interpreter):
            return [f"{entrypoint} is a script for {interpreter}, which the image does not have"]
        return []
    if info.format != "elf" or info.static:
        return []
    found: list[str] = []
    if info.interpreter and not tree.exists(info.interpreter):
        found.append(f"the ELF loader {info.interpreter} is missing")
    dirs = search_dirs(info, entrypoint, tree)
    missing = [lib for lib in info.needed if not any(tree.exists(posixpath.join(d, lib)) for d in dirs)]
    if missing:
        found.append(f"the libraries {', '.join(missing)} are missing")
    if found:
        return [f"{entrypoint} is dynamically linked and cannot start in this image: {'; '.join(found)}"]
    return []
