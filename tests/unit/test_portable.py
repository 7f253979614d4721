"""zeroimage on hosts that are not Linux: each Linux-only call taken away here (as macOS or
Windows lack it), the fallback gives the same bytes; without POSIX modes, a file's mode in the
image comes from what it is; an image path never holds a host's backslash.

These run in both runs of the suite (``make test`` and ``make test-foreign-host``): each takes
the call away itself.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from tests.support.programs import static_amd64_header
from tests.support.waiting import Background, bounded
from zeroimage import files
from zeroimage.essentials import add_entries
from zeroimage.layers.entries import NO_POSIX_MODES, file_entry, host_mode, image_path, link_target, modes_notice
from zeroimage.layers.feed import GrowingFile


@pytest.fixture
def no_positioned_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host without ``os.pread`` and ``os.pwrite`` (Windows)."""
    for name in ("pread", "pwrite"):
        monkeypatch.delattr(os, name, raising=False)


@pytest.fixture
def no_posix_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose files have no POSIX modes (Windows)."""
    monkeypatch.setattr(files, "POSIX_MODES", False)


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


# -- modes without POSIX modes ---------------------------------------------------------------------


def _file(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_modes_come_from_what_a_file_is_without_posix_modes(tmp_path: Path, no_posix_modes: None) -> None:
    elf = _file(tmp_path / "elf", static_amd64_header(), 0o600)  # bits that say nothing there
    script = _file(tmp_path / "script", b"#!/bin/sh\necho hi\n", 0o600)
    data = _file(tmp_path / "data.txt", b"\x7fEL but not quite", 0o777)
    assert [file_entry(p, f"/{p.name}").mode for p in (elf, script, data)] == [0o755, 0o755, 0o644]
    assert host_mode(tmp_path, os.stat(tmp_path)) == 0o755
    assert modes_notice() == NO_POSIX_MODES


def test_modes_are_the_files_own_with_posix_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "POSIX_MODES", True)
    elf = _file(tmp_path / "elf", static_amd64_header(), 0o700)
    data = _file(tmp_path / "data", b"plain", 0o640)
    assert [file_entry(p, f"/{p.name}").mode for p in (elf, data)] == [0o700, 0o640]
    assert modes_notice() is None


def test_an_added_tree_without_posix_modes(tmp_path: Path, no_posix_modes: None) -> None:
    tree = tmp_path / "site"
    (tree / "bin").mkdir(parents=True)
    tree.chmod(0o700)
    _file(tree / "bin" / "tool", b"#!/bin/sh\n", 0o600)
    _file(tree / "index.html", b"<p>hi</p>", 0o700)
    modes = {e.path: (e.kind, e.mode) for e in add_entries(tree, "/srv/site")}
    assert modes == {
        "/srv/site": ("dir", 0o755),
        "/srv/site/bin": ("dir", 0o755),
        "/srv/site/bin/tool": ("file", 0o755),
        "/srv/site/index.html": ("file", 0o644),
    }


def test_the_build_says_once_how_modes_were_chosen(
    tmp_path: Path, no_posix_modes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the library: one warning, and the program's mode in the layer from its ELF header."""
    import zeroimage

    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / "cache"))
    program = _file(tmp_path / "app", static_amd64_header() + os.urandom(1000), 0o600)
    events: list[zeroimage.Event] = []
    zeroimage.build([program], outputs=[f"oci:{tmp_path / 'layout'}"], progress=events.append)
    assert [e.message for e in events if e.kind == "warning"] == [NO_POSIX_MODES]
    index = (tmp_path / "layout" / "index.json").read_text()
    import json

    blobs = tmp_path / "layout" / "blobs" / "sha256"
    manifest = json.loads((blobs / json.loads(index)["manifests"][0]["digest"][7:]).read_text())
    with tarfile.open(blobs / manifest["layers"][0]["digest"][7:]) as layer:
        assert stat.S_IMODE(layer.getmember("app").mode) == 0o755


# -- image paths -----------------------------------------------------------------------------------


def test_image_paths_are_joined_from_a_host_paths_parts() -> None:
    assert image_path("/srv", PureWindowsPath("static\\css"), "site.css") == "/srv/static/css/site.css"
    assert image_path("/srv", PurePosixPath("."), "top") == "/srv/top"
    assert image_path("/srv/", PureWindowsPath("."), "top") == "/srv/top"


def test_a_windows_link_target_becomes_a_posix_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "link"
    link.symlink_to("..\\lib\\libc.so")  # on Linux, backslashes are a name's characters
    assert link_target(link) == "..\\lib\\libc.so"
    monkeypatch.setattr(os, "sep", "\\")  # as os.readlink reports a link on Windows
    assert link_target(link) == "../lib/libc.so"
