"""The cache is ours alone, and only ours is touched (issue 19).

A directory is used as a cache only when it is marked as one (CACHEDIR.TAG and the layout
version), empty, or holds nothing but an earlier zeroimage's structure; the store then touches
only its own directories and the names it gives files there. Every directory it uses must be
the user's and closed to other users' writes; no symlink inside is followed; a record is
untrusted input. Each test asserts what is left on disk (every file, byte for byte, and its
time) or the one line a refusal gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.layers import make_layer, settle
from tests.support.outcomes import fill, fingerprint, with_times
from tests.support.peers import digest_of
from zeroimage import files
from zeroimage import store as store_module
from zeroimage.errors import InputError, OutputError
from zeroimage.image import BuiltLayer
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import file_entry
from zeroimage.layers.producer import LayerProducer, layer_key
from zeroimage.oci import Descriptor
from zeroimage.oci.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST
from zeroimage.progress import NullReporter
from zeroimage.store import MAX_RECORD_SIZE, BlobStore, CorruptBlob

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
#: Every directory of a cache (what the store declares, spelled out here independently).
OUR_DIRECTORIES = ["blobs", "blobs/sha256", "layers", "shapes", "contents", "tags", "listings"]
needs_modes = pytest.mark.skipif(
    not files.POSIX_MODES, reason="a host without POSIX modes (the foreign-host run) has no bits to check"
)
needs_root = pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() != 0, reason="giving a file away needs root")


def hex_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ours(root: Path, where: str) -> Path:
    """The cache's directory ``where`` (made, should the store make it only on first use)."""
    path = root / where
    path.mkdir(parents=True, exist_ok=True)
    return path


def home_cache(root: Path) -> None:
    """What ``~/.cache`` holds: other programs' caches, one with more files than the store keeps
    records of a kind (4096), a tag of another tool's, a loose file."""
    fill(root / "pip", 4200)
    fill(root / "fontconfig", 3)
    (root / "CACHEDIR.TAG").write_text(SIGNATURE + "\n# another tool's tag\n")
    (root / "motd.legal-displayed").write_bytes(b"")


def project(root: Path) -> None:
    fill(root / "src", 5)
    (root / "README.md").write_text("# my project\n")


def containerd_store(root: Path) -> None:
    """containerd's content store: blobs/sha256/<hex> (as ours) and ingest/."""
    data = b"someone's layer"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / hex_of(data)).write_bytes(data)
    (root / "ingest").mkdir()


def oci_layout(root: Path) -> None:
    data = b"{}"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / hex_of(data)).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')


def sha512_blobs(root: Path) -> None:
    data = b"x"
    (root / "blobs" / "sha512").mkdir(parents=True)
    (root / "blobs" / "sha512" / hashlib.sha512(data).hexdigest()).write_bytes(data)


OTHER_DIRECTORIES = {
    "home-cache": home_cache,
    "project": project,
    "containerd-content-store": containerd_store,
    "oci-layout": oci_layout,
    "blobs-of-sha512": sha512_blobs,
}


# -- whose directory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", OTHER_DIRECTORIES.values(), ids=OTHER_DIRECTORIES.keys())
def test_a_directory_of_other_files_is_refused_and_nothing_in_it_changes(
    make: Callable[[Path], None], tmp_path: Path
) -> None:
    root = tmp_path / "dir"
    root.mkdir(mode=0o700)
    make(root)
    before = with_times(root)
    with pytest.raises(OutputError) as refused:
        BlobStore(root)
    message = str(refused.value)
    assert str(root) in message and "ZEROIMAGE_CACHE_DIR" in message and "~/.cache/zeroimage" in message
    assert "\n" not in message
    assert with_times(root) == before  # nothing added, removed, rewritten or touched


