"""Nothing local is trusted blindly (issues 12 and 19): a cached layer changed on disk never
reaches an output under its old digest, a cache directory of another user is never used, a new
one is private, and the documents one build reads are bounded in total. The cache is ours alone:
a directory holding other files is refused and left as it was, prune takes only what zeroimage
made, a directory others may write is refused (another user, ``nobody``, attacks one for real),
no symlink inside is followed, and a malformed record is a miss.

Each test asserts the outcome: the bytes an output holds (every blob's sha256 is its name, and
skopeo copies it, verifying as it reads), the cache's files and modes, one clear error line
and its exit code, the peak memory of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Zeroimage
from tests.support import images, peers
from tests.support.attached import put_manifest
from tests.support.fleet import bad_blobs, program_copy, pull, skopeo_copies
from tests.support.host import without_modes_notice
from tests.support.layers import settle
from tests.support.outcomes import fill, fingerprint, refused, with_times
from tests.support.registry import Registry, start_registry
from zeroimage import files

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
    stderr = without_modes_notice(proc.stderr)  # (said on a host without POSIX modes)
    warnings = [line for line in stderr.splitlines() if line.startswith("zeroimage: warning:")]
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


def test_the_documents_read_from_a_registry_are_bounded_in_total(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    children = [child_index(300_000, n) for n in range(12)]
    for child in children:
        put_manifest(registry.url, "wide/base", peers.digest_of(child), child, images.OCI_INDEX)
    put_manifest(registry.url, "wide/base", "v1", json.dumps(index_of(children)).encode(), images.OCI_INDEX)
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


# -- a directory of its own, and only ours touched (issue 19) ---------------------------------------

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"


def test_a_directory_holding_other_programs_files_is_refused_and_keeps_every_one(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    """ZEROIMAGE_CACHE_DIR=~/.cache: before, a build made its directories there and its prune
    took every directory for a kind of record, deleting the oldest files of any holding more
    than 4096."""
    home_cache = tmp_path / "home" / ".cache"
    fill(home_cache / "pip" / "http", 10)
    fill(home_cache / "thumbnails", 4200)
    fill(home_cache / "fontconfig", 3)
    (home_cache / "motd.legal-displayed").write_bytes(b"")
    before = with_times(home_cache)
    proc = zeroimage(
        "build", "-o", "out.tar", str(static_binary), env={"ZEROIMAGE_CACHE_DIR": str(home_cache)}, check=False
    )
    refused(proc, 1, str(home_cache), "not a zeroimage cache", "ZEROIMAGE_CACHE_DIR", "~/.cache/zeroimage")
    assert with_times(home_cache) == before  # every file, byte for byte, and not one directory more
    assert not (tmp_path / "out.tar").exists()


#: What a test keeps in a cache beside zeroimage's files.
THEIRS = ("notes.txt", "blobs/sha256/README", "layers/drafts", "mine")


def test_an_empty_directory_becomes_a_cache_whose_prune_takes_only_its_own(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "mine"
    cache.mkdir(mode=0o700)
    env = {"ZEROIMAGE_CACHE_DIR": str(cache), **EPOCH}
    zeroimage("build", "-o", "first.tar", str(static_binary), env=env)
    assert (cache / "CACHEDIR.TAG").read_text().startswith(SIGNATURE + "\n")
    assert (cache / "zeroimage-layout").read_text() == "1\n"
    # Old blobs of ours, and what someone keeps in the cache that zeroimage did not make there.
    stale = os.urandom(50_000)
    ours = cache / "blobs" / "sha256" / peers.digest_of(stale).split(":")[1]
    ours.write_bytes(stale)
    os.utime(ours, (1_000_000, 1_000_000))
    (cache / "notes.txt").write_text("my notes")
    (cache / "blobs" / "sha256" / "README").write_bytes(os.urandom(50_000))
    fill(cache / "layers" / "drafts", 3)
    fill(cache / "mine", 5000)
    for path in (cache / "notes.txt", cache / "blobs" / "sha256" / "README"):
        os.utime(path, (1_000_000, 1_000_000))
    theirs = {name: what for name, what in with_times(cache).items() if name.startswith(THEIRS)}

    program = settle(program_copy(static_binary, tmp_path / "v2" / "hello", b"v2"))  # a layer to make: prune runs
    zeroimage("build", "-o", "second.tar", str(program), env={**env, "ZEROIMAGE_CACHE_SIZE": "1"})
    assert not ours.exists()  # ours, old and beyond the bound: pruned
    after = with_times(cache)
    assert {name: after.get(name) for name in theirs} == theirs


# -- another local user ------------------------------------------------------------------------------

NOBODY = 65534
needs_modes = pytest.mark.skipif(
    not files.POSIX_MODES, reason="a host without POSIX modes (the foreign-host run) has no bits to check"
)
#: What another user runs, as ``nobody``, against a cache they can reach: their own layer, put in
#: the store and named by every layer record they can replace. The Debian interpreter, which any
#: user may run (the test's own lives under /root).
ATTACK = r"""
import gzip, hashlib, io, json, os, sys, tarfile

