"""Layers: deterministic tar streams, one-pass hashing, and the cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.host import needs_posix_modes
from tests.support.layers import make_layer, settle
from zeroimage import store as store_module
from zeroimage.errors import InputError, UsageError
from zeroimage.files import Readable
from zeroimage.image import BuiltLayer
from zeroimage.layers import producer
from zeroimage.layers.compress import LayerOptions, stream_layer
from zeroimage.layers.entries import Entry, clean_image_path, file_entry
from zeroimage.layers.producer import layer_identity, layer_key
from zeroimage.layers.tar import write_tar
from zeroimage.oci import Descriptor
from zeroimage.oci.mediatypes import OCI_LAYER_GZIP
from zeroimage.store import BlobStore


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.write_bytes(os.urandom(3000) + b"x" * 3_000_000)
    path.chmod(0o750)
    return path


@needs_posix_modes
def test_tar_entry_is_deterministic_and_keeps_mode(program: Path) -> None:
    buf = io.BytesIO()
    write_tar([file_entry(program, "/app")], buf, mtime=1234)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        (member,) = tar.getmembers()
        assert member.name == "app"
        assert (member.mode, member.uid, member.gid, member.uname, member.gname) == (0o750, 0, 0, "", "")
        assert member.mtime == 1234
        assert tar.extractfile(member).read() == program.read_bytes()  # type: ignore[union-attr]


def test_entries_are_sorted_parents_first() -> None:
    entries = [
        Entry("/b/c", "file", 0o644, data=b"1", size=1),
        Entry("/a", "dir", 0o755),
        Entry("/b", "dir", 0o755),
        Entry("/a/z", "symlink", 0o777, target="/b/c"),
    ]
    buf = io.BytesIO()
    write_tar(entries, buf, mtime=0)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert tar.getnames() == ["a", "a/z", "b", "b/c"]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_stream_layer_digests_match_content(program: Path, compression: str) -> None:
    out = io.BytesIO()
    built = stream_layer([file_entry(program, "/app")], out, LayerOptions(compression=compression))
    blob = out.getvalue()
    assert built.descriptor.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert built.descriptor.size == len(blob)
    if compression == "gzip":
        tar_bytes = gzip.decompress(blob)
        assert blob[4:8] == b"\0\0\0\0"  # no mtime in the gzip header
    elif compression == "zstd":
        import zstandard

        tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    else:
        tar_bytes = blob
    assert built.diff_id == "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def test_layer_bytes_do_not_depend_on_thread_count(program: Path) -> None:
    digests = set()
    for threads in (1, 2, 4):
        out = io.BytesIO()
        digests.add(stream_layer([file_entry(program, "/app")], out, LayerOptions(threads=threads)).descriptor.digest)
    assert len(digests) == 1


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        file_entry(tmp_path, "/x")
    with pytest.raises(InputError, match="no such file"):
        file_entry(tmp_path / "missing", "/x")
    with pytest.raises(UsageError):
        clean_image_path("relative")
    with pytest.raises(UsageError):
        clean_image_path("/a/../../b")
    with pytest.raises(UsageError):
        LayerOptions(compression="lz4")
    with pytest.raises(UsageError):
        LayerOptions(compression="gzip", level=9)


def test_cache_hits_on_unchanged_input_and_misses_on_change(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    options = LayerOptions()
    settle(program)
    first, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert not cached and store.path(first.descriptor.digest).stat().st_size == first.descriptor.size
    assert store.layer_record(layer_key([file_entry(program, "/app")], options)) == first  # by identity
    again, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert cached and again == first
    stat = program.stat()
    with open(program, "r+b") as handle:  # same size, same mtime: only ctime tells
        handle.write(b"Y")
    os.utime(program, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert not cached and changed.descriptor.digest != first.descriptor.digest
    assert layer_key([file_entry(program, "/app")], options) != layer_key([file_entry(program, "/bin/app")], options)


def test_a_program_changed_again_within_its_last_tick_is_not_taken_from_the_cache(
    tmp_path: Path, program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written again within one tick of the file system's clock, a file keeps its ctime: the
    # identity of a program just written must not be recorded, or that write goes unseen.
    store = BlobStore(tmp_path / "cache")
    options = LayerOptions()
    monkeypatch.setattr(producer, "SETTLE_NS", 60 * 10**9)  # "just written", however slow this test
    first, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert not cached and store.layer_record(layer_key([file_entry(program, "/app")], options)) is None
    again, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert cached and again == first  # found by content instead
    stat = program.stat()
    with open(program, "r+b") as handle:
        handle.write(b"Y")
    os.utime(program, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed, cached = make_layer(store, [file_entry(program, "/app")], options)
    assert not cached and changed.descriptor.digest != first.descriptor.digest
    monkeypatch.undo()
    assert layer_identity([file_entry(settle(program), "/app")], options)[1]  # settled, later


def test_cache_prunes_least_recently_used(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache", max_bytes=10)
    old = store.path("sha256:" + "1" * 64)
    old.write_bytes(b"x" * 100)
    os.utime(old, (1, 1))
    store.prune()
    assert not old.exists()


def test_cache_prunes_least_recently_used_layer_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_RECORDS", 8)
    store = BlobStore(tmp_path / "cache")
    layer = BuiltLayer(Descriptor(OCI_LAYER_GZIP, "sha256:" + "a" * 64, 1), "sha256:" + "b" * 64)
    keys = [str(i) * 64 for i in range(9)]  # record keys are hex, as the store names them
    for i, key in enumerate(keys):
        store.put_layer_record(key, layer)
        os.utime(tmp_path / "cache" / "layers" / key, (1000 + i, 1000 + i))
    assert store.layer_record(keys[0], need_blob=False) == layer  # used now: the most recent of all
    store.prune()
    kept = sorted(p.name for p in (tmp_path / "cache" / "layers").iterdir())
    assert kept == [keys[i] for i in (0, 4, 5, 6, 7, 8)]


def test_a_program_touched_or_copied_is_known_by_its_content(tmp_path: Path) -> None:
    """touch, cp, a fresh checkout: the identity changes, the content does not; the layer is
    taken from the cache without compressing it again. Other content of the same shape is
    made anew."""
    store = BlobStore(tmp_path / "cache")
    program = tmp_path / "app"
    program.write_bytes(os.urandom(300_000))
    first, cached = make_layer(store, [file_entry(program, "/app")])
    assert not cached
    os.utime(program, (2_000_000_000, 2_000_000_000))  # touch
    copy = tmp_path / "copy"
    copy.write_bytes(program.read_bytes())  # cp: another inode
    for source in (program, copy):
        taps: list[_Recorder] = [_Recorder()]
        again, cached = make_layer(store, [file_entry(source, "/app")], taps=taps)
        assert cached and again == first
        assert taps[0].started is None and taps[0].cached_digest == first.descriptor.digest  # never compressed
    other = tmp_path / "other"
    other.write_bytes(os.urandom(300_000))  # same size, other bytes
    made, cached = make_layer(store, [file_entry(other, "/app")])
    assert not cached and made.diff_id != first.diff_id
    # one byte changed where the shape does not sample: read whole, told apart, made anew (the
    # taps, told of the cached layer of that shape at once, then get the new one)
    subtle = bytearray(program.read_bytes())
    subtle[10_000] ^= 0xFF
    program.write_bytes(bytes(subtle))
    taps = [_Recorder()]
    changed, cached = make_layer(store, [file_entry(program, "/app")], taps=taps)
    assert not cached and changed.diff_id not in (first.diff_id, made.diff_id)
    assert taps[0].started is not None


class _Recorder:
    def __init__(self) -> None:
        self.started: object = None
        self.cached_digest = ""

    def start(self, layer: Readable) -> None:
        self.started = layer
        layer.close()

    def finish(self, descriptor: Descriptor) -> None:
        pass

    def abort(self) -> None:
        pass

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        self.cached_digest = descriptor.digest


def test_a_diff_id_computed_without_compressing_is_the_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed through a reused buffer: the same diff_id the compressing pass finds, for files
    smaller and larger than one piece."""
    from zeroimage.layers import tar as tar_module
    from zeroimage.layers.compress import diff_id_of

    monkeypatch.setattr(tar_module, "_HASHED_CHUNK", 1 << 16)
    entries = []
    for name, size in (("empty", 0), ("small", 1000), ("large", (1 << 16) * 5 + 17)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        entries.append(file_entry(path, f"/{name}"))
    made = stream_layer(entries, io.BytesIO(), LayerOptions(compression="none"))
    assert diff_id_of(entries, 0) == made.diff_id


@pytest.mark.parametrize("change", ["cut short", "grown"])
def test_a_program_changed_while_hashed_is_one_clear_error(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rewrites the program (``cp`` over it) while its diff_id is computed: one
    error naming it. Read from a memory map, a file cut short killed the process with SIGBUS."""
    from zeroimage.layers import tar as tar_module

    monkeypatch.setattr(tar_module, "_HASHED_CHUNK", 1 << 16)
    program = tmp_path / "app"
    program.write_bytes(os.urandom((1 << 16) * 8))
    entry = file_entry(program, "/app")

    class Rewriting:
        def write(self, data: bytes | memoryview) -> None:
            if change == "cut short":
                os.truncate(program, 1 << 16)
            else:
                with open(program, "ab") as handle:
                    handle.write(b"more")

    with pytest.raises(InputError, match="app changed while it was being read"):
        tar_module.hashed_file(entry, Rewriting())
