"""Go's build info, read from real programs and checked against ``go version -m``; and read from
hostile ones within bounds, never raising."""

from __future__ import annotations

import json
import os
import shutil
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import gomodules
from tests.support.peers import which
from tests.support.sbom_inputs import MAGIC, go_program, pointer_format_program, section_header_offset
from zeroimage import files
from zeroimage.errors import InputError
from zeroimage.sbom import ProgramContents, read_program
from zeroimage.sbom.golang import MAX_MODINFO, go_unquote, h1_to_sha256, parse_build_info


def go_quote(value: str) -> str:
    """A setting's value as Go's build info writes it (quoted when it has a space, tab, newline,
    quote or backquote); for ASCII, strconv.Quote and JSON agree."""
    return json.dumps(value) if any(c in value for c in ' \t\r\n"`') else value


def as_go_version_m(path: Path, contents: ProgramContents) -> list[str]:
    """What we read, printed as ``go version -m`` prints it (blank lines left out)."""
    lines = [f"{path}: {contents.toolchain}"]
    modules = [("mod", contents.main)] if contents.main else []
    modules += [("dep", p) for p in contents.packages]
    for word, package in modules:
        assert package is not None
        properties = dict(package.properties)
        if word == "mod":
            lines.append(f"\tpath\t{package.name}")
        if "go:replaces" in properties:
            original, _, version = properties["go:replaces"].rpartition("@")
            lines.append(f"\t{word}\t{original}\t{version}")
            word = "=>"
        lines.append(f"\t{word}\t{package.name}\t{package.version}\t{properties.get('go:sum', '')}")
    lines += [f"\tbuild\t{key}={go_quote(value)}" for key, value in contents.settings]
    return lines