cache = sys.argv[1]
program = b"#!/bin/sh\necho someone else's program\n"
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as archive:
    info = tarfile.TarInfo("hello")
    info.size, info.mode = len(program), 0o755
    archive.addfile(info, io.BytesIO(program))
layer = gzip.compress(tar.getvalue(), mtime=0)
digest = "sha256:" + hashlib.sha256(layer).hexdigest()
diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
media_type = "application/vnd.oci.image.layer.v1.tar+gzip"
record = {"descriptor": {"mediaType": media_type, "digest": digest, "size": len(layer)}, "diff_id": diff_id}
planted = []
try:
    with open(os.path.join(cache, "blobs", "sha256", digest[7:]), "wb") as out:
        out.write(layer)
    planted.append("blob")
except OSError:
    pass
for kind in ("layers", "shapes", "contents"):
    try:
        names = os.listdir(os.path.join(cache, kind))
    except OSError:
        continue
    for name in names:
        path = os.path.join(cache, kind, name)
        try:
            os.unlink(path)  # theirs to remove: the directory is writable by all, and not sticky
            with open(path, "w") as out:
                json.dump(record, out)
            planted.append(kind)
        except OSError:
            pass
print(json.dumps({"digest": digest, "planted": planted}))
"""


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """``args`` run as another local user, ``nobody`` (setpriv, as root; skip elsewhere)."""
    if getattr(os, "geteuid", lambda: -1)() != 0 or shutil.which("setpriv") is None:
        pytest.skip("acting as another user needs root and setpriv")
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True, cwd="/")


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory other users may enter (pytest's own are closed to them), removed after."""
    path = Path(tempfile.mkdtemp(prefix="zeroimage-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def attack(cache: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(as_nobody("/usr/bin/python3", "-c", ATTACK, str(cache)).stdout)
    return result


def test_a_cache_made_under_a_permissive_umask_is_closed_to_other_users(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, shared: Path
) -> None:
    """A cache directory others may enter (made 0755, as an administrator would), and a build
    under ``umask 000``: before, its directories were made writable by all, and another user
    replaced the layer records with their own layer, which the next build put in the image."""
    cache = shared / "cache"
    cache.mkdir(mode=0o755)
    env = {"ZEROIMAGE_CACHE_DIR": str(cache), **EPOCH}
    previous = os.umask(0)
    try:
        zeroimage("build", "-o", "first.tar", str(static_binary), env=env)
    finally:
        os.umask(previous)
    mine = layer_digest(tmp_path / "first.tar", tmp_path)
    theirs = attack(cache)
    zeroimage("build", "-o", "second.tar", str(static_binary), env=env)
    assert layer_digest(tmp_path / "second.tar", tmp_path) == mine != theirs["digest"]
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert theirs["planted"] == []  # nothing of ours was theirs to write


@needs_modes
def test_a_cache_other_users_could_write_into_is_refused(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, shared: Path
) -> None:
    """A cache whose directories others may write (as an earlier zeroimage made them under
    ``umask 000``): another user plants their layer; the next build refuses the cache rather
    than put that layer in the image."""
    cache = shared / "cache"
    cache.mkdir(mode=0o755)
    env = {"ZEROIMAGE_CACHE_DIR": str(cache), **EPOCH}
    zeroimage("build", "-o", "first.tar", str(static_binary), env=env)
    for directory in ("blobs/sha256", "layers", "shapes", "contents"):
        (cache / directory).chmod(0o777)
    theirs = attack(cache)
    assert "layers" in theirs["planted"]  # the attack is real: records replaced, their blob in place
    proc = zeroimage("build", "-o", "second.tar", str(static_binary), env=env, check=False)
    refused(proc, 1, "writable by other users", "chmod go-w")
    assert not (tmp_path / "second.tar").exists()


@pytest.mark.parametrize(
    ("where", "how"),
    [
        (".", "group-writable"),
        ("blobs/sha256", "writable-by-all"),
        ("layers", "group-writable"),
        ("listings", "writable-by-all"),
        ("blobs", "owned-by-nobody"),
        ("tags", "owned-by-nobody"),
    ],
)
def test_a_cache_directory_others_may_write_or_own_is_refused(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, where: str, how: str
) -> None:
    cache = tmp_path / ".cache"
    zeroimage("build", "-o", "first.tar", str(static_binary))
    directory = cache / where
    directory.mkdir(exist_ok=True)  # (before, some were made only on first use)
    if how == "owned-by-nobody":
        if getattr(os, "geteuid", lambda: -1)() != 0:
            pytest.skip("giving a directory away needs root")
        os.chown(directory, NOBODY, NOBODY)
        words = [str(directory).removesuffix("/."), f"belongs to user {NOBODY}", "ZEROIMAGE_CACHE_DIR"]
    else:
        if not files.POSIX_MODES:
            pytest.skip("a host without POSIX modes (the foreign-host run) has no bits to check")
        directory.chmod(0o770 if how == "group-writable" else 0o777)
        words = ["writable by other users", f"chmod go-w {os.path.normpath(directory)}"]
    before = with_times(cache)
    proc = zeroimage("build", "-o", "second.tar", str(static_binary), check=False)
    refused(proc, 1, *words)
    assert with_times(cache) == before
    assert not (tmp_path / "second.tar").exists()


# -- no symlink followed inside the cache -----------------------------------------------------------


def test_a_symlink_at_a_cached_blob_is_never_followed(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    zeroimage("build", "-o", "first.tar", str(static_binary), env=EPOCH)
    blob = tmp_path / ".cache" / "blobs" / "sha256" / layer_digest(tmp_path / "first.tar", tmp_path).split(":")[1]
    precious = tmp_path / "precious"
    precious.write_bytes(os.urandom(blob.stat().st_size))  # of the blob's size: only its bytes differ
    os.utime(precious, (1_000_000, 1_000_000))
    blob.unlink()
    blob.symlink_to(precious)
    before = with_times(precious)
    zeroimage("build", "-o", "second.tar", str(static_binary), env=EPOCH)
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert with_times(precious) == before  # not read as the layer, not touched, not written
    assert blob.is_file() and not blob.is_symlink() and bad_blobs(tmp_path / ".cache") == []


def test_a_symlink_at_a_layer_record_is_never_followed(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    """A record linked to one naming another program's layer (cached too): before, the build
    read the link and put that program in the image."""
    other = settle(program_copy(static_binary, tmp_path / "other" / "hello", b"another program"))
    zeroimage("build", "-o", "other.tar", str(other), env=EPOCH)
    layers = tmp_path / ".cache" / "layers"
    (theirs,) = layers.iterdir()
    elsewhere = tmp_path / "their-record"
    elsewhere.write_bytes(theirs.read_bytes())
    os.utime(elsewhere, (1_000_000, 1_000_000))
    zeroimage("build", "-o", "first.tar", str(static_binary), env=EPOCH)
    (mine,) = set(layers.iterdir()) - {theirs}
    mine.unlink()
    mine.symlink_to(elsewhere)
    before = with_times(elsewhere)
    zeroimage("build", "-o", "second.tar", str(static_binary), env=EPOCH)
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert with_times(elsewhere) == before
    assert mine.is_file() and not mine.is_symlink()  # the record is ours again, the link gone


def test_a_symlinked_directory_in_the_cache_is_refused(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    zeroimage("build", "-o", "first.tar", str(static_binary))
    layers = tmp_path / ".cache" / "layers"
    elsewhere = tmp_path / "elsewhere"
    layers.rename(elsewhere)
    layers.symlink_to(elsewhere, target_is_directory=True)
    before = with_times(elsewhere)
    program = settle(program_copy(static_binary, tmp_path / "v2" / "hello", b"v2"))  # records to write
    proc = zeroimage("build", "-o", "second.tar", str(program), check=False)
    refused(proc, 1, f"{layers} is a symlink", "never follows")
    assert with_times(elsewhere) == before
    assert not (tmp_path / "second.tar").exists()


# -- records are untrusted input ---------------------------------------------------------------------

SPOILED = {
    "absurd-size": lambda record: {**record, "descriptor": {**record["descriptor"], "size": 1 << 62}},
    "diff-id-not-a-digest": lambda record: {**record, "diff_id": "sha256:not-hex"},
    "a-manifest-not-a-layer": lambda record: {
        **record,
        "descriptor": {**record["descriptor"], "mediaType": images.OCI_MANIFEST},
    },
    "foreign-urls": lambda record: {
        **record,
        "descriptor": {**record["descriptor"], "urls": ["http://127.0.0.1:9/layer"]},
    },
}


@pytest.mark.parametrize("spoil", SPOILED.values(), ids=SPOILED.keys())
def test_a_malformed_record_is_a_miss_for_a_build_that_only_pushes(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path, spoil: Any
) -> None:
    """A push keeps only the layer's record, not its bytes: what the record says goes into the
    image as it is, unless it is not exactly a record the store writes."""
    repo = f"records/{len(list(tmp_path.parent.iterdir()))}"
    zeroimage("build", "--push", f"{registry.host}/{repo}:v1", str(static_binary), env=EPOCH)
    spoiled = 0
    for kind in ("layers", "shapes", "contents"):
        for path in (tmp_path / ".cache" / kind).iterdir():
            path.write_text(json.dumps(spoil(json.loads(path.read_bytes()))))
            spoiled += 1
    assert spoiled == 3
    proc = zeroimage("build", "--push", f"{registry.host}/{repo}:v2", str(static_binary), env=EPOCH, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.describe()
    first = pull(registry, f"{repo}:v1", tmp_path / "v1.tar")
    second = pull(registry, f"{repo}:v2", tmp_path / "v2.tar")  # skopeo verifies every blob
    one, two = images.read_image(first, tmp_path), images.read_image(second, tmp_path)
    assert (two.manifest, two.config) == (one.manifest, one.config)
    assert HELLO in peers.run_image(second).stdout
