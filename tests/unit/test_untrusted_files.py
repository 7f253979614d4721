"""Reading small local files with untrusted.open_regular/read_regular: what each kind of file
gets by default (a regular file itself, nothing else, never a wait for a FIFO's writer), and with
the options callers take (a user's file followed through a symlink, a key handed over by a pipe),
on this host and as on one without ``O_NONBLOCK``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import bounded
from zeroimage import untrusted
from zeroimage.errors import InputError
from zeroimage.untrusted import read_regular

needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this host")


@pytest.fixture(params=["this host", "a host without O_NONBLOCK"])
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on this host, and as on one without O_NONBLOCK (which must look before it opens)."""
    if request.param != "this host":
        monkeypatch.setattr(untrusted, "_NONBLOCK", 0)
    return str(request.param)


def refusal(path: Path, what: str, **options: object) -> str:
    """The one line read_regular refuses ``path`` with, within a bound of time (a FIFO must
    never be waited for)."""

    def read() -> str:
        with pytest.raises(InputError) as refused:
            read_regular(path, 100, what, **options)  # type: ignore[arg-type]
        return refused.value.message

    return bounded(read, f"reading {path}", timeout=20)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield path


def feed(fifo: Path, data: bytes) -> threading.Thread:
    """A writer that opens ``fifo`` and writes ``data`` (a ``<(…)`` of the shell)."""

    def write() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_regular_file_is_read_whole(tmp_path: Path, host: str) -> None:
    (tmp_path / "f").write_bytes(b"data")
    assert read_regular(tmp_path / "f", 100, "f") == b"data"
    assert read_regular(tmp_path / "f", 100, "f", follow_symlinks=True, pipes=True) == b"data"


def test_a_missing_file_is_left_to_the_caller(tmp_path: Path, host: str) -> None:
    for options in ({}, {"follow_symlinks": True}, {"follow_symlinks": True, "pipes": True}):
        with pytest.raises(FileNotFoundError):
            read_regular(tmp_path / "gone", 100, "gone", **options)  # type: ignore[arg-type]


def test_a_symlink_is_refused_unless_followed(tmp_path: Path, host: str) -> None:
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert refusal(tmp_path / "link", "the link") == "the link is a symlink, which zeroimage does not follow there"
    assert read_regular(tmp_path / "link", 100, "the link", follow_symlinks=True) == b"data"


def test_a_directory_is_said_to_be_one(tmp_path: Path, host: str) -> None:
    assert refusal(tmp_path, "the key") == "the key is a directory"
    assert refusal(tmp_path, "the key", follow_symlinks=True, pipes=True) == "the key is a directory"


def test_a_file_past_the_bound_is_refused_saying_what_it_cannot_be(tmp_path: Path, host: str) -> None:
    (tmp_path / "big").write_bytes(b"x" * 101)
    assert refusal(tmp_path / "big", "big") == "big is larger than 100 bytes"
    assert refusal(tmp_path / "big", "big", too_large="not a key") == "big is larger than 100 bytes: not a key"


def test_what_cannot_be_read_is_named_once(tmp_path: Path, host: str) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert refusal(loop, f"{loop} (a key)", follow_symlinks=True) == (
        f"cannot read {loop} (a key): Too many levels of symbolic links"
    )
    assert refusal(loop, "a key", follow_symlinks=True) == (
        f"cannot read a key: {loop}: Too many levels of symbolic links"
    )


@needs_fifos
def test_a_fifo_is_refused_at_once_without_pipes(fifo: Path, host: str) -> None:
    """Never a wait for a writer that may never come (with O_NONBLOCK, or by looking first)."""
    assert refusal(fifo, "the file") == "the file is not a regular file"
    assert refusal(fifo, "the file", follow_symlinks=True) == "the file is not a regular file"


@needs_fifos
def test_a_pipe_is_read_when_pipes_are_taken(fifo: Path, host: str) -> None:
    """``--sign-key <(vault read …)``: the reader waits for the writer, and takes all it writes."""
    writer = feed(fifo, b"k" * 100)
    assert bounded(lambda: read_regular(fifo, 100, "key", pipes=True), "reading the pipe", timeout=20) == b"k" * 100
    writer.join(10)
    writer = feed(fifo, b"k" * 5000)
    assert refusal(fifo, "key", pipes=True, too_large="not a key") == "key is larger than 100 bytes: not a key"
    writer.join(10)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_is_refused_even_where_pipes_are_taken(host: str) -> None:
    assert refusal(Path("/dev/null"), "key", follow_symlinks=True, pipes=True) == (
        "key is not a regular file or a pipe"
    )
    assert refusal(Path("/dev/null"), "file", follow_symlinks=True) == "file is not a regular file"
