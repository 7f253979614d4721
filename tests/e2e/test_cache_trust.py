"""Nothing local is trusted blindly (issue 12): a cached layer changed on disk never reaches an
output under its old digest, a cache directory of another user is never used, a new one is
private, and the documents one build reads are bounded in total.

Each test asserts the outcome: the bytes an output holds (every blob's sha256 is its name, and
skopeo copies it, verifying as it reads), the cache's files and modes, one clear error line
and its exit code, the peak memory of the run.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import images, peers
from tests.support.fleet import bad_blobs, pull, skopeo_copies
from tests.support.outcomes import fingerprint, refused
from tests.support.registry import Registry, start_registry

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
HELLO = "Hello from a FROM-scratch image built by zeroimage!"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


# -- a cached layer changed on disk -----------------------------------------------------------------


def layer_digest(archive: Path, tmp: Path) -> str:
    """The digest of the (only new) top layer of the OCI archive ``archive``."""
    digest: str = images.read_image(archive, tmp).manifest["layers"][-1]["digest"]
    return digest


@pytest.mark.parametrize("output", ["oci-archive", "docker-archive", "push"])
def test_a_corrupt_cached_layer_is_made_again_never_written_under_its_digest(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path, output: str
) -> None:
    zeroimage("build", "-o", "first.tar", str(static_binary), env=EPOCH)
    digest = layer_digest(tmp_path / "first.tar", tmp_path)
    stored = tmp_path / ".cache" / "blobs" / "sha256" / digest.split(":")[1]
    good = stored.read_bytes()
    middle = len(good) // 2
    bad = good[:middle] + bytes(b ^ 0xFF for b in good[middle : middle + 10]) + good[middle + 10 :]
    stored.write_bytes(bad)

    repo = f"trust/{output}"
    where = {
        "oci-archive": ["-o", "second.tar"],
        "docker-archive": ["-o", "docker-archive:second.tar"],
        "push": ["--push", f"{registry.host}/{repo}:v1"],
    }[output]
    proc = zeroimage("build", *where, str(static_binary), env=EPOCH)

    second = tmp_path / "second.tar"
    if output == "push":
        pull(registry, f"{repo}:v1", second)  # skopeo verifies every blob as it copies it
        assert HELLO in peers.run_image(second).stdout
        assert layer_digest(second, tmp_path) == digest
    else:
        assert skopeo_copies(f"{output}:{second}", tmp_path / "copied").returncode == 0
        extracted = tmp_path / "second"
        with tarfile.open(second) as archive:
            archive.extractall(extracted, filter="data")
            names = archive.getnames()
        assert f"blobs/sha256/{digest.split(':')[1]}" in names
        assert bad_blobs(extracted) == []
    if output == "oci-archive":
        assert second.read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert bad_blobs(tmp_path / ".cache") == []  # the corrupt entry is gone (made again, or not kept)
    assert not [p for p in (tmp_path / ".cache").rglob("*") if p.is_file() and p.read_bytes() == bad]
    # A cache that changed under the build is news to its user: a disk failing, or someone else.
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("zeroimage: warning:")]
    assert len(warnings) == 1, proc.describe()
    assert f"cached layer {digest}" in warnings[0] and "removed from the cache" in warnings[0], warnings


# -- whose cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("through", ["directory", "symlink"])
def test_a_cache_directory_of_another_user_is_refused_and_never_written_into(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, through: str
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)  # writable by anyone: only its owner says it is not ours
    (theirs / "blobs").mkdir()
    os.chown(theirs, 65534, 65534)
    cache = theirs
    if through == "symlink":
        cache = tmp_path / "mine"
        cache.symlink_to(theirs)
    before = fingerprint(tmp_path, skip=())
    proc = zeroimage("build", "-o", "out.tar", str(static_binary), env={"ZEROIMAGE_CACHE_DIR": str(cache)}, check=False)
    refused(proc, 1, str(cache), "65534")
    assert fingerprint(tmp_path, skip=()) == before
    assert os.stat(theirs).st_uid == 65534


def test_a_new_cache_directory_is_private_whatever_the_umask(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "new" / "cache"
    previous = os.umask(0)
    try:
        zeroimage("build", "-o", "out.tar", str(static_binary), env={"ZEROIMAGE_CACHE_DIR": str(cache)})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert list((cache / "blobs" / "sha256").iterdir())  # the cache was used, not bypassed


# -- the documents of one build, in total -----------------------------------------------------------

#: A refused build reads one document at a time (the run itself is ~30 MB here); one that held
#: what the index offers would need 150 MB more.
PEAK_RSS_KB = 128_000


def child_index(padding: int, number: int) -> bytes:
    """An index of no manifests, ``padding`` bytes of annotation and a number of its own."""
    document = {
        "schemaVersion": 2,
        "mediaType": images.OCI_INDEX,
        "manifests": [],
        "annotations": {"test.number": str(number), "test.padding": "x" * padding},
    }
    return json.dumps(document).encode()


def index_of(children: list[bytes]) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": images.OCI_INDEX,
        "manifests": [{"mediaType": images.OCI_INDEX, "digest": peers.digest_of(c), "size": len(c)} for c in children],
    }


@pytest.fixture(scope="module")
def wide_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout of one image, an index naming 150 distinct child indexes of 1 MB each."""
    layout = tmp_path_factory.mktemp("wide")
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    children = [child_index(1_000_000, n) for n in range(150)]
    top = json.dumps(index_of(children)).encode()
    for document in [*children, top]:
        (blobs / peers.digest_of(document).split(":")[1]).write_bytes(document)
    entry = {"mediaType": images.OCI_INDEX, "digest": peers.digest_of(top), "size": len(top)}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout


@pytest.mark.parametrize("limit", ["", "4000000"])
def test_the_documents_of_one_build_are_bounded_in_total(
    zeroimage: Zeroimage, static_binary: Path, wide_layout: Path, tmp_path: Path, limit: str
) -> None:
    env = {"ZEROIMAGE_DOCUMENTS_LIMIT": limit} if limit else {}
    before = fingerprint(tmp_path)
    proc = zeroimage(
        "build",
        "--from",
        f"oci:{wide_layout}",
        "-o",
        "out.tar",
        str(static_binary),
        env=env,
        check=False,
        measure_rss=True,
    )
    refused(proc, 1, "ZEROIMAGE_DOCUMENTS_LIMIT", str(int(limit or 64 << 20)))
    assert fingerprint(tmp_path) == before
    assert proc.peak_rss_kb is not None and proc.peak_rss_kb < PEAK_RSS_KB, proc.peak_rss_kb


def put_manifest(registry: Registry, repository: str, reference: str, data: bytes) -> None:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        data=data,
        method="PUT",
        headers={"Content-Type": images.OCI_INDEX},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


def test_the_documents_read_from_a_registry_are_bounded_in_total(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    children = [child_index(300_000, n) for n in range(12)]
    for child in children:
        put_manifest(registry, "wide/base", peers.digest_of(child), child)
    put_manifest(registry, "wide/base", "v1", json.dumps(index_of(children)).encode())
    before = fingerprint(tmp_path)
    proc = zeroimage(
        "build",
        "--from",
        f"{registry.host}/wide/base:v1",
        "-o",
        "out.tar",
        str(static_binary),
        env={"ZEROIMAGE_DOCUMENTS_LIMIT": "1000000"},
        check=False,
    )
    refused(proc, 1, "ZEROIMAGE_DOCUMENTS_LIMIT", "1000000")
    assert fingerprint(tmp_path) == before
