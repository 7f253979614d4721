"""Hand-made base images whose layers an attacker wrote: tar streams built in the test (with
``tarfile`` or header by header), gzip'd, and put in an OCI archive that zeroimage can use as
``--from oci-archive:PATH``; and :func:`run_measured`, which runs the CLI and measures it.

Large claims stay cheap: a gigabyte of zeros is many copies of one small gzip member (a gzip
stream may hold several), so a 1 GB header costs about 1 MB on disk and no time to make.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BLOCK = 512
TIME = Path("/usr/bin/time")
_MIB_OF_ZEROS = zlib.compress(bytes(1 << 20), 9, wbits=31)  # one gzip member


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Layer:
    """A layer's tar stream, in pieces: ``chunks`` of the uncompressed tar, each either bytes or
    a count of zero bytes (kept as a count, so that gigabytes cost nothing until written)."""

    chunks: tuple[bytes | int, ...]

    def gzip(self) -> tuple[bytes, str]:
        """The gzip'd layer and its diff_id (the sha256 of the tar)."""
        out = io.BytesIO()
        tar_hash = hashlib.sha256()
        for chunk in self.chunks:
            if isinstance(chunk, int):
                whole, rest = divmod(chunk, 1 << 20)
                out.write(_MIB_OF_ZEROS * whole)
                out.write(zlib.compress(bytes(rest), 9, wbits=31))
                block = bytes(1 << 20)
                for _ in range(whole):
                    tar_hash.update(block)
                tar_hash.update(bytes(rest))
            else:
                out.write(zlib.compress(chunk, 1, wbits=31))
                tar_hash.update(chunk)
        return out.getvalue(), "sha256:" + tar_hash.hexdigest()


def layer_of(*chunks: bytes | int) -> Layer:
    return Layer(tuple(chunks))


def tar_of(members: Iterable[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A tar (PAX format) of ``members``; a member given with bytes is a regular file with them."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info, data = member if isinstance(member, tuple) else (member, None)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def raw_header(name: bytes, size: int, kind: bytes) -> bytes:
    """A ustar header written by hand: the sizes and types tarfile's writer would not make."""
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    if size < 8**11:
        block[124:136] = b"%011o\0" % size
    else:  # base-256, as GNU tar writes large sizes
        block[124:136] = b"\x80" + size.to_bytes(11, "big")
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def pax_header(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A PAX extended header (or, with XGLTYPE, a global one) holding ``records``, and its data."""
    body = b"".join(_pax_record(key, value) for key, value in records.items())
    header = tarfile.TarInfo("pax")
    header.type = kind
    header.size = len(body)
    return header.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % BLOCK)


def _pax_record(key: str, value: str) -> bytes:
    """``LENGTH key=value\n``, LENGTH counting its own digits."""
    text = f" {key}={value}\n".encode()
    length = len(text) + len(str(len(text)))
    return b"%d" % (len(text) + len(str(length))) + text


def end_of_archive() -> bytes:
    return bytes(2 * BLOCK)


def many_empty_files(count: int, per_directory: int = 1000) -> Iterator[bytes]:
    """The headers of ``count`` zero-size files (ustar, 512 bytes each) in directories of
    ``per_directory``, from one template: a header's checksum is the template's plus its name's."""
    template = raw_header(b"", 0, tarfile.REGTYPE)
    head, tail = template[100:148], template[156:]
    base = sum(template[:148]) + sum(b" " * 8) + sum(tail)
    for n in range(count):
        name = b"d%d/f%d" % (n // per_directory, n % per_directory)
        yield name.ljust(100, b"\0") + head + b"%06o\0 " % (base + sum(name)) + tail


def oci_archive(path: Path, layers: list[Layer], architecture: str = "amd64") -> Path:
    """A one-platform OCI archive (linux/ARCH) of ``layers``, written to ``path``."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_descriptors, diff_ids = [], []
    for layer in layers:
        data, diff_id = layer.gzip()
        layer_descriptors.append({"mediaType": OCI_LAYER_GZIP, **add(data)})
        diff_ids.append(diff_id)
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **add(_json(config))},
        "layers": layer_descriptors,
    }
    root = {"mediaType": OCI_MANIFEST, **add(_json(manifest))}
    root["platform"] = {"architecture": architecture, "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [root]}
    with tarfile.open(path, "w") as tar:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", _json(index)),
            *((f"blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@dataclass(frozen=True)
class Run:
    """A finished ``python -m zeroimage`` run: its exit code, stderr, wall time and peak RSS."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_kb: int

    def told(self) -> str:
        return (
            f"exit {self.returncode} in {self.seconds:.1f}s, peak {self.peak_rss_kb} kB\nstderr: {self.stderr[-3000:]}"
        )

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "error" in line.lower()]


def run_measured(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """``python -m zeroimage ARGS`` in ``cwd`` (its cache and config there too), with its wall
    time and peak RSS (GNU time's ``%M``: the program's own, not the forking test's)."""
    if not TIME.exists():
        pytest.skip("GNU time is not installed (/usr/bin/time): peak memory cannot be measured")
    full_env = {**os.environ, "ZEROIMAGE_CACHE_DIR": str(cwd / ".cache"), "DOCKER_CONFIG": str(cwd / ".docker")}
    if full_env.get("PYTHONPATH"):  # the child runs elsewhere: a relative entry would miss
        full_env["PYTHONPATH"] = os.pathsep.join(map(os.path.abspath, full_env["PYTHONPATH"].split(os.pathsep)))
    full_env.update(env or {})
    with tempfile.NamedTemporaryFile("r") as rss:
        command = [str(TIME), "-f", "%M", "-o", rss.name, sys.executable, "-m", "zeroimage", *args]
        started = time.monotonic()
        proc = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        peak = int(rss.read().split()[-1])
    return Run(proc.returncode, proc.stdout, proc.stderr, seconds, peak)
