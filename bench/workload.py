"""The benchmark's inputs: large binaries made of this machine's own ELF files, and a small base.

A binary is the concatenation, in a fixed order, of ELF files found under ``/usr/bin``,
``/usr/sbin``, ``/usr/lib`` and ``/usr/libexec`` (real machine code, so it compresses as real
programs do), led by the static ``/bin/busybox`` when there is one so that its ELF header is that
of a static executable. The last :data:`STAMP` bytes are a stamp that :meth:`Binary.freshen`
rewrites with a counter before every timed run: the size stays the same, the content (and so
every digest) changes, and no cache or registry can have seen it before.

The base image is busybox-static alone at ``/bin/busybox`` (its entrypoint, no Cmd, so that every
builder's result has the same config: Entrypoint the program, no Cmd), built with umoci
(``init``/``new``/``insert``/``config``) and packed as an OCI archive; without umoci,
zeroimage builds it FROM scratch instead.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import peers

#: Bytes at the end of each binary that are rewritten before every timed run.
STAMP = 64
ELF_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec")
BUSYBOX = Path("/bin/busybox")
_CHUNK = 1 << 20
_MB = 1000 * 1000


class Binary:
    """A large test binary whose content can be renewed in place (same size, new digest)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.runs = 0

    @property
    def megabytes(self) -> float:
        return self.size / _MB

    def freshen(self) -> None:
        """Rewrite the stamp with a new counter value: fresh content for the next timed run."""
        self.runs += 1
        stamp = f"\nzeroimage-bench {self.path.name} run {self.runs:012d}\n".encode().ljust(STAMP, b"\0")
        with open(self.path, "r+b") as handle:
            handle.seek(self.size - STAMP)
            handle.write(stamp[:STAMP])


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files() -> list[str]:
    """Regular ELF files of this machine (no symlinks), in a deterministic order."""
    found: list[str] = []
    for top in ELF_DIRS:
        for directory, subdirs, files in os.walk(top):
            subdirs.sort()
            for name in sorted(files):
                path = os.path.join(directory, name)
                if not os.path.islink(path) and os.path.isfile(path) and _is_elf(path):
                    found.append(path)
    return found


def _sources(files: list[str]) -> Iterator[str]:
    if BUSYBOX.is_file():
        yield str(BUSYBOX)
    if not files:
        raise RuntimeError(f"no ELF files found under {', '.join(ELF_DIRS)}")
    while True:  # repeat the list if the machine holds less than the size asked for
        yield from files


def make_binary(path: Path, megabytes: int, files: list[str]) -> Binary:
    """Write a ``megabytes`` MB (10^6 bytes) binary at ``path`` from ``files``."""
    want = megabytes * _MB - STAMP
    written = 0
    with open(path, "wb") as out:
        for source in _sources(files):
            try:
                with open(source, "rb") as handle:
                    while written < want and (chunk := handle.read(min(_CHUNK, want - written))):
                        out.write(chunk)
                        written += len(chunk)
            except OSError:
                continue
            if written >= want:
                break
        out.write(b"\0" * STAMP)
    path.chmod(0o755)
    return Binary(path)


def oci_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def make_base(work: Path, zeroimage: Path) -> tuple[Path | None, Path]:
    """The base image: ``(layout directory or None, OCI archive)``.

    With umoci the layout (tag ``latest``) is kept for the umoci pipeline, which inserts into a
    copy of it; without umoci only the archive exists.
    """
    if not BUSYBOX.is_file():
        raise RuntimeError(f"{BUSYBOX} is missing: install busybox-static")
    archive = work / "base.tar"
    if peers.which("umoci"):
        layout = work / "base-layout"
        peers.umoci_build(
            layout,
            {"/bin/busybox": BUSYBOX},
            entrypoint=["/bin/busybox"],
            architecture=oci_architecture(),
        )
        peers.pack_layout(layout, archive)
        return layout, archive
    subprocess.run(
        [
            str(zeroimage),
            "build",
            "-q",
            "--no-cache",
            "--entrypoint-path",
            "/bin/busybox",
            "-o",
            str(archive),
            str(BUSYBOX),
        ],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
        stdout=subprocess.DEVNULL,
    )
    return None, archive


def copy_layout(layout: Path, dest: Path) -> Path:
    """A private copy of a layout for one peer run (``umoci insert`` modifies it in place)."""
    shutil.copytree(layout, dest)
    return dest
