"""What the SBOM tests read: real programs and real base images, made with real tools.

- Go: :mod:`tests.support.gomodules` (Debian's Go, a local module proxy).
- Go's older build info (pointers to Go strings, before Go 1.18), which no Go here writes: a C
  program whose ``.go.buildinfo`` section the C compiler and linker lay out exactly as Go's
  linker did — the header, then the addresses of two string headers (address, length) — so
  that ``go version -m`` reads it as it reads an old Go program.
- Rust: a program built with rustc (a C one where rustc is missing), and ``objcopy
  --add-section .dep-v0=FILE`` to add cargo-auditable's section (cargo-auditable is not here).
- Bases: OCI layouts built with umoci (``init``/``new``/``insert``, ``--whiteout``), their
  layers read back through zeroimage's listing as a build reads a base.

Built programs are cached under ``$ZEROIMAGE_TEST_CACHE`` (``/tmp/zeroimage-test-cache``),
keyed by what they are built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support import gomodules
from tests.support.peers import require, run, which
from zeroimage.image import Blob
from zeroimage.oci import Descriptor
from zeroimage.rootfs import FileTree, ListingCache, base_tree
from zeroimage.store import BlobStore

CACHE = Path(os.environ.get("ZEROIMAGE_TEST_CACHE", "/tmp/zeroimage-test-cache"))

#: Go's module info sentinels (cmd/go/internal/modload infoStart, infoEnd).
INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")
MAGIC = b"\xff Go buildinf:"


def go_program() -> gomodules.GoProgram:
    """The Go program of :mod:`tests.support.gomodules` (skips the test without Go)."""
    program = gomodules.build_go_program(CACHE)
    if program is None:
        pytest.skip("Debian's golang-go is not installed")
    return program


def _cached(kind: str, recipe: object, build: Callable[[Path], Path]) -> Path:
    key = hashlib.sha256(json.dumps([kind, recipe], default=repr).encode()).hexdigest()[:16]
    target = CACHE / f"{kind}-{key}"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=CACHE))
    try:
        out = build(work)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _c_bytes(data: bytes) -> str:
    """``data`` as a C string literal, every byte an octal escape (no escape can run on)."""
    return '"' + "".join(f"\\{b:03o}" for b in data) + '"'


def pointer_format_program(version: bytes, modinfo: bytes, *, framed: bool = True, compiler: str = "cc") -> Path:
    """A static C program holding build info in the pre-1.18 pointer format (see the module):
    ``version`` and ``modinfo`` (framed by Go's sentinels when ``framed``), built by
    ``compiler`` (``arm-linux-gnueabihf-gcc``: 32-bit pointers)."""
    require(compiler)
    text = INFO_START + modinfo + INFO_END if framed else modinfo
    magic = _c_bytes(MAGIC)
    source = f"""
struct gostring {{ const char *data; long length; }};
static const char version[] = {_c_bytes(version)};
static const char modinfo[] = {_c_bytes(text)};
static const struct gostring version_header = {{ version, sizeof version - 1 }};
static const struct gostring modinfo_header = {{ modinfo, sizeof modinfo - 1 }};
struct buildinfo {{ char magic[14]; unsigned char pointer_size, flags; const struct gostring *version, *modinfo; }};
__attribute__((section(".go.buildinfo"), aligned(16), used))
const struct buildinfo buildinfo = {{
    {magic}, sizeof(void *), 0, &version_header, &modinfo_header
}};
int main(void) {{ return 0; }}
"""

    def build(work: Path) -> Path:
        (work / "old.c").write_text(source)
        run([compiler, "-static", "-no-pie", "-O0", "-o", str(work / "old"), str(work / "old.c")])
        return work / "old"

    return _cached("go-pointer-format", [compiler, source], build)


_RUST_MAIN = 'fn main() { println!("hello from rust"); }\n'


def rust_program() -> Path:
    """A small Rust program (built with rustc), or a C one where rustc is missing."""
    rustc = which("rustc")
    if rustc is None:
        require("cc")

    def build(work: Path) -> Path:
        if rustc is not None:
            (work / "main.rs").write_text(_RUST_MAIN)
            run([rustc, "-O", "-o", str(work / "prog"), str(work / "main.rs")], timeout=300)
        else:
            (work / "main.c").write_text("int main(void) { return 0; }\n")
            run(["cc", "-O", "-o", str(work / "prog"), str(work / "main.c")])
        return work / "prog"

    return _cached("rust-hello" if rustc else "c-hello", _RUST_MAIN, build)


def add_section(binary: Path, name: str, data: bytes, out: Path) -> Path:
    """A copy of ``binary`` at ``out`` with a section ``name`` holding ``data`` (objcopy)."""
    require("objcopy")
    content = out.with_name(out.name + ".section")
    content.write_bytes(data)
    run(
        [
            "objcopy",
            "--add-section",
            f"{name}={content}",
            "--set-section-flags",
            f"{name}=noload,readonly",
            str(binary),
            str(out),
        ]
    )
    return out


def section_header_offset(binary: bytes, name: str) -> int:
    """Where in a 64-bit little-endian ELF file the section header of ``name`` is."""
    shoff = int.from_bytes(binary[0x28:0x30], "little")
    shentsize = int.from_bytes(binary[0x3A:0x3C], "little")
    shnum = int.from_bytes(binary[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(binary[0x3E:0x40], "little")
    names_header = shoff + shstrndx * shentsize
    names_at = int.from_bytes(binary[names_header + 24 : names_header + 32], "little")
    for i in range(shnum):
        header = shoff + i * shentsize
        name_at = names_at + int.from_bytes(binary[header : header + 4], "little")
        if binary[name_at : binary.index(b"\0", name_at)] == name.encode():
            return header
    raise AssertionError(f"no section {name}")


# ---------------------------------------------------------------------------------------- bases

Layer = Mapping[str, "bytes | str | None"]  # path in the image → content (a symlink: "->TARGET"; None: whiteout)


def umoci_base(work: Path, layers: Sequence[Layer]) -> list[Blob]:
    """An OCI layout made with umoci, one ``umoci insert`` per layer (a directory tree, then each
    whiteout); its layers as a build reads them."""
    require("umoci")
    layout = work / "layout"
    run(["umoci", "init", "--layout", str(layout)])
    image = f"{layout}:base"
    run(["umoci", "new", "--image", image])
    for n, layer in enumerate(layers):
        root = work / f"layer{n}"
        root.mkdir()
        whiteouts = []
        for path, content in layer.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                whiteouts.append(path)
            elif isinstance(content, str) and content.startswith("->"):
                target.symlink_to(content[2:])
            else:
                target.write_bytes(content.encode() if isinstance(content, str) else content)
        if any(root.iterdir()):
            run(["umoci", "insert", "--image", image, str(root), "/"])
        for path in whiteouts:
            run(["umoci", "insert", "--image", image, "--whiteout", path])
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_bytes())
    blobs = []
    for layer_descriptor in manifest["layers"]:
        descriptor = Descriptor.from_dict(layer_descriptor)
        path = _blob(layout, descriptor.digest)
        blobs.append(Blob(descriptor, lambda path=path: path.open("rb")))  # type: ignore[misc]
    return blobs


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return layout / "blobs" / algorithm / encoded


def listed_tree(blobs: Sequence[Blob], cache: Path | None = None) -> FileTree:
    """The filesystem of ``blobs``, listed (and cached in ``cache``) as a build lists a base."""
    return base_tree(blobs, ListingCache(BlobStore(cache) if cache is not None else None))
