"""The crate list of ``cargo auditable`` (.dep-v0), added with objcopy to a real program: read
as written, and refused within bounds — with a warning, never an error — when hostile."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from tests.support.sbom_inputs import add_section, rust_program, section_header_offset
from zeroimage.sbom import read_program
from zeroimage.sbom.rust import MAX_COMPRESSED, MAX_JSON

#: What cargo-auditable writes for a program "app" using rand (and, to build, cc).
CRATES = {
    "packages": [
        {"name": "app", "version": "0.1.0", "source": "local", "dependencies": [1, 3], "root": True},
        {"name": "rand", "version": "0.8.5", "source": "crates.io", "dependencies": [2]},
        {"name": "rand_core", "version": "0.6.4", "source": "crates.io"},
        {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"},
        {"name": "forked", "version": "0.2.0", "source": "git"},
    ]
}


def with_section(tmp_path: Path, data: bytes) -> Path:
    return add_section(rust_program(), ".dep-v0", data, tmp_path / "program")


def test_the_crates_are_read_with_their_graph(tmp_path: Path) -> None:
    contents = read_program(with_section(tmp_path, zlib.compress(json.dumps(CRATES).encode())))
    assert contents.warnings == () and contents.language == "rust"
    assert contents.main is not None
    assert (contents.main.name, contents.main.version, contents.main.purl) == ("app", "0.1.0", "")
    rand, rand_core, cc, forked = contents.packages
    assert [p.purl for p in (rand, rand_core, cc)] == [
        "pkg:cargo/rand@0.8.5",
        "pkg:cargo/rand_core@0.6.4",
        "pkg:cargo/cc@1.0.83",
    ]
    assert dict(cc.properties) == {"cargo:kind": "build"}
    # not from crates.io: no purl that would name someone else's crate
    assert forked.purl == "" and dict(forked.properties) == {"cargo:source": "git"}
    assert set(contents.requires) == {(-1, 0), (-1, 2), (0, 1)}


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not zlib", "it is not zlib data"),
        (zlib.compress(b"{not json"), "it is not JSON"),
        (zlib.compress(b"[" * 100_000 + b"]" * 100_000), "it is not JSON"),
        (zlib.compress(b'{"packages": {}}'), "it has no list of packages"),
        (
            zlib.compress(b'{"packages": [{"name": "a", "version": 1, "source": "x"}]}'),
            "a package has no name or version",
        ),
        (
            zlib.compress(b'{"packages": [{"name": "a", "version": "1", "source": "x", "dependencies": [0]}]}'),
            "a package's dependencies are not indices of other packages",
        ),
        (
            zlib.compress(b'{"packages": [{"name": "a", "version": "1", "source": "x", "dependencies": [7]}]}'),
            "a package's dependencies are not indices of other packages",
        ),
        (
            zlib.compress(b'{"packages": [{"name": "a", "version": "1", "source": "x", "kind": "\\u001b[2J"}]}'),
            "a package's kind is '\\x1b[2J'",
        ),
        (zlib.compress(json.dumps(CRATES).encode())[:-9], "its zlib data is cut short"),
    ],
    ids=[
        "not-zlib",
        "not-json",
        "nesting-bomb",
        "no-list",
        "wrong-type",
        "self-dependency",
        "index-out-of-range",
        "escapes",
        "cut",
    ],
)
def test_a_section_not_in_cargo_auditable_format_is_a_warning(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = with_section(tmp_path, payload)
    contents = read_program(path)
    assert contents.packages == () and contents.main is None
    assert contents.warnings == (f"its .dep-v0 section is not read: {reason}",)


def test_a_zlib_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """512 MiB of JSON-looking zeros in under a megabyte: inflated no further than MAX_JSON."""
    bomb = zlib.compressobj(9)
    parts = [bomb.compress(b'{"packages": [')]
    chunk = b" " * (1 << 20)
    parts += [bomb.compress(chunk) for _ in range(512)]
    parts.append(bomb.flush())
    payload = b"".join(parts)
    assert len(payload) < MAX_COMPRESSED
    path = with_section(tmp_path, payload)
    outcome: list[tuple[str, ...]] = []
    tracemalloc.start()
    started = time.monotonic()
    worker = threading.Thread(target=lambda: outcome.append(read_program(path).warnings), daemon=True)
    worker.start()
    worker.join(60)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not worker.is_alive(), f"still inflating after {time.monotonic() - started:.0f} s"
    assert outcome == [(f"its .dep-v0 section is not read: it inflates to more than {MAX_JSON} bytes",)]
    assert peak < 4 * MAX_JSON + 2 * len(payload), peak


def test_a_section_larger_than_read_is_refused_unread(tmp_path: Path) -> None:
    path = with_section(tmp_path, b"\0" * (MAX_COMPRESSED + 1))
    assert read_program(path).warnings == (
        f"its .dep-v0 section is not read: it is {MAX_COMPRESSED + 1} bytes, "
        f"more than the {MAX_COMPRESSED} zeroimage reads",
    )


def test_a_section_past_the_end_of_the_file_is_a_warning(tmp_path: Path) -> None:
    path = with_section(tmp_path, zlib.compress(json.dumps(CRATES).encode()))
    data = bytearray(path.read_bytes())
    header = section_header_offset(bytes(data), ".dep-v0")
    data[header + 24 : header + 32] = (len(data) - 4).to_bytes(8, "little")  # sh_offset: its size runs past the end
    path.write_bytes(data)
    assert read_program(path).warnings == ("its .dep-v0 section is not read: it lies beyond the end of the file",)


def test_a_section_header_table_past_the_end_is_a_warning(tmp_path: Path) -> None:
    path = with_section(tmp_path, zlib.compress(json.dumps(CRATES).encode()))
    data = bytearray(path.read_bytes())
    data[0x28:0x30] = (1 << 44).to_bytes(8, "little")  # e_shoff
    path.write_bytes(data)
    (warning,) = read_program(path).warnings
    reason = "the section name table's header lies beyond the end of the file"
    assert warning == f"its headers cannot be read: {reason}"


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [(4, 3, "unknown class 3"), (5, 0, "unknown byte order 0")],
    ids=["class", "byte-order"],
)
def test_an_elf_identification_that_is_not_one_is_a_warning_that_says_why(
    tmp_path: Path, offset: int, value: int, reason: str
) -> None:
    """The ELF magic, then a class or byte order ELF does not have: the warning says which, and
    never names the file where it lies on the host (before: the whole error, its path in it)."""
    path = with_section(tmp_path, zlib.compress(json.dumps(CRATES).encode()))
    data = bytearray(path.read_bytes())
    data[offset] = value
    path.write_bytes(data)
    assert read_program(path).warnings == (f"its headers cannot be read: {reason}",)
