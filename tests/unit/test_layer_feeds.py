"""GrowingFile: a file read by followers while it is written, and the store's taps built on it."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

from zeroimage.cache import BlobStore
from zeroimage.errors import InputError
from zeroimage.files import GrowingFile, LayerAbandoned, Readable
from zeroimage.layer import Entry, LayerOptions, file_entry
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.progress import NullReporter


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

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(10)


def test_store_hands_taps_the_layer_as_it_is_written(tmp_path: Path, program: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    taps = [_RecordingTap(), _RecordingTap()]
    built, cached = store.layer([file_entry(program, "/app")], LayerOptions(), NullReporter(), taps)
    assert not cached
    for tap in taps:
        tap.join()
        assert tap.descriptor == built.descriptor and not tap.aborted and not tap.errors
        assert (
            sha256_digest(tap.data)
            == built.descriptor.digest
            == sha256_digest(store.path(built.descriptor.digest).read_bytes())
        )


def test_store_abandons_taps_when_the_layer_fails(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    tap = _RecordingTap()
    shrunk = tmp_path / "app"
    shrunk.write_bytes(b"short")
    entry = Entry(path="app", kind="file", mode=0o755, source=shrunk, size=10)  # it changed while read
    with pytest.raises(InputError):
        store.layer([entry], LayerOptions(), NullReporter(), [tap])
    tap.join()
    assert tap.aborted and tap.descriptor is None
    assert len(tap.errors) == 1 and isinstance(tap.errors[0], LayerAbandoned)
    assert not [p for p in (tmp_path / "cache" / "blobs" / "sha256").iterdir()]  # no temp file left
