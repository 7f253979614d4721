"""Images for tests, made and read apart from zeroimage's code: bases written with ``tarfile``
(every mode, owner and symlink as a test needs it, which ``umoci insert`` cannot give), and the
documents and layer members of what a build wrote, read back with ``json`` and ``tarfile``.

A base is an OCI layout directory (:func:`write_layout`) holding one single-platform image, each
layer a gzip tar of :class:`Member` s in the order given (a test that needs parents missing or
out of order writes them so). Pack it with :func:`tests.support.peers.pack_layout` for an
archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import peers
from .programs import static_amd64_header

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
#: A fixed time for every base member and document: the bases are the same on every run.
EPOCH = 1_600_000_000


@dataclass(frozen=True)
class Member:
    """One tar member of a base layer; ``path`` without a leading ``/``."""

    path: str
    kind: Literal["dir", "file", "symlink"] = "file"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Member:
    return Member(path, "dir", mode, uid, gid)


def text_file(path: str, text: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Member:
    return Member(path, "file", mode, uid, gid, text.encode())


def symlink(path: str, target: str) -> Member:
    return Member(path, "symlink", 0o777, target=target)


def _layer(members: Sequence[Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.path)
            info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, EPOCH
            if member.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, member.target
                tar.addfile(info)
            else:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
    return raw.getvalue()


def _put(layout: Path, data: bytes) -> str:
    digest = peers.digest_of(data)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return digest


def write_layout(
    layout: Path,
    layers: Sequence[Sequence[Member]],
    *,
    container: Mapping[str, Any] | None = None,
    tag: str = "latest",
    architecture: str = "amd64",
    variant: str = "",
) -> Path:
    """An OCI layout at ``layout`` holding one image (tagged ``tag``) of ``layers``, whose
    config's ``config`` is ``container``; returns ``layout``."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    platform = {"architecture": architecture, "os": "linux", **({"variant": variant} if variant else {})}
    descriptors, diff_ids = [], []
    for members in layers:
        tar = _layer(members)
        diff_ids.append(peers.digest_of(tar))
        compressed = gzip.compress(tar, mtime=0)
        descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": _put(layout, compressed), "size": len(compressed)})
    config = {
        **platform,
        "created": "2020-09-13T12:26:40Z",
        "config": dict(container or {}),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "test base layer"} for _ in layers],
    }
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _put(layout, config_bytes), "size": len(config_bytes)},
        "layers": descriptors,
    }
    manifest_bytes = json.dumps(manifest).encode()
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": _put(layout, manifest_bytes),
        "size": len(manifest_bytes),
        "platform": platform,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}))
    return layout


def tiny_program(path: Path, mode: int = 0o755) -> Path:
    """A static linux/amd64 ELF of a few hundred bytes at ``path``: all a build reads of a
    program, for tests whose images are looked at, not run."""
    path.write_bytes(static_amd64_header() + bytes(64))
    path.chmod(mode)
    return path


def write_archive(archive: Path, layers: Sequence[Sequence[Member]], **options: Any) -> Path:
    """:func:`write_layout`, packed as an OCI archive at ``archive`` (tagged ``tag``)."""
    layout = write_layout(archive.with_name(f".{archive.name}-layout"), layers, **options)
    return peers.pack_layout(layout, archive)


# -- reading back what a build wrote -------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One platform's image in an OCI layout: its ``index.json`` entry (or the index's entry for
    it), manifest and config, and the layout to read its blobs from."""

    layout: Path
    entry: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]

    def blob(self, digest: str) -> bytes:
        return blob(self.layout, digest)

    def layer_members(self, index: int) -> list[tarfile.TarInfo]:
        """The members of layer ``index`` (negative counts from the top), in their order."""
        return layer_members(self.blob(self.manifest["layers"][index]["digest"]))


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def layer_members(data: bytes) -> list[tarfile.TarInfo]:
    """The members of a (gzip) layer, names as written, in order."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        return tar.getmembers()


def read_image(where: Path, tmp: Path, *, platform: str | None = None) -> Image:
    """The image in an OCI archive (extracted under ``tmp``) or layout ``where``: the only one,
    or the one for ``platform`` (``os/arch[/variant]``) below a (nested) index."""
    layout = where if where.is_dir() else peers.extract_archive(where, tmp / f"read-{where.name}")
    (entry,) = peers.read_index(layout)["manifests"]
    while entry.get("mediaType") == OCI_INDEX:
        manifests = json.loads(blob(layout, entry["digest"]))["manifests"]
        chosen = [m for m in manifests if platform is None or _platform_name(m.get("platform") or {}) == platform]
        if len(chosen) != 1:
            raise AssertionError(f"{where}: no single {platform} image in {[m.get('platform') for m in manifests]}")
        entry = chosen[0]
    manifest = json.loads(blob(layout, entry["digest"]))
    return Image(layout, entry, manifest, json.loads(blob(layout, manifest["config"]["digest"])))


def _platform_name(platform: Mapping[str, str]) -> str:
    parts = [platform.get("os", ""), platform.get("architecture", ""), platform.get("variant", "")]
    return "/".join(p for p in parts if p)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
