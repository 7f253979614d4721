"""Base layers an attacker wrote, listed by a real build (``--user NAME`` makes zeroimage read the
base's files): each is refused with one clean line or listed, within bounds of memory and time.

The layers are small on disk and large when read: a 1 GB GNU long name or PAX header in a 1 MB
gzip stream, 20,000 files and as many whiteouts, 2,000,000 empty files. Each run is measured
(wall time, and peak RSS from GNU time); a build of a small base takes about 40 MB.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.hostile_layers import (
    Layer,
    Run,
    end_of_archive,
    entry,
    layer_of,
    many_empty_files,
    oci_archive,
    raw_header,
    run_measured,
    tar_of,
)

GB = 1 << 30
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
#: Peak RSS a refusal of a hostile layer may take, in kB.
REFUSAL_RSS_KB = 150_000


def passwd_layer() -> Layer:
    return layer_of(tar_of([entry("etc", tarfile.DIRTYPE, mode=0o755), (entry("etc/passwd"), PASSWD)]))


def build(tmp_path: Path, layers: list[Layer], program: Path, *extra: str) -> Run:
    base = oci_archive(tmp_path / "base.tar", layers)
    return run_measured(
        ["build", "--from", f"oci-archive:{base}", "--user", "app", *extra, "-o", "out.tar", str(program)], tmp_path
    )


def assert_refused(run: Run, expect: str) -> None:
    assert run.returncode == 1, run.told()
    assert "Traceback" not in run.stderr, run.told()
    [line] = run.error_lines()
    assert line.startswith("zeroimage: error: ") and expect in line, run.told()


def header_claim(kind: bytes) -> Layer:
    """A header of ``kind`` that claims 1 GB, and the gigabyte (of zeros) after it."""
    return layer_of(raw_header(b"././@LongLink", GB, kind), GB, end_of_archive())


@pytest.mark.parametrize(("kind", "what"), [(b"L", "gnu-long-name"), (b"K", "gnu-long-link"), (b"x", "pax")])
def test_a_header_claiming_a_gigabyte_is_refused_before_it_is_read(
    kind: bytes, what: str, static_binary: Path, tmp_path: Path
) -> None:
    """Before: tarfile read the whole header into memory (2 GB peak for a 1 GB claim)."""
    run = build(tmp_path, [passwd_layer(), header_claim(kind)], static_binary)
    assert_refused(run, "tar header claims more than 1048576 bytes")
    assert run.peak_rss_kb < REFUSAL_RSS_KB, run.told()
    assert run.seconds < 30, run.told()
    assert not (tmp_path / "out.tar").exists()


def test_a_sparse_member_is_refused(static_binary: Path, tmp_path: Path) -> None:
    sparse = raw_header(b"sparse", 10, b"S")
    run = build(tmp_path, [passwd_layer(), layer_of(sparse, bytes(512), end_of_archive())], static_binary)
    assert_refused(run, "sparse tar members are not supported")


def test_many_whiteouts_take_linear_time(static_binary: Path, tmp_path: Path) -> None:
    """20,000 files, then a layer whiting out each of them: before, 27 s (a scan of the whole
    tree per whiteout); the listing itself takes about a second."""
    files = layer_of(tar_of([(entry(f"data/f{n}"), b"") for n in range(20_000)]))
    whiteouts = layer_of(tar_of([(entry(f"data/.wh.f{n}"), b"") for n in range(20_000)]))
    run = build(tmp_path, [passwd_layer(), files, whiteouts], static_binary)
    assert run.returncode == 0, run.told()
    assert run.seconds < 8, run.told()


def test_two_million_empty_files_are_refused_within_bounded_memory(static_binary: Path, tmp_path: Path) -> None:
    """Before: every header kept (tarfile's members, the listing, the tree), several GB."""
    many = layer_of(b"".join(many_empty_files(2_000_000)), end_of_archive())
    run = build(tmp_path, [passwd_layer(), many], static_binary)
    assert_refused(run, "more than 1000000 entries")
    assert run.peak_rss_kb < 400_000, run.told()
    assert run.seconds < 120, run.told()


def test_a_base_with_a_user_is_listed(static_binary: Path, tmp_path: Path) -> None:
    """The positive control: the same kind of base, unaltered, gives the user's ids."""
    run = build(tmp_path, [passwd_layer()], static_binary)
    assert run.returncode == 0, run.told()
    assert (tmp_path / "out.tar").is_file()
