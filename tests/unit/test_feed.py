"""Layer feeds — GrowingFile (a file read while it is written) and MemoryPipe (a bounded window
of chunks) — and the store's taps built on them."""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.layers import make_layer, settle
from tests.support.waiting import Background, bounded
from zeroimage.errors import InputError
from zeroimage.files import Readable
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import Entry, file_entry
from zeroimage.layers.feed import GrowingFile, LayerAbandoned, MemoryPipe
from zeroimage.layers.producer import LayerProducer, layer_key
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.progress import NullReporter
from zeroimage.store import BlobStore


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "program"
    path.write_bytes(os.urandom(300_000) + b"x" * 3_000_000)
    return path


def _growing(tmp_path: Path) -> tuple[GrowingFile, int]:
    fd, path = tempfile.mkstemp(dir=tmp_path)
    return GrowingFile(fd, path), fd


def _read_all(reader: Readable) -> bytes:
    """Everything ``reader`` gives, in reads of 1000 bytes; the reader is closed either way."""
    chunks = []
    try:
        while chunk := reader.read(1000):
            chunks.append(chunk)
    finally:
        reader.close()
    return b"".join(chunks)


def _reading(reader: Readable) -> Background[bytes]:
    """A helper thread reading all of ``reader``: a read that never ends fails the test."""
    return Background(lambda: _read_all(reader), "a follower's read")


