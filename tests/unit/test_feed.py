"""Layer feeds — GrowingFile (a file read while it is written) and MemoryPipe (a bounded window
of chunks) — and the store's taps built on them."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.layers import make_layer
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
    fd, _ = tempfile.mkstemp(dir=tmp_path)
    return GrowingFile(fd), fd


def _read_all(reader: Readable, out: list[bytes], errors: list[BaseException]) -> None:
    try:
        while chunk := reader.read(1000):
            out.append(chunk)
    except BaseException as exc:
        errors.append(exc)
    finally:
        reader.close()


def test_follower_reads_everything_written_while_waiting_for_more(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    follower = growing.follow()
    got: list[bytes] = []
    errors: list[BaseException] = []
    reader = threading.Thread(target=_read_all, args=(follower, got, errors))
    reader.start()
    parts = [os.urandom(n) for n in (1, 4095, 70000, 3)]
    for part in parts:
        growing.write(part)
    reader.join(0.2)
    assert reader.is_alive()  # still waiting: the file has not ended
    growing.end()
    reader.join(5)
    os.close(fd)
    assert not errors and b"".join(got) == b"".join(parts)


def test_a_follower_that_never_reads_does_not_slow_the_writer(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    idle = growing.follow()
    for _ in range(64):
        growing.write(b"x" * (1 << 20))  # 64 MiB, nothing held in memory for the follower
    growing.end()
    os.close(fd)  # the follower has a descriptor of its own
    assert len(idle.read(-1)) == 64 << 20 and idle.read(1) == b""
    idle.close()


def test_abandoning_wakes_followers_with_an_error(tmp_path: Path) -> None:
    growing, fd = _growing(tmp_path)
    got: list[bytes] = []
    errors: list[BaseException] = []
    reader = threading.Thread(target=_read_all, args=(growing.follow(), got, errors))
    reader.start()
    growing.write(b"partial")
    growing.abandon()
    growing.end()  # too late: an abandoned file stays abandoned
    reader.join(5)
    os.close(fd)
    assert not reader.is_alive() and len(errors) == 1 and isinstance(errors[0], LayerAbandoned)


def test_pipe_followers_each_read_every_chunk_in_order(tmp_path: Path) -> None:
    pipe = MemoryPipe(window=10_000)
    results: list[tuple[list[bytes], list[BaseException]]] = []
    threads = []
    for _ in range(2):
        got: list[bytes] = []
        errors: list[BaseException] = []
        results.append((got, errors))
        threads.append(threading.Thread(target=_read_all, args=(pipe.follow(), got, errors)))
    for thread in threads:
        thread.start()
    parts = [os.urandom(n) for n in (1, 2500, 9999, 30000, 7)]  # bigger than the window, and than a read
    for part in parts:
        pipe.write(part)
    pipe.end()
    for thread in threads:
        thread.join(5)
    for got, errors in results:
        assert not errors and b"".join(got) == b"".join(parts)


def test_pipe_writer_waits_for_the_slowest_follower_and_abandon_frees_it() -> None:
    pipe = MemoryPipe(window=1000)
    idle = pipe.follow()
    pipe.write(b"x" * 1000)  # fills the window
    outcome: list[BaseException | None] = []

    def write_more() -> None:
        try:
            pipe.write(b"y")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write_more)
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()  # bounded: it waits for the follower
    assert idle.read(-1) == b"x" * 1000  # room again
    writer.join(5)
    assert outcome == [None]
    pipe.write(b"z" * 1000)
    writer = threading.Thread(target=write_more)
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()
    pipe.abandon()  # an interrupted build must never leave the compressor waiting
    writer.join(5)
    assert len(outcome) == 2 and isinstance(outcome[1], LayerAbandoned)
    with pytest.raises(LayerAbandoned):
        idle.read(1)


def test_pipe_drops_a_follower_that_closes_and_then_holds_nothing() -> None:
    pipe = MemoryPipe(window=1000)
    quitter = pipe.follow()
    pipe.write(b"x" * 1000)
    quitter.close()  # a failed upload: the compressor goes on at full speed
    for _ in range(100):
        pipe.write(b"y" * 1000)
    pipe.end()


class _RecordingTap:
    def __init__(self) -> None:
        self.data = b""
        self.descriptor: Descriptor | None = None
        self.aborted = False
        self.thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def start(self, layer: Readable) -> None:
        chunks: list[bytes] = []

        def run() -> None:
            _read_all(layer, chunks, self.errors)
            self.data = b"".join(chunks)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def finish(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor

    def abort(self) -> None:
        self.aborted = True

    def cached(self, descriptor: Descriptor, open_layer: Callable[[], Readable]) -> None:
        self.descriptor = descriptor
        layer = open_layer()
        try:
            self.data = b"".join(iter(lambda: layer.read(1 << 20), b""))
        finally:
            layer.close()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(10)


def test_store_hands_taps_the_layer_as_it_is_written(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    taps = [_RecordingTap(), _RecordingTap()]
    built, cached = make_layer(store, [file_entry(program, "/app")], LayerOptions(), taps)
    assert not cached
    for tap in taps:
        tap.join()
        assert tap.descriptor == built.descriptor and not tap.aborted and not tap.errors
        assert (
            sha256_digest(tap.data)
            == built.descriptor.digest
            == sha256_digest(store.path(built.descriptor.digest).read_bytes())
        )
    hit = _RecordingTap()  # a cache hit: the tap is told where the bytes are, nothing streams
    assert make_layer(store, [file_entry(program, "/app")], LayerOptions(), [hit]) == (built, True)
    assert hit.thread is None and hit.descriptor == built.descriptor
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
        make_layer(store, [entry], LayerOptions(), [tap])
    tap.join()
    assert tap.aborted and tap.descriptor is None
    assert len(tap.errors) == 1 and isinstance(tap.errors[0], LayerAbandoned)
    assert not [p for p in (tmp_path / "cache" / "blobs" / "sha256").iterdir()]  # no temp file left


def test_store_without_keep_passes_the_layer_through_memory(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    tap = _RecordingTap()
    entries = [file_entry(program, "/app")]
    built, cached = make_layer(store, entries, LayerOptions(), [tap], keep=False)
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
    stream = producer.blob(made).open()
    try:
        assert sha256_digest(b"".join(iter(lambda: stream.read(1 << 20), b""))) == made.built.descriptor.digest
    finally:
        stream.close()
    other = LayerProducer(BlobStore(tmp_path / "other"), LayerOptions(), NullReporter(), list, keep=False)
    streamed = other.make(entries, "test layer")
    with open(program, "r+b") as handle:  # the program changes after its layer was streamed
        handle.write(b"changed")
    with pytest.raises(InputError, match="changed during the build"):
        other.blob(streamed).open()
