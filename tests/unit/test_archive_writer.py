"""Archive files: AtomicFile, and StagedArchive — layers written into an archive while they are
compressed must give exactly the bytes of an archive that copies them afterwards."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.support.layers import make_layer
from zeroimage.errors import OutputError
from zeroimage.files import AtomicFile
from zeroimage.image import BuiltLayer, ImageGraph
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import file_entry
from zeroimage.layers.feed import GrowingFile
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import NullReporter
from zeroimage.store import BlobStore
from zeroimage.transports.tarwriter import StagedArchive, TarWriter, add_new_layers, blob_name

OPTIONS = LayerOptions(mtime=1)


def _head(tar: TarWriter) -> None:
    tar.add_bytes("head", b"first")
    tar.add_dir("blobs/")


def _programs(tmp_path: Path) -> list[Path]:
    paths = []
    for name, size in (("a", 200_000), ("b", 3_000_000)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size // 2) + name.encode() * (size // 2))
        paths.append(path)
    return paths


def _graph(store: BlobStore, layers: list[BuiltLayer]) -> ImageGraph:
    blobs = {}
    for layer in layers:
        blobs[layer.descriptor.digest] = store.blob(layer.descriptor)
    root = Descriptor(mt.OCI_MANIFEST, sha256_digest(b"{}"), 2)  # the sinks' part: not written here
    return ImageGraph(root, {}, blobs, tuple(dict.fromkeys(layer.descriptor.digest for layer in layers)))


def _write(staged: StagedArchive, graph: ImageGraph) -> bytes:
    with staged.output(graph) as (tar, written):
        add_new_layers(tar, graph, written, NullReporter())
        tar.add_bytes("tail", b"last")
        tar.close()
    return staged.path.read_bytes()


def _copied(tmp_path: Path, graph: ImageGraph) -> bytes:
    """The same archive with nothing streamed: every new layer copied from the store."""
    return _write(StagedArchive(tmp_path / "copied.tar", 1, _head), graph)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_streamed_layers_are_written_first_and_exactly_as_copied_ones(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    staged = StagedArchive(tmp_path / "out.tar", 1, _head)
    layers = [
        make_layer(store, [file_entry(path, f"/{path.name}")], OPTIONS, [staged.layer_tap()])[0]
        for path in _programs(tmp_path)
    ]
    graph = _graph(store, layers)
    streamed = _write(staged, graph)
    assert streamed == _copied(tmp_path, graph)
    with tarfile.open(fileobj=io.BytesIO(streamed)) as tar:
        names = tar.getnames()
    assert names == ["head", "blobs", *(blob_name(layer.descriptor.digest) for layer in layers), "tail"]
    assert _leftovers(tmp_path) == []


def test_a_cached_layer_takes_its_place_before_a_streamed_one(tmp_path: Path) -> None:
    """The usual build with --add or --with: the extra files' layer is in the cache, the
    program's is new. The cached one is copied in, in order, and the new one streams after it."""
    store = BlobStore(tmp_path / "cache")
    first, second = _programs(tmp_path)
    cached, _ = make_layer(store, [file_entry(first, "/a")], OPTIONS)
    staged = StagedArchive(tmp_path / "out.tar", 1, _head)
    hit, was_cached = make_layer(store, [file_entry(first, "/a")], OPTIONS, [staged.layer_tap()])
    assert was_cached and hit == cached
    again = make_layer(store, [file_entry(first, "/a")], OPTIONS, [staged.layer_tap()])[0]  # once only
    built, _ = make_layer(store, [file_entry(second, "/b")], OPTIONS, [staged.layer_tap()])
    graph = _graph(store, [cached, again, built])
    assert graph.new == (cached.descriptor.digest, built.descriptor.digest)
    taps = list(staged._started)
    for tap in taps:
        tap.join()
    assert [tap.digest for tap in taps] == list(graph.new)  # all kept: nothing written twice
    assert _write(staged, graph) == _copied(tmp_path, graph)
    assert _leftovers(tmp_path) == []


def test_streamed_layers_out_of_the_image_order_are_written_again(tmp_path: Path) -> None:
    """Should the layers stream in another order than the image lists them, the archive
    starts again after its head, and matches one that copied them all."""
    store = BlobStore(tmp_path / "cache")
    staged = StagedArchive(tmp_path / "out.tar", 1, _head)
    layers = [
        make_layer(store, [file_entry(path, f"/{path.name}")], OPTIONS, [staged.layer_tap()])[0]
        for path in _programs(tmp_path)
    ]
    graph = _graph(store, layers[::-1])
    assert _write(staged, graph) == _copied(tmp_path, graph)
    assert _leftovers(tmp_path) == []


def test_an_abandoned_layer_leaves_no_trace_in_the_archive(tmp_path: Path) -> None:
    staged = StagedArchive(tmp_path / "out.tar", 1, _head)
    fd = os.open(tmp_path / "layer", os.O_RDWR | os.O_CREAT)
    growing = GrowingFile(fd, tmp_path / "layer")
    tap = staged.layer_tap()
    tap.start(growing.follow())
    growing.write(os.urandom(100_000))
    growing.abandon()
    tap.abort()
    os.close(fd)
    empty = _graph(BlobStore(tmp_path / "cache"), [])
    assert _write(staged, empty) == _copied(tmp_path, empty)


def test_discard_removes_the_archive_in_progress(tmp_path: Path) -> None:
    (tmp_path / "out.tar").write_bytes(b"an earlier build")
    staged = StagedArchive(tmp_path / "out.tar", 1, _head)
    fd = os.open(tmp_path / "layer", os.O_RDWR | os.O_CREAT)
    growing = GrowingFile(fd, tmp_path / "layer")
    staged.layer_tap().start(growing.follow())
    growing.write(b"x" * 5000)
    assert _leftovers(tmp_path)  # the archive's temporary file, begun with the layer
    growing.abandon()  # the build failed: the store abandons the layer, then the sink is closed
    staged.discard()
    os.close(fd)
    assert _leftovers(tmp_path) == []
    assert (tmp_path / "out.tar").read_bytes() == b"an earlier build"
    staged.discard()  # twice, or with nothing begun: nothing to do


def test_a_bad_output_path_fails_as_the_layer_starts(tmp_path: Path) -> None:
    staged = StagedArchive(tmp_path / "missing" / "out.tar", 1, _head)

    class Reader:
        closed = False

        def read(self, n: int = -1) -> bytes:
            return b""

        def close(self) -> None:
            self.closed = True

    reader = Reader()
    with pytest.raises(OutputError, match="does not exist"):
        staged.layer_tap().start(reader)
    assert reader.closed


def test_atomic_file_commit_and_discard(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    discarded = AtomicFile(target)
    discarded.discard()  # before open: nothing to remove
    discarded.open().write(b"never")
    (temporary,) = _leftovers(tmp_path)
    assert temporary.startswith(".out.")
    discarded.discard()
    assert _leftovers(tmp_path) == [] and target.read_bytes() == b"old"
    committed = AtomicFile(target, mode=0o600)
    committed.open().write(b"new")
    committed.commit()
    committed.discard()  # after commit: the output stays
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o600
    assert _leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="is a directory"):
        AtomicFile(tmp_path)