def test_follower_reads_everything_written_while_waiting_for_more(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    reader = _reading(growing.follow())
    parts = [os.urandom(n) for n in (1, 4095, 70000, 3)]
    for part in parts:
        growing.write(part)
    assert reader.running_after(0.2)  # still waiting: the file has not ended
    growing.end()
    assert reader.result() == b"".join(parts)
    os.close(fd)


def test_a_follower_that_never_reads_does_not_slow_the_writer(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    idle = growing.follow()

    def write_64_mib() -> None:
        for _ in range(64):
            growing.write(b"x" * (1 << 20))  # 64 MiB, nothing held in memory for the follower
        growing.end()

    bounded(write_64_mib, "writes past a follower that never reads")
    os.close(fd)  # the follower has a descriptor of its own
    assert bounded(lambda: len(idle.read(-1)), "the idle follower's read") == 64 << 20
    assert bounded(lambda: idle.read(1), "a read at the end") == b""
    idle.close()


def test_abandoning_wakes_followers_with_an_error(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    reader = _reading(growing.follow())
    growing.write(b"partial")
    growing.abandon()
    growing.end()  # too late: an abandoned file stays abandoned
    with pytest.raises(LayerAbandoned):
        reader.result()
    os.close(fd)


def test_pipe_followers_each_read_every_chunk_in_order(tmp_path: Path) -> None:
    pipe = MemoryPipe(window=10_000)
    readers = [_reading(pipe.follow()) for _ in range(2)]
    parts = [os.urandom(n) for n in (1, 2500, 9999, 30000, 7)]  # bigger than the window, and than a read

    def write_all_parts() -> None:
        for part in parts:
            pipe.write(part)
        pipe.end()

    bounded(write_all_parts, "writes the followers keep up with")
    for reader in readers:
        assert reader.result() == b"".join(parts)


def test_pipe_writer_waits_for_the_slowest_follower_and_abandon_frees_it() -> None:
    pipe = MemoryPipe(window=1000)
    idle = pipe.follow()
    pipe.write(b"x" * 1000)  # fills the window
    writer = Background(lambda: pipe.write(b"y"), "a write into a full window")
    assert writer.running_after(0.2)  # bounded: it waits for the follower
    assert bounded(lambda: idle.read(-1), "the follower's read") == b"x" * 1000  # room again
    assert writer.result() == 1
    bounded(lambda: pipe.write(b"z" * 1000), "a write with room for it")
    writer = Background(lambda: pipe.write(b"y"), "a write into a full window")
    assert writer.running_after(0.2)
    pipe.abandon()  # an interrupted build must never leave the compressor waiting
    with pytest.raises(LayerAbandoned):
        writer.result()
    with pytest.raises(LayerAbandoned):
        bounded(lambda: idle.read(1), "a read of an abandoned pipe")


def test_pipe_drops_a_follower_that_closes_and_then_holds_nothing() -> None:
    pipe = MemoryPipe(window=1000)
    quitter = pipe.follow()
    pipe.write(b"x" * 1000)
    quitter.close()  # a failed upload: the compressor goes on at full speed

    def write_100_mib() -> None:
        for _ in range(100):
            pipe.write(bytes(1 << 20))  # a new object each time: kept, each would count

    tracemalloc.start()
    try:
        bounded(write_100_mib, "writes with no follower left")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1 << 20, f"{held} bytes still held"
    pipe.end()


class _RecordingTap:
    def __init__(self) -> None:
        self.data = b""
        self.descriptor: Descriptor | None = None
        self.aborted = False
        self.reader: Background[bytes] | None = None

    def start(self, layer: Readable) -> None:
        self.reader = _reading(layer)

    def finish(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor

    def abort(self) -> None:
        self.aborted = True

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        self.descriptor = descriptor
        self.data = _read_all(open_layer())

    def join(self) -> None:
        """Wait (within a bound) for the read the store started; re-raise how it failed."""
        assert self.reader is not None, "the store never started this tap"
        self.data = self.reader.result()


def test_store_hands_taps_the_layer_as_it_is_written(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    taps = [_RecordingTap(), _RecordingTap()]
    built, cached = bounded(
        lambda: make_layer(store, [file_entry(program, "/app")], LayerOptions(), taps), "the layer", 60
    )
    assert not cached
    for tap in taps:
        tap.join()  # re-raises how its read failed, if it did
        assert tap.descriptor == built.descriptor and not tap.aborted
        assert (
            sha256_digest(tap.data)
            == built.descriptor.digest
            == sha256_digest(store.path(built.descriptor.digest).read_bytes())
        )
    hit = _RecordingTap()  # a cache hit: the tap is told where the bytes are, nothing streams
    assert make_layer(store, [file_entry(program, "/app")], LayerOptions(), [hit]) == (built, True)
    assert hit.reader is None and hit.descriptor == built.descriptor
    assert sha256_digest(hit.data) == built.descriptor.digest
    pushed = _RecordingTap()  # a push keeps no bytes: its taps hear nothing of a hit
    assert make_layer(store, [file_entry(program, "/app")], LayerOptions(), [pushed], keep=False)[1]
    assert pushed.descriptor is None


def test_store_abandons_taps_when_the_layer_fails(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    tap = _RecordingTap()
    shrunk = tmp_path / "app"
    shrunk.write_bytes(b"short")
    entry = Entry(path="app", kind="file", mode=0o755, source=shrunk, size=10)  # it changed while read
    with pytest.raises(InputError):
        bounded(lambda: make_layer(store, [entry], LayerOptions(), [tap]), "the failing layer")
    with pytest.raises(LayerAbandoned):
        tap.join()
    assert tap.aborted and tap.descriptor is None
    assert not [p for p in (tmp_path / "cache" / "blobs" / "sha256").iterdir()]  # no temp file left


def test_store_without_keep_passes_the_layer_through_memory(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    tap = _RecordingTap()
    entries = [file_entry(settle(program), "/app")]
    built, cached = bounded(  # the compressor waits for the tap: a tap that stalls would block it
        lambda: make_layer(store, entries, LayerOptions(), [tap], keep=False), "the layer", 60
    )
    tap.join()
    assert not cached and tap.descriptor == built.descriptor and sha256_digest(tap.data) == built.descriptor.digest
    assert not store.has(built.descriptor)  # never written to disk
    key = layer_key(entries, LayerOptions())
    assert store.layer_record(key, need_blob=False) == built  # its identity is remembered: a push can skip it
    assert store.layer_record(key) is None  # but an output that needs the bytes misses
    again, cached = make_layer(store, entries, LayerOptions(), keep=True)
    assert not cached and again == built and store.has(built.descriptor)


def test_a_layer_kept_by_identity_is_made_again_when_a_sink_needs_its_bytes(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    entries = [file_entry(program, "/app")]
    producer = LayerProducer(store, LayerOptions(), NullReporter(), list, keep=False)
    made = producer.make(entries, "test layer")
    assert not store.has(made.built.descriptor)  # nothing on disk to copy from
    assert sha256_digest(_read_all(producer.blob(made).open())) == made.built.descriptor.digest
    other = LayerProducer(BlobStore(tmp_path / "other"), LayerOptions(), NullReporter(), list, keep=False)
    streamed = other.make(entries, "test layer")
    with open(program, "r+b") as handle:  # the program changes after its layer was streamed
        handle.write(b"changed")
    with pytest.raises(InputError, match="changed during the build"):
        other.blob(streamed).open()