def printed(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_the_build_info_is_what_go_version_m_prints() -> None:
    """Main module, every dependency with its version and h1: sum, the replacement, the Go
    version, the build settings (one quoted): line by line as Go's own reader prints them."""
    program = go_program()
    contents = read_program(program.path)
    assert contents.warnings == ()
    assert as_go_version_m(program.path, contents) == printed(program.version_m)
    assert contents.language == "go" and contents.toolchain.startswith("go1.")
    assert dict(contents.settings)["-ldflags"] == gomodules.LDFLAGS


def test_modules_get_purls_and_checksums_as_the_conventions_write_them() -> None:
    program = go_program()
    contents = read_program(program.path)
    assert contents.main is not None
    assert contents.main.purl == "pkg:golang/example.com/hello"  # (devel): no version
    greet, new = contents.packages
    # the name keeps Go's spelling; the purl's namespace and name are lowercased, as its type says
    assert greet.name == "example.com/Upper/Greet"
    assert greet.purl == "pkg:golang/example.com/upper/greet@v1.2.3"
    sum_h1 = dict(greet.properties)["go:sum"]
    assert greet.checksums == {"sha256": h1_to_sha256(sum_h1)} and len(greet.checksums["sha256"]) == 64
    # a replaced module is described by what is compiled in: the replacement
    assert (new.name, new.version, new.purl) == ("example.com/new", "v0.2.0", "pkg:golang/example.com/new@v0.2.0")
    assert dict(new.properties)["go:replaces"] == "example.com/old@v0.1.0"


def zero_section_headers(data: bytearray) -> None:
    data[0x28:0x30] = bytes(8)  # e_shoff
    data[0x3C:0x40] = bytes(4)  # e_shnum, e_shstrndx


def test_without_section_headers_the_data_segment_is_searched(tmp_path: Path) -> None:
    """A program stripped of its section headers: Go looks in the first writable segment, and so do we."""
    program = go_program()
    data = bytearray(program.path.read_bytes())
    zero_section_headers(data)
    stripped = tmp_path / "stripped"
    stripped.write_bytes(data)
    stripped.chmod(0o755)  # go version reads only programs
    version_m = gomodules.go_version_m(stripped)
    contents = read_program(stripped)
    assert as_go_version_m(stripped, contents) == printed(version_m)
    assert len(contents.packages) == 2


def test_a_go_buildinfo_without_bytes_in_the_file_is_not_blamed_for_the_segment(tmp_path: Path) -> None:
    """A ``.go.buildinfo`` of type NOBITS has no bytes to read: the first writable segment is
    searched instead, as without the section; that segment past the end of the file is then no
    build info, not "its .go.buildinfo section lies beyond the end of the file" (before)."""
    data = bytearray(go_program().path.read_bytes())
    header = section_header_offset(bytes(data), ".go.buildinfo")
    data[header + 4 : header + 8] = (8).to_bytes(4, "little")  # sh_type: SHT_NOBITS
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize, phnum = int.from_bytes(data[0x36:0x38], "little"), int.from_bytes(data[0x38:0x3A], "little")
    for at in range(phoff, phoff + phnum * phentsize, phentsize):
        p_type, flags = int.from_bytes(data[at : at + 4], "little"), int.from_bytes(data[at + 4 : at + 8], "little")
        if p_type == 1 and flags & 3 == 2:  # PT_LOAD, writable, not executable
            data[at + 8 : at + 16] = (1 << 40).to_bytes(8, "little")  # p_offset
            break
    else:
        raise AssertionError("no writable segment")
    hostile = tmp_path / "hostile"
    hostile.write_bytes(data)
    assert read_program(hostile) == ProgramContents()
    data[header + 4 : header + 8] = (1).to_bytes(4, "little")  # SHT_PROGBITS again: its bytes are read
    intact = tmp_path / "intact"
    intact.write_bytes(data)
    assert len(read_program(intact).packages) == 2


OLD_MODINFO = (
    b"path\texample.com/old\n"
    b"mod\texample.com/old\t(devel)\t\n"
    b"dep\tgithub.com/Some/Dep\tv1.0.0\th1:hxR6ZOYcT0DnftuWmBCb6iA9Z1A53JrTfZGU0+kkkNU=\n"
    b"dep\texample.com/gone\tv0.1.0\n"
    b"=>\t../local/gone\t\t\n"
    b"build\tCGO_ENABLED=0\n"
)


@pytest.mark.parametrize("compiler", ["cc", "arm-linux-gnueabihf-gcc"], ids=["64-bit", "32-bit-arm"])
def test_the_older_pointer_format_is_read_as_go_reads_it(compiler: str) -> None:
    """Go before 1.18 wrote the header with the addresses of two Go strings: ``go version -m``
    reads them through the segments, and so do we, for 8- and 4-byte pointers."""
    if which("go") is None:
        pytest.skip("Debian's golang-go is not installed")
    path = pointer_format_program(b"go1.16.15", OLD_MODINFO, compiler=compiler)
    contents = read_program(path)
    lines = printed(gomodules.go_version_m(path))
    assert lines[0] == f"{path}: go1.16.15" and contents.toolchain == "go1.16.15"
    assert lines[2:4] == [
        "\tmod\texample.com/old\t(devel)\t",
        "\tdep\tgithub.com/Some/Dep\tv1.0.0\th1:hxR6ZOYcT0DnftuWmBCb6iA9Z1A53JrTfZGU0+kkkNU=",
    ]
    assert lines[4:6] == ["\tdep\texample.com/gone\tv0.1.0", "\t=>\t../local/gone\t\t"]
    assert contents.main is not None and contents.main.name == "example.com/old"
    dep, gone = contents.packages
    assert (dep.name, dep.version, dep.purl) == (
        "github.com/Some/Dep",
        "v1.0.0",
        "pkg:golang/github.com/some/dep@v1.0.0",
    )
    # replaced by a directory: its code is compiled in, of no version
    assert (gone.name, gone.version, dict(gone.properties)) == (
        "example.com/gone",
        "",
        {"go:replaced-by": "../local/gone"},
    )
    assert gone.purl == "pkg:golang/example.com/gone"
    assert contents.settings == (("CGO_ENABLED", "0"),) and contents.warnings == ()


def test_names_are_kept_as_data_whatever_they_hold() -> None:
    """Escape sequences, NULs and invalid UTF-8 in a module path are data: kept (decoded with
    replacement characters), never interpreted, never raising."""
    hostile = b"dep\tevil.com/\x1b[31mred\x00\xff\tv1.0.0\th1:notbase64\n" + b"junk line\n" + b"build\t=novalue\n"
    contents = read_program(pointer_format_program(b"go1.16.15", OLD_MODINFO + hostile))
    evil = contents.packages[-1]
    assert evil.name == "evil.com/\x1b[31mred\x00\ufffd"
    assert evil.purl == "pkg:golang/evil.com/%1B%5B31mred%00%EF%BF%BD@v1.0.0"
    assert evil.checksums == {}  # an h1: that is not one gives no checksum
    assert contents.warnings == ("2 lines of its Go build info are not as Go writes them, and were skipped",)


def test_build_info_claiming_2_gb_is_refused_without_reading_it(tmp_path: Path) -> None:
    """The module info's length is a uvarint: one claiming 2 GB is a warning, read no further."""
    data = bytearray(go_program().path.read_bytes())
    header = data.index(MAGIC)
    version_length = data[header + 32]
    at = header + 33 + version_length  # the module info's length
    data[at : at + 5] = bytes([0x80, 0x80, 0x80, 0x80, 0x08])  # 2**31
    hostile = tmp_path / "hostile"
    hostile.write_bytes(data)
    tracemalloc.start()
    contents = read_program(hostile)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert contents.packages == () and contents.main is None
    assert contents.warnings == (
        f"its Go build info cannot be read: the module info claims {2**31} bytes, "
        f"more than the {MAX_MODINFO} zeroimage reads",
    )
    assert peak < 1 << 20, peak


def test_a_section_past_the_end_of_the_file_is_a_warning(tmp_path: Path) -> None:
    data = bytearray(go_program().path.read_bytes())
    header = section_header_offset(bytes(data), ".go.buildinfo")
    data[header + 24 : header + 32] = (1 << 40).to_bytes(8, "little")  # sh_offset
    hostile = tmp_path / "hostile"
    hostile.write_bytes(data)
    contents = read_program(hostile)
    assert contents.packages == ()
    assert contents.warnings == (
        "its Go build info cannot be read: its .go.buildinfo section lies beyond the end of the file",
    )


def test_pointers_to_nowhere_are_a_warning(tmp_path: Path) -> None:
    data = bytearray(pointer_format_program(b"go1.16.15", OLD_MODINFO).read_bytes())
    header = data.index(MAGIC)
    data[header + 16 : header + 24] = (0xDEAD0000).to_bytes(8, "little")
    hostile = tmp_path / "hostile"
    hostile.write_bytes(data)
    (warning,) = read_program(hostile).warnings
    assert warning.endswith("the Go version's address 0xdead0000 is in no loaded segment")


def test_a_program_cut_anywhere_is_read_or_warned_about_never_an_error(tmp_path: Path) -> None:
    """Cut at 60 places (headers, build info, section headers): contents or a warning each time."""
    data = go_program().path.read_bytes()
    header = data.index(MAGIC)
    cuts = sorted({*range(0, 200, 7), *range(header - 4, header + 600, 23), len(data) - 1, len(data) - 700})
    outcomes = set()
    for cut in cuts:
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        contents = read_program(path)
        outcomes.add((bool(contents.packages), bool(contents.warnings)))
        path.unlink()
    assert (False, True) in outcomes  # warned about, at least once


def test_a_large_program_is_read_in_a_few_kilobytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program with 200 MB after its code (a payload, as some programs carry): what is read
    is the headers and the build info, not the file."""
    big = tmp_path / "big"
    shutil.copyfile(go_program().path, big)
    with open(big, "r+b") as handle:
        handle.truncate(big.stat().st_size + (200 << 20))
    read = []
    real_read_at = files.read_at

    def counting(fd: int, length: int, offset: int) -> bytes:
        chunk = real_read_at(fd, length, offset)
        read.append(len(chunk))
        return chunk

    monkeypatch.setattr(files, "read_at", counting)
    contents = read_program(big)
    assert len(contents.packages) == 2 and contents.warnings == ()
    assert sum(read) < 256 * 1024, sum(read)


def test_programs_that_say_nothing_give_empty_contents(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (Path("/bin/sh"), script, empty):
        assert read_program(path) == ProgramContents()


def test_what_is_not_a_regular_file_is_an_input_error_never_a_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def read() -> None:
        for path in (fifo, tmp_path, tmp_path / "missing"):
            try:
                read_program(path)
            except InputError as exc:
                outcome.append(exc.message)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert outcome == [
        f"program {fifo} is not a regular file",
        f"program {tmp_path} is a directory, not a file",
        f"program {tmp_path / 'missing'} does not exist",
    ]


_WORDS = st.sampled_from(["\t", "\n", "dep", "mod", "=>", "build", "path", "=", '"', "`", "\\", "a", "é", "\x00"])


@given(st.lists(_WORDS, max_size=60).map("".join))
def test_any_module_info_is_parsed_without_raising(text: str) -> None:
    contents = parse_build_info("go1.22.0", text)
    assert contents.language == "go"
    assert all(package.name for package in contents.packages)


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_unquoting_agrees_with_json_on_go_quoted_ascii(value: str) -> None:
    """strconv.Quote of ASCII is a JSON string (\\u escapes aside, which both read alike)."""
    assert go_unquote(json.dumps(value)) == value


@pytest.mark.parametrize(
    "literal, value",
    [
        ('"a\\x41\\101\\u00e9\\U0001F600"', "aAAé\U0001f600"),
        ("`raw \\n`", "raw \\n"),
        ('"unterminated', None),
        ('"bad \\q"', None),
        ('"\\ud800"', None),
        ('"quote " inside"', None),
        ("`back`tick`", None),
    ],
)
def test_go_string_literals(literal: str, value: str | None) -> None:
    assert go_unquote(literal) == value
