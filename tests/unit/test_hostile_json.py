"""Hostile JSON in local inputs: every value of every document of a small image, in turn,
replaced by a value of each JSON type (and by JSON nested 600 deep), then read as a build and an
inspect read a base. Only the project's own errors may come out — never a TypeError, an
AttributeError or a RecursionError, which the CLI reports as an internal error (exit 70).

The documents are an OCI archive's ``index.json``, manifest and config, and a docker-archive's
``manifest.json`` and config. The descriptors naming a changed document are changed with it
(digest and size), so that what is read is the changed value, not a digest mismatch.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zeroimage.customize import ConfigChanges, apply_changes
from zeroimage.describe import describe
from zeroimage.errors import ZeroimageError
from zeroimage.image import Source, load_base
from zeroimage.oci import Platform
from zeroimage.reference import parse_reference
from zeroimage.transports.docker_archive import DockerArchiveSource
from zeroimage.transports.oci_layout import LayoutSource


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


#: Python's parser takes this; copying it (2 frames a level) or writing it out again does not.
DEEP = _deep(600)
VALUES: list[Any] = [None, True, 0, -1, 2**64, 1.5, "", "x", [], {}, [[1]], {"a": {"b": 1}}, ["x", 1], DEEP]

LAYER_TAR = _tar({"etc/passwd": b"root:x:0:0::/:/bin/sh\n"})
LAYER = gzip.compress(LAYER_TAR, mtime=0)
CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Env": ["PATH=/bin"],
        "Entrypoint": ["/bin/sh"],
        "Cmd": ["-c", "true"],
        "Labels": {"a": "b"},
        "ExposedPorts": {"22/tcp": {}},
        "Volumes": {"/data": {}},
        "WorkingDir": "/",
        "User": "0",
        "StopSignal": "SIGTERM",
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(LAYER_TAR)]},
    "history": [{"created_by": "hand"}],
}
MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(dumps(CONFIG)), "size": 1},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(LAYER), "size": len(LAYER)}],
    "annotations": {"k": "v"},
}
INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": MANIFEST["mediaType"],
            "digest": sha(dumps(MANIFEST)),
            "size": 1,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }
    ],
}
DOCKER_MANIFEST = [{"Config": "config.json", "RepoTags": ["app:v1"], "Layers": ["layer.tar.gz"]}]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value: the value itself, then each member and item, recursively."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        yield from paths(child, (*prefix, key))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(document)
    place = out
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return out


def renamed(document: Any, old: str, data: bytes) -> Any:
    """``document`` with each descriptor whose digest is ``old`` naming ``data`` instead."""
    out = json.loads(json.dumps(document))  # a copy that DEEP does not make recurse too deep
    pending = [out]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if item.get("digest") == old:
                item.update(digest=sha(data), size=len(data))
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return out


def oci_archive(path: Path, documents: dict[str, Any]) -> Source:
    config = dumps(documents["config"])
    manifest = dumps(renamed(documents["manifest"], MANIFEST["config"]["digest"], config))
    index = dumps(renamed(documents["index.json"], INDEX["manifests"][0]["digest"], manifest))
    blobs = {sha(b)[7:]: b for b in (config, manifest, LAYER)}
    members = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    path.write_bytes(_tar(members | {f"blobs/sha256/{hex}": data for hex, data in blobs.items()}))
    return LayoutSource.archive(path, None)


def docker_archive(path: Path, documents: dict[str, Any]) -> Source:
    members = {
        "manifest.json": dumps(documents["manifest.json"]),
        "config.json": dumps(documents["config"]),
        "layer.tar.gz": LAYER,
    }
    path.write_bytes(_tar(members))
    return DockerArchiveSource(path, parse_reference("app:v1"))


def read_as_build_and_inspect(source: Source) -> None:
    """What ``inspect --json`` and ``build --from SOURCE --env ... --user 0`` read of a base and
    do with its config (the steps, as this test owns neither the CLI nor the build pipeline)."""
    json.dumps(describe(source).to_json(), indent=2)
    base = load_base(source, Platform("linux", "amd64"))
    config = (
        base.config.with_platform(base.platform)
        .with_layer("sha256:" + "0" * 64, "2020-01-01T00:00:00Z", "zeroimage")
        .with_entrypoint(["/app"])
        .with_created("2020-01-01T00:00:00Z")
    )
    changes = ConfigChanges(env=(("A", "1"),), labels=(("l", "v"),), workdir="/w", user="0", expose=("80/tcp",))
    apply_changes(config, changes, None).to_bytes()


def escaped(source: Callable[[], Source]) -> str:
    """What came out of reading other than nothing or a ZeroimageError ('' for neither)."""
    try:
        read_as_build_and_inspect(source())
    except ZeroimageError:
        return ""
    except Exception as exc:  # noqa: BLE001 - what escapes is what this test looks for
        return f"{type(exc).__name__}: {str(exc)[:100]}"
    return ""


SOURCES: dict[str, tuple[Callable[[Path, dict[str, Any]], Source], dict[str, Any]]] = {
    "oci-archive": (oci_archive, {"index.json": INDEX, "manifest": MANIFEST, "config": CONFIG}),
    "docker-archive": (docker_archive, {"manifest.json": DOCKER_MANIFEST, "config": CONFIG}),
}
DOCUMENTS = [(kind, name) for kind, (_, documents) in SOURCES.items() for name in documents]


@pytest.mark.parametrize("kind", SOURCES)
def test_the_unaltered_image_is_read(kind: str, tmp_path: Path) -> None:
    """The control: what is altered below is read whole when it is not."""
    make, documents = SOURCES[kind]
    read_as_build_and_inspect(make(tmp_path / "image.tar", documents))


@pytest.mark.parametrize(("kind", "name"), DOCUMENTS, ids=[f"{k}-{n}" for k, n in DOCUMENTS])
def test_any_value_of_any_type_anywhere_gives_our_error_or_none(kind: str, name: str, tmp_path: Path) -> None:
    """Before: a mediaType that was a list or an object (TypeError: unhashable), an Env, Labels
    or ExposedPorts of another type (merged with the flags: TypeError, AttributeError), any
    value nested 600 deep (RecursionError when the build copied the config) escaped."""
    make, documents = SOURCES[kind]
    found = []
    for path in paths(documents[name]):
        for value in VALUES:
            altered = {**documents, name: replaced(documents[name], path, value)}
            problem = escaped(lambda a=altered: make(tmp_path / "image.tar", a))  # type: ignore[misc]
            if problem:
                found.append(f"{name} {'/'.join(map(str, path)) or '(whole)'} = {str(value)[:30]}: {problem}")
    assert found == [], "\n".join(found)
