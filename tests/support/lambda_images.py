"""Inputs for the AWS Lambda tests (issue 16) that the other helpers do not make, and Lambda's
own layer rule read apart from zeroimage's code:

* :func:`compile_c`: a real program from C source, for the host or a cross compiler, static or
  not (a test that needs a program to *run*, or an ELF whose platform a real linker wrote);
* :func:`host_libc_base`: a base of the host's own ELF loader and C library, the library with the
  mode a test chooses (Lambda's user cannot read a 0600 root-owned one);
* :func:`zstd_copy`: an image whose layers skopeo recompressed as zstd (Lambda takes only gzip);
* :func:`zeros_base`: a base of many gigabytes uncompressed, made and listed in well under a
  second: one layer of zeros, named ``times`` times by its manifest (Lambda's limit is on all
  layers together, each counted);
* :func:`layer_members` and :func:`orphans`: a layer's members as written, and those that come
  without a directory entry for their parent before them (Lambda refuses such a layer:
  ``MissingParentDirectory``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from isal import isal_zlib

from . import images, peers
from .images import Member, directory, symlink

#: A program that reads Lambda's Runtime API variable, as aws-lambda-go and lambda_runtime do.
RUNTIME_API_CLIENT = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    printf("runtime api: %s\n", api ? api : "(unset)");
    return 0;
}
"""
#: Where Debian keeps the amd64 loader and C library (the base below mirrors it).
HOST_LIBS = "lib/x86_64-linux-gnu"
LOADER = "ld-linux-x86-64.so.2"
LIBC = "libc.so.6"


def compile_c(source: str, out: Path, *, compiler: str = "cc", static: bool = True) -> Path:
    """``source`` compiled and linked by ``compiler`` to ``out`` (mode 0755); the calling test
    is skipped when the compiler is missing or cannot link (``make deps`` installs them)."""
    if peers.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    code = out.with_name(f"{out.name}.c")
    code.write_text(source)
    proc = subprocess.run(
        [compiler, *(["-static"] if static else []), "-Os", "-o", str(out), str(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        pytest.skip(f"{compiler} cannot link {'statically' if static else ''}: {proc.stderr.strip()[:200]}")
    out.chmod(0o755)
    return out


def host_libc_base(archive: Path, libc_mode: int) -> Path:
    """An OCI archive of one layer holding the host's amd64 loader (0755) at Debian's paths,
    with ``/lib64`` linking to it, and the host's C library with ``libc_mode``, root's: what a
    dynamically linked amd64 program built here needs to start. Skips off Debian's amd64 layout."""
    found = {name: Path("/", HOST_LIBS, name) for name in (LOADER, LIBC)}
    if not all(path.is_file() for path in found.values()):
        pytest.skip(f"the host has no {' or '.join(map(str, found.values()))}")
    members = [
        directory("lib"),
        directory(HOST_LIBS),
        Member(f"{HOST_LIBS}/{LOADER}", data=found[LOADER].read_bytes(), mode=0o755),
        Member(f"{HOST_LIBS}/{LIBC}", data=found[LIBC].read_bytes(), mode=libc_mode),
        directory("lib64"),
        symlink(f"lib64/{LOADER}", f"/{HOST_LIBS}/{LOADER}"),
    ]
    return images.write_archive(archive, [members])


def zstd_copy(layout: Path, dest: Path, tag: str = "latest") -> Path:
    """The image ``layout:tag`` copied by skopeo to the layout ``dest`` (same tag), every layer
    recompressed as zstd; returns ``dest``."""
    peers.require("skopeo")
    peers.run(
        ["skopeo", "copy", "--quiet", "--dest-compress", "--dest-compress-format", "zstd"]
        + [f"oci:{layout}:{tag}", f"oci:{dest}:{tag}"]
    )
    return dest


def zeros_base(layout: Path, file_size: int, times: int, *, tag: str = "latest") -> int:
    """An OCI layout at ``layout`` of one linux/amd64 image whose manifest names one gzip layer
    ``times`` times: a tar holding ``/zeros``, ``file_size`` zero bytes (a multiple of 512).
    Returns the layer's size uncompressed, tar headers and end included.

    The layer is streamed through ISA-L's deflate (about 1 s a GiB here) and never held whole;
    a layer of zeros compresses about 1000 to 1."""
    assert file_size % 512 == 0, "a size the tar needs no padding for"
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = file_size, 0o644, images.EPOCH
    deflate = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)  # gzip framing
    compressed = bytearray()
    diff_id = hashlib.sha256()
    uncompressed = 0

    def feed(data: bytes) -> None:
        nonlocal uncompressed
        diff_id.update(data)
        uncompressed += len(data)
        compressed.extend(deflate.compress(data))

    feed(info.tobuf(tarfile.USTAR_FORMAT))
    chunk = bytes(4 << 20)
    left = file_size
    while left:
        feed(chunk if left >= len(chunk) else chunk[:left])
        left -= min(left, len(chunk))
    feed(bytes(2 * 512))  # the end of the archive
    compressed.extend(deflate.flush())
    layer = {"mediaType": images.OCI_LAYER_GZIP, "digest": _put(layout, bytes(compressed)), "size": len(compressed)}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id.hexdigest()] * times},
    }
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": images.OCI_MANIFEST,
        "config": {"mediaType": images.OCI_CONFIG, "digest": _put(layout, config_bytes), "size": len(config_bytes)},
        "layers": [layer] * times,
    }
    manifest_bytes = json.dumps(manifest).encode()
    entry = {
        "mediaType": images.OCI_MANIFEST,
        "digest": _put(layout, manifest_bytes),
        "size": len(manifest_bytes),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return uncompressed


def _put(layout: Path, data: bytes) -> str:
    digest = peers.digest_of(data)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return digest


def layer_members(data: bytes) -> list[tarfile.TarInfo]:
    """The members of a gzip layer, in order. umoci ends its layers without the tar's two zero
    blocks, which ``tarfile`` takes for a truncated archive: they are added after the last
    member, which changes no member."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data) + bytes(2 * 512)), mode="r:") as tar:
        return tar.getmembers()


def orphans(members: Sequence[tarfile.TarInfo]) -> list[str]:
    """The members (names as written) that come without a directory entry for each of their
    parents before them in the layer: what Lambda refuses as ``MissingParentDirectory``."""
    seen: set[str] = set()
    out: list[str] = []
    for member in members:
        parts = member.name.removeprefix("./").strip("/").split("/")
        if any("/".join(parts[:depth]) not in seen for depth in range(1, len(parts))):
            out.append(member.name)
        if member.isdir():
            seen.add("/".join(parts))
    return out
