"""zeroimage on hosts that are not Linux: each Linux-only call taken away here (as macOS or
Windows lack it), the fallback gives the same bytes.

These run in both runs of the suite (``make test`` and ``make test-foreign-host``): each takes
the call away itself.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.support.waiting import Background, bounded
from zeroimage import files
from zeroimage.layers.feed import GrowingFile


@pytest.fixture
def no_positioned_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host without ``os.pread`` and ``os.pwrite`` (Windows)."""
    for name in ("pread", "pwrite"):
        monkeypatch.delattr(os, name, raising=False)


# -- positioned reads and writes -------------------------------------------------------------------


def test_range_reader_and_positioned_writes_without_pread(tmp_path: Path, no_positioned_io: None) -> None:
    path = tmp_path / "data"
    data = os.urandom(200_000)
    path.write_bytes(data)
    with files.RangeReader(path, 1000, 150_000) as reader:
        got = b"".join(iter(lambda: reader.read(7000), b""))
    assert got == data[1000:151_000]
    fd = os.open(path, os.O_RDWR)
    try:
        files.write_at(fd, b"HEADER", 512)
        assert files.read_at(fd, 10, 510) == data[510:512] + b"HEADER" + data[518:520]
    finally:
        os.close(fd)
    assert path.read_bytes() == data[:512] + b"HEADER" + data[518:]


def test_followers_of_a_growing_file_never_move_the_writer_without_pread(
    tmp_path: Path, no_positioned_io: None
) -> None:
    """Followers read by seeking where there is no pread: each has a descriptor of its own, opened
    by name. A dup of the writer's descriptor would share its offset, and the writer's next
    bytes would land where a follower last read."""
    path = tmp_path / "layer"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    growing = GrowingFile(fd, path)
    followers = [growing.follow() for _ in range(2)]
    parts = [os.urandom(n) for n in (5000, 1, 70_000, 4096, 3)]
    read: list[bytes] = []
    for part in parts:
        growing.write(part)
        read.append(bounded(lambda: followers[0].read(1000), "a follower's read"))  # behind the writer
    growing.end()
    read.append(bounded(lambda: followers[0].read(-1), "a follower's read"))
    assert bounded(lambda: followers[0].read(1), "a read at the end") == b""
    os.close(fd)
    whole = b"".join(parts)
    assert b"".join(read) == whole
    assert path.read_bytes() == whole  # the writer's bytes all landed in order
    assert bounded(lambda: followers[1].read(-1), "the other follower's read") == whole
    for follower in followers:
        follower.close()


def test_a_follower_waits_for_the_writer_without_pread(tmp_path: Path, no_positioned_io: None) -> None:
    path = tmp_path / "layer"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    growing = GrowingFile(fd, path)
    follower = growing.follow()
    reading = Background(lambda: b"".join(iter(lambda: follower.read(1000), b"")), "a follower's read")
    growing.write(b"x" * 3000)
    assert reading.running_after(0.2)  # waiting for more, not at a false end
    growing.write(b"y" * 10)
    growing.end()
    assert reading.result() == b"x" * 3000 + b"y" * 10
    follower.close()
    os.close(fd)


def test_no_writeback_request_where_the_host_has_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Off Linux, ``sync_file_range`` is never looked up (``ctypes.CDLL(None)`` does not work on
    Windows), and an archive is written all the same."""
    looked_up = threading.Event()

    def lookup() -> None:
        looked_up.set()

    monkeypatch.setattr(files, "WRITEBACK", False)
    monkeypatch.setattr(files, "_sync_file_range", lookup)
    from zeroimage.transports.tarwriter import copy_to_file

    data = os.urandom(20 << 20)  # more than one slice between two writeback requests
    source = tmp_path / "source"
    source.write_bytes(data)
    with files.atomic_write(tmp_path / "out") as out, files.RangeReader(source, 0, len(data)) as reader:
        assert copy_to_file(reader, out) == len(data)
    assert (tmp_path / "out").read_bytes() == data
    assert not looked_up.is_set()
