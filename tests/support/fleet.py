"""Helpers for tests of work shared through a registry and a cache (issue 15) and of the
cache's trust (issue 12): images made by other tools, and checks of what a run asked of a
registry or left in an output or a cache, read apart from zeroimage's code.

* :func:`recompressed` turns zeroimage's OCI archive into a layout whose one layer is the same
  tar compressed by the ``gzip`` tool at ``-9``: other bytes, same diff_id, what another builder
  (or another version of the compressor) would have pushed.
* :func:`requests_since` and :func:`mark` read the registry's access log from a point on, so
  that a test asserts what one run asked for.
* :func:`bad_blobs` lists what in a cache (or a layout) is not what its name says.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import peers
from .images import OCI_INDEX, OCI_MANIFEST, blob, layer_members
from .registry import Registry


@dataclass(frozen=True)
class Recompressed:
    """An OCI layout (``layout:tag``) of the image zeroimage wrote, its layer recompressed: the
    new layer's digest, its diff_id (zeroimage's layer's) and the (unchanged) config's digest."""

    layout: Path
    tag: str
    layer: str
    diff_id: str
    config: str


def recompressed(archive: Path, layout: Path, tag: str = "latest") -> Recompressed:
    """The single-layer image of ``archive`` (an OCI archive zeroimage wrote) as an OCI layout at
    ``layout``, its layer decompressed and compressed again by ``gzip -9 -n``; the config (and so
    the diff_id) is kept byte for byte."""
    peers.require("gzip")
    peers.extract_archive(archive, layout)
    (entry,) = peers.read_index(layout)["manifests"]
    manifest: dict[str, Any] = json.loads(blob(layout, entry["digest"]))
    (layer,) = manifest["layers"]
    original = blob(layout, layer["digest"])
    tar = gzip.decompress(original)
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    (diff_id,) = config["rootfs"]["diff_ids"]
    assert peers.digest_of(tar) == diff_id, "the archive's layer is not the tar its config names"
    again = peers.run_bytes(["gzip", "-9", "-n", "-c"], input=tar).stdout
    assert again != original, "gzip -9 wrote the very bytes zeroimage wrote: nothing would tell them apart"
    digest = peers.digest_of(again)
    _put(layout, again)
    for old in (layer["digest"], entry["digest"]):
        _blob_path(layout, old).unlink()
    manifest["layers"] = [{**layer, "digest": digest, "size": len(again)}]
    raw = json.dumps(manifest).encode()
    _put(layout, raw)
    top = {"mediaType": OCI_MANIFEST, "digest": peers.digest_of(raw), "size": len(raw)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}
    (layout / "index.json").write_text(json.dumps(index))
    return Recompressed(layout, tag, digest, diff_id, manifest["config"]["digest"])


def _blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":")[1]


def _put(layout: Path, data: bytes) -> None:
    _blob_path(layout, peers.digest_of(data)).write_bytes(data)


def program_copy(program: Path, dest: Path, extra: bytes = b"") -> Path:
    """``program`` copied to ``dest`` (executable), with ``extra`` appended: a static ELF runs
    the same with data after its end, so each ``extra`` gives another runnable program."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(program.read_bytes() + extra)
    dest.chmod(0o755)
    return dest


# -- the registry's access log ------------------------------------------------------------------


def mark(registry: Registry) -> int:
    """Where the registry's access log is now (for :func:`requests_since`)."""
    return len(registry.access_log())


def requests_since(registry: Registry, start: int) -> list[str]:
    """``METHOD /path HTTP/1.1`` of each request the registry logged since ``start``, the ping
    (``GET /v2/``) left out."""
    return [request for request, _ in statuses_since(registry, start)]


def statuses_since(registry: Registry, start: int) -> list[tuple[str, int]]:
    """Each request since ``start`` (as :func:`requests_since`) with the status it was answered."""
    found = []
    for line in registry.access_log()[start:]:
        _, request, rest = line.split('"', 2)
        if not request.startswith("GET /v2/ "):
            found.append((request, int(rest.split()[0])))
    return found


# -- what a run left ------------------------------------------------------------------------------


def bad_blobs(root: Path) -> list[str]:
    """Below ``root/blobs/sha256``: every file whose sha256 is not its name, and every file
    left half-written (a hidden temporary name). Empty when every blob is what its name says."""
    bad = []
    for path in sorted((root / "blobs" / "sha256").iterdir()):
        if path.name.startswith(".") or peers.digest_of(path.read_bytes()) != f"sha256:{path.name}":
            bad.append(path.name)
    return bad


def file_in_layer(data: bytes, name: str) -> bytes:
    """The content of member ``name`` of a gzip layer."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        found = tar.extractfile(name)
        assert found is not None, (name, [m.name for m in layer_members(data)])
        return found.read()


def pull(registry: Registry, repo_tag: str, archive: Path) -> Path:
    """The image at ``repo_tag`` copied by skopeo to an OCI archive (tagged ``latest``); skopeo
    verifies every blob's digest on the way."""
    peers.run(["skopeo", "copy", *registry.skopeo_args("src"), registry.ref(repo_tag), f"oci-archive:{archive}:latest"])
    return archive


def skopeo_copies(source: str, dest: Path) -> subprocess.CompletedProcess[str]:
    """``skopeo copy SOURCE oci:DEST:latest`` (digests verified as it reads), not checked."""
    shutil.rmtree(dest, ignore_errors=True)
    return peers.run(["skopeo", "copy", source, f"oci:{dest}:latest"], check=False)