def test_an_empty_directory_is_made_a_cache(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir(mode=0o700)
    BlobStore(root)
    tag = (root / "CACHEDIR.TAG").read_text()
    assert tag.startswith(SIGNATURE + "\n") and "zeroimage" in tag
    assert (root / "zeroimage-layout").read_bytes() == b"1\n"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == sorted(
        ["CACHEDIR.TAG", "zeroimage-layout", *OUR_DIRECTORIES]
    )
    if files.POSIX_MODES:
        assert {d: oct((root / d).stat().st_mode & 0o777) for d in OUR_DIRECTORIES} == dict.fromkeys(
            OUR_DIRECTORIES, "0o700"
        )


def test_a_directory_made_a_cache_by_many_at_once_is_one_cache(tmp_path: Path) -> None:
    """Concurrent first runs on one empty directory: each sees only the others' structure, or
    their mark (a race that a few dozen rounds find)."""
    for round_ in range(40):
        root = tmp_path / f"shared-{round_}"
        root.mkdir(mode=0o700)
        failures: list[BaseException] = []

        def open_store(root: Path = root, failures: list[BaseException] = failures) -> None:
            try:
                BlobStore(root).put_record("tags", "a" * 64, {"digest": "sha256:" + "b" * 64})
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        workers = [threading.Thread(target=open_store) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert failures == []
        assert (root / "zeroimage-layout").read_bytes() == b"1\n"
        assert not [p for p in root.rglob("*.tmp")]


def legacy_cache(root: Path, mode: int) -> tuple[Descriptor, BuiltLayer]:
    """A cache as zeroimage wrote it before the mark: no CACHEDIR.TAG, no layout file, and
    directories made with the umask's mode (0775 under a umask of 002), the root 0700."""
    data = b"a layer"
    desc = Descriptor(OCI_LAYER_GZIP, digest_of(data), len(data))
    layer = BuiltLayer(desc, digest_of(b"its tar"))
    root.mkdir(mode=0o700)
    for name in OUR_DIRECTORIES:
        (root / name).mkdir()
        (root / name).chmod(mode)
    (root / "blobs" / "sha256" / hex_of(data)).write_bytes(data)
    record = {"descriptor": desc.to_dict(), "diff_id": layer.diff_id}
    (root / "layers" / ("c" * 64)).write_text(json.dumps(record))
    return desc, layer


def test_a_cache_an_earlier_zeroimage_made_is_kept_and_marked(tmp_path: Path) -> None:
    root = tmp_path / "old"
    desc, layer = legacy_cache(root, 0o775)
    store = BlobStore(root)
    assert store.has(desc) and store.layer_record("c" * 64) == layer  # what it held is still used
    assert (root / "zeroimage-layout").read_bytes() == b"1\n"
    assert (root / "CACHEDIR.TAG").read_text().startswith(SIGNATURE)
    if files.POSIX_MODES:  # nobody else could enter the 0700 root: its directories are made private
        assert {oct((root / d).stat().st_mode & 0o777) for d in OUR_DIRECTORIES} == {"0o700"}


@needs_modes
def test_an_earlier_cache_others_could_enter_is_refused_not_made_private(tmp_path: Path) -> None:
    root = tmp_path / "old"
    legacy_cache(root, 0o777)
    root.chmod(0o755)
    before = with_times(root)
    with pytest.raises(OutputError, match="writable by other users.*chmod go-w"):
        BlobStore(root)
    assert with_times(root) == before


@pytest.mark.parametrize("content", [b"2\n", b"17"])
def test_a_cache_of_a_newer_layout_is_refused(tmp_path: Path, content: bytes) -> None:
    root = tmp_path / "newer"
    BlobStore(root)
    (root / "zeroimage-layout").write_bytes(content)
    before = with_times(root)
    with pytest.raises(OutputError, match=r"newer zeroimage \(layout \d+; this one knows 1\).*ZEROIMAGE_CACHE_DIR"):
        BlobStore(root)
    assert with_times(root) == before


@pytest.mark.parametrize("plant", ["garbage", "symlink", "directory", "huge"])
def test_a_layout_file_zeroimage_did_not_write_is_refused(tmp_path: Path, plant: str) -> None:
    root = tmp_path / "cache"
    BlobStore(root)
    marker = root / "zeroimage-layout"
    marker.unlink()
    outside = tmp_path / "outside"
    outside.write_bytes(b"1\n")
    if plant == "garbage":
        marker.write_bytes(b"layout one\n")
    elif plant == "symlink":
        marker.symlink_to(outside)
    elif plant == "directory":
        marker.mkdir()
    else:
        marker.write_bytes(b"1" * 100_000)
    before = with_times(tmp_path)
    with pytest.raises(OutputError, match="ZEROIMAGE_CACHE_DIR"):
        BlobStore(root)
    assert with_times(tmp_path) == before


def test_a_cache_of_an_older_layout_loses_its_own_files_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    store = BlobStore(root)
    data = b"a layer"
    store.put_document(Descriptor(OCI_LAYER_GZIP, digest_of(data), len(data)), data)
    store.put_record("tags", "a" * 64, {"digest": digest_of(data)})
    (root / "notes.txt").write_text("mine")
    (root / "layers" / "README").write_text("mine too")
    monkeypatch.setattr(store_module, "LAYOUT_VERSION", 2)
    BlobStore(root)
    assert (root / "zeroimage-layout").read_bytes() == b"2\n"
    kept = {name for name, what in fingerprint(root, skip=()).items() if what != "dir"}
    assert kept == {"CACHEDIR.TAG", "zeroimage-layout", "notes.txt", "layers/README"}


def test_no_cache_uses_a_private_store_of_its_own_and_removes_it(tmp_path: Path) -> None:
    with BlobStore.temporary() as store:
        root = store.root
        assert (root / "zeroimage-layout").read_bytes() == b"1\n"
    assert not root.exists()


# -- only ours is touched --------------------------------------------------------------------------


def test_prune_looks_only_at_the_names_the_store_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_RECORDS", 8)
    root = tmp_path / "cache"
    store = BlobStore(root, max_bytes=10)
    ours = b"x" * 1000
    store.put_document(Descriptor(OCI_LAYER_GZIP, digest_of(ours), len(ours)), ours)
    os.utime(store.path(digest_of(ours)), (1, 1))
    for i in range(12):
        store.put_record("tags", f"{i:064x}", {"digest": digest_of(ours)})
        os.utime(root / "tags" / f"{i:064x}", (2 + i, 2 + i))
    # What someone else put in the cache: older and larger than anything of ours.
    fill(root / "mine", 20)  # a directory of their own, beside ours
    fill(root / "layers", 20, prefix="notes-")  # files in ours, named as the store never names them
    (root / "blobs" / "sha256" / "README").write_bytes(b"y" * 100_000)
    os.utime(root / "blobs" / "sha256" / "README", (1, 1))
    outside = tmp_path / "outside"
    outside.write_bytes(b"z" * 100_000)
    os.utime(outside, (1, 1))
    (root / "blobs" / "sha256" / hex_of(b"linked")).symlink_to(outside)
    theirs = {
        name: what
        for name, what in with_times(tmp_path).items()
        if what[0] != "dir" and "/tags/" not in name and hex_of(ours) not in name
    }
    store.prune()
    assert not store.path(digest_of(ours)).exists()  # ours, old and over the bound: gone
    assert len(list((root / "tags").iterdir())) == 6  # ours beyond the bound: the oldest gone
    after = with_times(tmp_path)
    assert {name: after.get(name) for name in theirs} == theirs  # theirs: every one, as it was


def test_a_stale_temporary_of_ours_is_removed_and_one_of_theirs_is_not(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = BlobStore(root)
    ours = root / "blobs" / "sha256" / ".new-0123456789abcdef.tmp"
    theirs = root / "blobs" / "sha256" / ".new-draft.tmp"
    for path in (ours, theirs):
        path.write_bytes(b"half")
        os.utime(path, (1, 1))
    store.prune()
    assert not ours.exists() and theirs.read_bytes() == b"half"


# -- other users -----------------------------------------------------------------------------------


@needs_modes
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
@pytest.mark.parametrize("where", [".", *OUR_DIRECTORIES])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, where: str, mode: int) -> None:
    root = tmp_path / "cache"
    BlobStore(root)
    ours(root, where).chmod(mode)
    before = with_times(tmp_path)
    with pytest.raises(OutputError) as refused:
        BlobStore(root)
    message = str(refused.value)
    assert "writable by other users" in message and f"chmod go-w {root / where}" in message
    assert with_times(tmp_path) == before


@needs_root
@pytest.mark.parametrize("where", OUR_DIRECTORIES)
def test_a_directory_of_another_user_is_refused(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    BlobStore(root)
    os.chown(ours(root, where), 65534, 65534)
    before = with_times(tmp_path)
    with pytest.raises(OutputError, match=f"{root / where} belongs to user 65534, not to you"):
        BlobStore(root)
    assert with_times(tmp_path) == before


def test_a_cache_reached_through_a_symlink_is_used_where_it_points(tmp_path: Path) -> None:
    """A cache kept on another disk: the root may be a symlink, to a directory that passes the
    same checks."""
    real = tmp_path / "disk" / "zeroimage"
    real.mkdir(parents=True, mode=0o700)
    link = tmp_path / "cache"
    link.symlink_to(real, target_is_directory=True)
    store = BlobStore(link)
    store.put_record("tags", "a" * 64, {"digest": "sha256:" + "b" * 64})
    assert (real / "tags" / ("a" * 64)).is_file() and (real / "zeroimage-layout").is_file()


# -- no symlink followed inside --------------------------------------------------------------------


@pytest.mark.parametrize("where", OUR_DIRECTORIES)
def test_a_symlinked_directory_in_the_cache_is_refused(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    BlobStore(root)
    outside = tmp_path / "outside"
    ours(root, where).rename(outside)
    (root / where).symlink_to(outside, target_is_directory=True)
    before = with_times(tmp_path)
    with pytest.raises(OutputError, match=f"{root / where} is a symlink, which zeroimage never follows"):
        BlobStore(root)
    assert with_times(tmp_path) == before


def test_a_symlink_at_a_blob_is_a_missing_blob_and_never_followed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    data = b"a layer"
    desc = Descriptor(OCI_LAYER_GZIP, digest_of(data), len(data))
    outside = tmp_path / "outside"
    outside.write_bytes(data)  # the very bytes: reading through the link would even "verify"
    os.utime(outside, (1_000_000, 1_000_000))
    store.path(desc.digest).symlink_to(outside)
    before = with_times(tmp_path / "outside")
    assert not store.has(desc)
    assert store.document(desc.digest, 1 << 20) is None
    with pytest.raises(CorruptBlob):
        store.open(desc).read()
    store.touch(desc.digest)
    store.put_document(desc, data)  # replaces the link; never writes through it
    assert store.path(desc.digest).is_file() and not store.path(desc.digest).is_symlink()
    assert store.has(desc) and store.document(desc.digest, 1 << 20) == data
    assert with_times(tmp_path / "outside") == before


def test_a_symlink_at_a_record_is_a_miss_and_never_followed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    layer = BuiltLayer(Descriptor(OCI_LAYER_GZIP, digest_of(b"theirs"), 6), digest_of(b"their tar"))
    outside = tmp_path / "outside"
    outside.write_text(json.dumps({"descriptor": layer.descriptor.to_dict(), "diff_id": layer.diff_id}))
    os.utime(outside, (1_000_000, 1_000_000))
    key = "d" * 64
    (ours(tmp_path / "cache", "layers") / key).symlink_to(outside)
    before = with_times(outside)
    assert store.layer_record(key, need_blob=False) is None
    assert store.record("layers", key) is None
    mine = BuiltLayer(Descriptor(OCI_LAYER_GZIP, digest_of(b"mine"), 4), digest_of(b"my tar"))
    store.put_layer_record(key, mine)
    assert store.layer_record(key, need_blob=False) == mine
    assert with_times(outside) == before


def test_a_symlink_at_a_temporary_name_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporaries are made with O_EXCL: a symlink planted at the next one's name (here made
    predictable) fails the write — a miss, for a record — and its target is left alone."""
    store = BlobStore(tmp_path / "cache")
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    os.utime(outside, (1_000_000, 1_000_000))
    monkeypatch.setattr(os, "urandom", lambda n: b"\x01" * n)
    for directory in ("blobs/sha256", "layers", "listings"):
        (ours(tmp_path / "cache", directory) / f".new-{'01' * 8}.tmp").symlink_to(outside)
    before = with_times(outside)
    store.put_layer_record("e" * 64, BuiltLayer(Descriptor(OCI_LAYER_GZIP, digest_of(b"l"), 1), digest_of(b"t")))
    store.put_document(Descriptor(OCI_MANIFEST, digest_of(b"{}"), 2), b"{}")
    with pytest.raises(OutputError):
        store.create(store.new_file())
    with pytest.raises(OutputError), store.writing("listings", "f" * 64) as out:
        out.write(b"listing")
    assert with_times(outside) == before
    assert store.record("layers", "e" * 64) is None and store.document(digest_of(b"{}"), 100) is None


# -- records are untrusted input --------------------------------------------------------------------


#: What a test does to a layer record: a new one, or the bytes to write instead.
Spoil = Callable[[dict[str, object]], object]


def with_descriptor(**changes: object) -> Spoil:
    def change(record: dict[str, object]) -> dict[str, object]:
        descriptor = dict(record["descriptor"])  # type: ignore[call-overload]
        descriptor.update(changes)
        return {**record, "descriptor": descriptor}

    return change


def raw(data: bytes) -> Spoil:
    return lambda record: data


#: Records that parse, and were believed before: a layer named so would go into an image.
BELIEVED_BEFORE = {
    "diff-id-not-a-digest": lambda record: {**record, "diff_id": "x"},
    "diff-id-sha512": lambda record: {**record, "diff_id": "sha512:" + "a" * 128},
    "extra-field": lambda record: {**record, "origin": "elsewhere"},
    "size-zero": with_descriptor(size=0),
    "size-absurd": with_descriptor(size=1 << 62),
    "media-type-a-manifest": with_descriptor(mediaType=OCI_MANIFEST),
    "media-type-other-compression": with_descriptor(mediaType=OCI_LAYER_ZSTD),
    "urls": with_descriptor(urls=["https://example.com/layer"]),
    "annotations": with_descriptor(annotations={"a": "b"}),
}
#: Records that were misses already; kept so (none may become an internal error).
MISSES_ALREADY = {
    "not-json": raw(b"{not json"),
    "not-utf8": raw(b'{"diff_id": "\xff"}'),
    "a-list": raw(b"[]"),
    "nested-without-end": raw(b"[" * 50_000 + b"]" * 50_000),
    "larger-than-any-record": raw(b" " * (MAX_RECORD_SIZE + 1) + b"{}"),
    "descriptor-a-list": lambda record: {**record, "descriptor": []},
    "no-diff-id": lambda record: {"descriptor": record["descriptor"]},
    "diff-id-a-number": lambda record: {**record, "diff_id": 5},
    "size-a-string": with_descriptor(size="3"),
    "size-true": with_descriptor(size=True),
    "size-a-float": with_descriptor(size=3.0),
    "size-negative": with_descriptor(size=-1),
    "digest-invalid": with_descriptor(digest="sha256:../../etc/passwd"),
    "digest-upper-case": with_descriptor(digest="sha256:" + "A" * 64),
    "digest-a-list": with_descriptor(digest=["sha256:" + "a" * 64]),
    "media-type-a-list": with_descriptor(mediaType=[OCI_LAYER_GZIP]),
}


@pytest.mark.parametrize("spoil", BELIEVED_BEFORE.values(), ids=BELIEVED_BEFORE.keys())
def test_a_layer_record_that_is_not_what_the_store_writes_is_a_miss(spoil: Spoil, tmp_path: Path) -> None:
    """Planted under the very keys a build looks up (identity, shape, content), a record that is
    not exactly what the store writes is a miss: the layer is made again, as it would be from
    scratch — with the blob kept or not (a build that only pushes)."""
    made_again_despite(spoil, tmp_path)


@pytest.mark.parametrize("spoil", MISSES_ALREADY.values(), ids=MISSES_ALREADY.keys())
def test_an_unreadable_layer_record_is_a_miss_never_an_error(spoil: Spoil, tmp_path: Path) -> None:
    made_again_despite(spoil, tmp_path)


def made_again_despite(spoil: Spoil, tmp_path: Path) -> None:
    program = tmp_path / "app"
    program.write_bytes(os.urandom(100_000))
    settle(program)
    entries = [file_entry(program, "/app")]
    fresh, _ = make_layer(BlobStore(tmp_path / "fresh"), entries)
    for keep in (True, False):
        cache = tmp_path / f"cache-{keep}"
        store = BlobStore(cache)
        make_layer(store, entries, keep=keep)
        for kind in ("layers", "shapes", "contents"):
            for path in (cache / kind).iterdir():
                spoiled = spoil(json.loads(path.read_bytes()))
                path.write_bytes(spoiled if isinstance(spoiled, bytes) else json.dumps(spoiled).encode())
        again, cached = make_layer(store, entries, keep=keep)
        assert (again, cached) == (fresh, False)


def test_a_recorded_layer_that_cannot_be_made_again_is_forgotten(tmp_path: Path) -> None:
    """A build that only pushes keeps a layer's record, not its bytes. When the bytes are needed
    after all and come out otherwise than recorded (a new compressor; a wrong record), the build
    fails once, and the record goes: the next build makes the layer instead of failing again."""
    program = tmp_path / "app"
    program.write_bytes(os.urandom(100_000))
    settle(program)
    entries = [file_entry(program, "/app")]
    store = BlobStore(tmp_path / "cache")
    producer = LayerProducer(store, LayerOptions(), NullReporter(), list, keep=False)
    real = producer.make(entries, "app").built
    wrong = BuiltLayer(Descriptor(OCI_LAYER_GZIP, digest_of(b"other bytes"), real.descriptor.size), real.diff_id)
    store.put_layer_record(layer_key(entries, LayerOptions()), wrong)
    hit = producer.make(entries, "app")
    assert hit.origin == "cache" and hit.built == wrong
    with pytest.raises(InputError, match="changed during the build; try again"):
        producer.blob(hit).open()
    again = producer.make(entries, "app")
    assert again.origin == "made" and again.built == real


def test_a_record_key_the_store_does_not_give_is_a_bug(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    for key in ("../../x", "A" * 64, "a" * 63, ""):
        with pytest.raises(ValueError, match="not a record of the store"):
            store.put_record("tags", key, {})
    assert not list((tmp_path / "cache" / "tags").iterdir())
