"""``docker save`` archives (``docker-archive:PATH[:NAME:TAG]``), read and written.

Read: ``manifest.json`` names a config file and layer files, as Docker (before and after 25.0,
which nests an OCI layout), skopeo and podman write them. Layers may be plain tars (their digest
is then their diff_id) or compressed (hashed once to learn their digest).

Write: one image (docker-archive has no multi-platform form): ``manifest.json``, the config and
the layers under ``blobs/sha256/``, loadable by ``docker load`` (which inflates gzip layers and
checks them against the config's diff_ids) and readable by skopeo.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zeroimage.errors import InputError, UsageError
from zeroimage.files import Readable, VerifyingReader
from zeroimage.image import Attachments, Blob, DocumentBudget, ImageFormat, ImageGraph, LayerTap, Source, WriteResult
from zeroimage.oci import MAX_CONFIG_SIZE, MAX_DOCUMENT_SIZE, Descriptor, ImageConfig, Manifest, sha256_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import parse_json
from zeroimage.progress import Reporter
from zeroimage.reference import Reference
from zeroimage.transports.storage import TarFiles, clean_member_name
from zeroimage.transports.tarwriter import TarWriter, add_new_layers, archive_file, blob_name

_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def familiar_name(reference: Reference) -> str:
    """``docker.io/library/busybox:latest`` → ``busybox:latest``, as ``docker save`` writes tags."""
    name = reference.name
    if name.startswith("docker.io/library/"):
        name = name[len("docker.io/library/") :]
    elif name.startswith("docker.io/"):
        name = name[len("docker.io/") :]
    return f"{name}:{reference.tag or 'latest'}"


class DockerArchiveSource:
    def __init__(self, path: Path, reference: Reference | None, budget: DocumentBudget | None = None) -> None:
        self.description = self.name = f"docker-archive:{path}"
        self.files = TarFiles(path)
        self.budget = budget or DocumentBudget()
        self._documents: dict[str, bytes] = {}
        self._blobs: dict[str, Blob] = {}
        entry = self._entry(reference)
        self._root = self._load(entry)

    def _entry(self, reference: Reference | None) -> dict[str, Any]:
        if self.files.size("manifest.json") is None:
            raise InputError(f"{self.description} is not a docker-archive: it has no manifest.json")
        raw = self.files.read_small("manifest.json", MAX_DOCUMENT_SIZE)
        self.budget.charge(len(raw), f"{self.description}: manifest.json")
        entries = parse_json(raw, f"{self.description}: manifest.json")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise InputError(f"{self.description}: manifest.json lists no images")
        if reference is None:
            if len(entries) > 1:
                raise InputError(f"{self.description} holds {len(entries)} images; name one with :NAME:TAG")
            return dict(entries[0])
        wanted = {str(reference), familiar_name(reference)}
        for entry in entries:
            tags = entry.get("RepoTags") or []
            if isinstance(tags, list) and wanted & {t for t in tags if isinstance(t, str)}:
                return dict(entry)
        raise InputError(f"{self.description} has no image tagged {familiar_name(reference)}")

    def _load(self, entry: dict[str, Any]) -> Descriptor:
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise InputError(f"{self.description}: manifest.json entry lacks Config or Layers")
        if not all(isinstance(name, str) for name in layer_names):
            raise InputError(f"{self.description}: manifest.json entry names a layer with something not a string")
        config_raw = self.files.read_small(clean_member_name(config_name, self.description), MAX_CONFIG_SIZE)
        self.budget.charge(len(config_raw), f"{self.description}: {config_name}")
        config = ImageConfig.from_bytes(config_raw, f"{self.description} config")
        diff_ids = config.diff_ids
        if len(diff_ids) != len(layer_names):
            raise InputError(f"{self.description}: {len(layer_names)} layers but {len(diff_ids)} diff_ids")
        config_desc = Descriptor(mt.OCI_CONFIG, sha256_digest(config_raw), len(config_raw))
        self._documents[config_desc.digest] = config_raw
        layers = [self._layer(name, diff_id) for name, diff_id in zip(layer_names, diff_ids, strict=True)]
        manifest = Manifest(config=config_desc, layers=tuple(layers))
        raw = manifest.to_bytes()
        desc = Descriptor(mt.OCI_MANIFEST, sha256_digest(raw), len(raw), platform=config.platform)
        self._documents[desc.digest] = raw
        return desc

    def _layer(self, name: str, diff_id: str) -> Descriptor:
        member = clean_member_name(name, self.description)
        size = self.files.size(member)
        if size is None:
            raise InputError(f"{self.description} is missing layer {name!r}")
        with self.files.open(member) as reader:
            magic = reader.read(4)
        if magic.startswith(_GZIP) or magic.startswith(_ZSTD):
            hasher = hashlib.sha256()
            with self.files.open(member) as reader:
                while chunk := reader.read(1 << 20):
                    hasher.update(chunk)
            digest = "sha256:" + hasher.hexdigest()
            media_type = mt.OCI_LAYER_GZIP if magic.startswith(_GZIP) else mt.OCI_LAYER_ZSTD
        else:
            digest, media_type = diff_id, mt.OCI_LAYER
        desc = Descriptor(media_type, digest, size)

        def opener() -> Readable:
            return VerifyingReader(self.files.open(member), desc.digest, desc.size, f"layer {name}")

        self._blobs[desc.digest] = Blob(desc, opener)
        return desc

    def root(self) -> Descriptor:
        return self._root

    def document(self, desc: Descriptor) -> bytes:
        try:
            return self._documents[desc.digest]
        except KeyError:
            raise InputError(f"{self.description} has no document {desc.digest}") from None

    def blob(self, desc: Descriptor) -> Blob:
        try:
            return self._blobs[desc.digest]
        except KeyError:
            raise InputError(f"{self.description} has no layer {desc.digest}") from None

    def referrers(self, digest: str) -> list[Descriptor]:
        return []  # docker save keeps no attachments

    def tagged(self, tag: str) -> Descriptor | None:
        return None

    def close(self) -> None:
        pass


def single_image(graph: ImageGraph, description: str) -> tuple[Descriptor, Manifest]:
    images = list(graph.manifests())
    if len(images) != 1:
        raise UsageError(
            f"{description} holds one platform, but this build has {len(images)}: "
            "pick one with --platform, or write an OCI archive or push for all"
        )
    return images[0]


def write_docker_archive(
    graph: ImageGraph, out: Any, reference: Reference | None, mtime: int, reporter: Reporter, description: str
) -> None:
    """The whole archive to ``out`` (a stream: nothing was written ahead)."""
    tar = TarWriter(out, mtime)
    _archive_head(tar)
    _write_rest(graph, tar, set(), reference, reporter, description)


def _archive_head(tar: TarWriter) -> None:
    tar.add_dir("blobs/")
    tar.add_dir("blobs/sha256/")


def _write_rest(
    graph: ImageGraph,
    tar: TarWriter,
    written: set[str],
    reference: Reference | None,
    reporter: Reporter,
    description: str,
) -> None:
    """What follows the head (and the layers ``written`` after it): the rest of the new layers,
    the config, the base's layers, ``manifest.json``."""
    _, manifest = single_image(graph, description)
    add_new_layers(tar, graph, written, reporter)
    tar.add_bytes(blob_name(manifest.config.digest), graph.documents[manifest.config.digest])
    for layer in manifest.layers:
        if layer.digest not in written:
            written.add(layer.digest)
            tar.add_blob(blob_name(layer.digest), graph.blobs[layer.digest], reporter, f"writing {layer.digest[7:19]}")
    entry = {
        "Config": blob_name(manifest.config.digest),
        "RepoTags": [familiar_name(reference)] if reference else [],
        "Layers": [blob_name(layer.digest) for layer in manifest.layers],
    }
    tar.add_bytes("manifest.json", json.dumps([entry], separators=(",", ":")).encode())
    tar.close()


class DockerArchiveSink:
    """Writes one image as a ``docker save`` archive (replacing the file atomically), its new
    layers streamed in while they are compressed."""

    fixed_format: ImageFormat | None = None
    needs_layer_files = True
    #: Docker's formats have no place for signatures or SBOMs.
    takes_attachments = False

    def __init__(self, path: Path, reference: Reference | None, mtime: int) -> None:
        self.path = path
        self.reference = reference
        self.mtime = mtime
        self.description = f"docker-archive:{path}"
        self._staged = archive_file(path, mtime, _archive_head)

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return self._staged.layer_tap()

    def layer_sources(self) -> list[Source]:
        return []

    def discard(self) -> None:
        self._staged.discard()  # nothing, once written

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        _, manifest = single_image(graph, self.description)
        with self._staged.output(graph) as (tar, written):
            _write_rest(graph, tar, written, self.reference, reporter, self.description)
        where = self.description + (f":{familiar_name(self.reference)}" if self.reference else "")
        return [WriteResult(where, manifest.config.digest, image_id=True)]  # as Docker shows it
