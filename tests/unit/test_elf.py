"""Binary inspection: ELF headers (real and hand-made), scripts, Mach-O, PE, and bad input."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroimage import files
from zeroimage.elf import BinaryInfo, _identify, inspect_binary, parse_elf
from zeroimage.errors import InputError
from zeroimage.oci.platform import Platform

BASE = 0x400000


def make_elf(
    *,
    bits: int = 64,
    little: bool = True,
    machine: int = 62,
    e_type: int = 2,
    flags: int = 0,
    interp: bytes | None = None,
    needed: tuple[bytes, ...] = (),
    rpath: bytes | None = None,
    runpath: bytes | None = None,
    dynamic: bool = False,
    strtab_pad: int = 0,
    null_terminated_dynamic: bool = True,
) -> bytes:
    """A minimal ELF file: header, PT_LOAD of everything, optional PT_INTERP and PT_DYNAMIC."""
    o = "<" if little else ">"
    ehsize, phentsize = (64, 56) if bits == 64 else (52, 32)
    dynamic = dynamic or bool(needed) or rpath is not None or runpath is not None
    phnum = 1 + (interp is not None) + dynamic
    phoff = ehsize
    cursor = phoff + phnum * phentsize

    interp_off = cursor
    interp_bytes = (interp + b"\0") if interp is not None else b""
    cursor += len(interp_bytes)

    strtab = bytearray(b"\0" + b"\0" * strtab_pad)
    offsets: dict[bytes, int] = {}
    for s in (*needed, rpath, runpath):
        if s is not None and s not in offsets:
            offsets[s] = len(strtab)
            strtab += s + b"\0"
    strtab_off = cursor
    cursor += len(strtab)

    entries: list[tuple[int, int]] = [(1, offsets[n]) for n in needed]
    if rpath is not None:
        entries.append((15, offsets[rpath]))
    if runpath is not None:
        entries.append((29, offsets[runpath]))
    entries += [(5, BASE + strtab_off), (10, len(strtab))]
    if null_terminated_dynamic:
        entries.append((0, 0))
    dyn_fmt = o + ("qQ" if bits == 64 else "iI")
    dyn = b"".join(struct.pack(dyn_fmt, t, v) for t, v in entries) if dynamic else b""
    dyn_off = cursor
    cursor += len(dyn)
    total = cursor

    def phdr(p_type: int, offset: int, filesz: int) -> bytes:
        if bits == 64:
            return struct.pack(o + "IIQQQQQQ", p_type, 5, offset, BASE + offset, BASE + offset, filesz, filesz, 8)
        return struct.pack(o + "IIIIIIII", p_type, offset, BASE + offset, BASE + offset, filesz, filesz, 5, 4)

    phdrs = phdr(1, 0, total)
    if interp is not None:
        phdrs += phdr(3, interp_off, len(interp_bytes))
    if dynamic:
        phdrs += phdr(2, dyn_off, len(dyn))

    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + b"\0" * 8
    if bits == 64:
        rest = struct.pack(
            o + "HHIQQQIHHHHHH", e_type, machine, 1, BASE, phoff, 0, flags, ehsize, phentsize, phnum, 64, 0, 0
        )
    else:
        rest = struct.pack(
            o + "HHIIIIIHHHHHH", e_type, machine, 1, BASE, phoff, 0, flags, ehsize, phentsize, phnum, 40, 0, 0
        )
    data = ident + rest + phdrs + interp_bytes + bytes(strtab) + dyn
    assert len(data) == total
    return data


def reader(data: bytes) -> Callable[[int, int], bytes]:
    def read_at(offset: int, length: int) -> bytes:
        assert offset >= 0 and length >= 0
        return data[offset : offset + length]

    return read_at


def parse(data: bytes) -> BinaryInfo:
    return parse_elf(reader(data), len(data), "test.bin")


def identify(data: bytes) -> BinaryInfo:
    return _identify(reader(data), len(data), "test.bin")


# --- hand-made headers: architecture mapping ------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "little", "machine", "flags", "arch"),
    [
        (64, True, 62, 0, "amd64"),
        (32, True, 3, 0, "386"),
        (64, True, 183, 0, "arm64"),
        (32, True, 40, 0x05000400, "arm"),
        (64, True, 21, 0, "ppc64le"),
        (64, False, 21, 0, "ppc64"),
        (64, False, 22, 0, "s390x"),
        (64, True, 243, 0, "riscv64"),
        (64, True, 258, 0, "loong64"),
        (32, False, 8, 0, "mips"),
        (32, True, 8, 0, "mipsle"),
        (64, False, 8, 0, "mips64"),
        (64, True, 8, 0, "mips64le"),
        (32, True, 8, 0x20, ""),  # n32
        (32, True, 62, 0, ""),  # x32
        (32, False, 40, 0, ""),  # big-endian ARM
        (64, False, 183, 0, ""),  # big-endian arm64
        (32, False, 22, 0, ""),  # s390 (31-bit)
        (32, True, 243, 0, ""),  # riscv32
        (64, False, 2, 0, ""),  # SPARC
    ],
)
def test_architecture_mapping(bits: int, little: bool, machine: int, flags: int, arch: str) -> None:
    info = parse(make_elf(bits=bits, little=little, machine=machine, flags=flags))
    assert info == BinaryInfo(format="elf", architecture=arch, bits=bits, static=True)
    assert info.platform == (Platform("linux", arch) if arch else None)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("little", [True, False])
def test_dynamic_hand_made(bits: int, little: bool) -> None:
    data = make_elf(
        bits=bits,
        little=little,
        machine=8,
        interp=b"/lib/ld.so.1",
        needed=(b"libm.so.6", b"libc.so.6"),
        rpath=b"$ORIGIN/../lib:/opt/lib",
        runpath=b"/usr/local/lib",
    )
    info = parse(data)
    assert info.interpreter == "/lib/ld.so.1"
    assert info.needed == ("libm.so.6", "libc.so.6")
    assert info.rpath == ("$ORIGIN/../lib", "/opt/lib", "/usr/local/lib")
    assert not info.static
    assert info.bits == bits


def test_static_pie_shape_is_static() -> None:
    info = parse(make_elf(e_type=3, dynamic=True))
    assert info.static and info.needed == () and info.interpreter == ""


def test_needed_without_interpreter_is_not_static() -> None:
    info = parse(make_elf(e_type=3, needed=(b"libc.so.6",)))
    assert not info.static and info.needed == ("libc.so.6",)


def test_large_string_table_is_read_string_by_string() -> None:
    data = make_elf(needed=(b"liba.so", b"libb.so"), strtab_pad=200_000)
    reads: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append(length)
        return data[offset : offset + length]

    info = parse_elf(read_at, len(data))
    assert info.needed == ("liba.so", "libb.so")
    assert max(reads) <= 4097
    assert sum(reads) < 16 * 1024


def test_dynamic_without_null_is_bounded() -> None:
    info = parse(make_elf(needed=(b"libc.so.6",), null_terminated_dynamic=False))
    assert info.needed == ("libc.so.6",)


# --- bad ELF headers ------------------------------------------------------------------------


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def test_bad_headers() -> None:
    good = make_elf(interp=b"/lib/ld.so", needed=(b"libc.so.6",))
    cases = {
        "magic": b"\x7fELX" + good[4:],
        "class": _patch(good, 4, "B", 3),
        "byte order": _patch(good, 5, "B", 0),
        "type": _patch(good, 16, "<H", 0),
        "phoff beyond": _patch(good, 32, "<Q", 1 << 40),
        "phentsize small": _patch(good, 54, "<H", 8),
        "phnum": _patch(good, 56, "<H", 5000),
        "interp offset": _patch(good, 64 + 56 + 8, "<Q", len(good) + 10),
        "interp empty": _patch(good, 64 + 56 + 32, "<Q", 0),
        "dynamic beyond": _patch(good, 64 + 112 + 8, "<Q", len(good) + 1),
        "dynamic too long": _patch(good, 64 + 112 + 32, "<Q", len(good)),
        "interp too long": _patch(good, 64 + 56 + 32, "<Q", len(good)),
        "strtab unmapped": good.replace(struct.pack("<qQ", 5, BASE + 64 + 3 * 56 + 11), struct.pack("<qQ", 5, 0x10)),
        "needed offset": good.replace(struct.pack("<qQ", 1, 1), struct.pack("<qQ", 1, 999)),
        "pn_xnum": _patch(good, 56, "<H", 0xFFFF),
    }
    assert parse(good).needed == ("libc.so.6",)
    for why, data in cases.items():
        assert data != good, why
        with pytest.raises(InputError, match="^test.bin is not a valid ELF file: "):
            parse(data)


def test_non_utf8_names() -> None:
    with pytest.raises(InputError, match="not valid UTF-8"):
        parse(make_elf(needed=(b"lib\xff.so",)))
    with pytest.raises(InputError, match="not valid UTF-8"):
        parse(make_elf(interp=b"/lib/\xc3"))


def test_overlong_string() -> None:
    with pytest.raises(InputError, match="longer than 4096 bytes"):
        parse(make_elf(interp=b"/" + b"a" * 5000))
    with pytest.raises(InputError, match="longer than 4096 bytes"):
        parse(make_elf(needed=(b"l" * 5000,)))


@pytest.mark.parametrize(("e_type", "what"), [(1, "relocatable object"), (4, "core dump")])
def test_not_a_program(e_type: int, what: str) -> None:
    with pytest.raises(InputError, match=f"^test.bin is a {what}"):
        parse(make_elf(e_type=e_type))


# --- real binaries --------------------------------------------------------------------------


def test_bin_ls() -> None:
    info = inspect_binary("/bin/ls")
    assert info.format == "elf"
    assert info.architecture == "amd64" and info.bits == 64
    assert not info.static
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in info.needed
    assert info.platform == Platform("linux", "amd64")


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed")
def test_busybox_static() -> None:
    info = inspect_binary(Path("/bin/busybox"))
    assert info.format == "elf" and info.static
    assert info.interpreter == "" and info.needed == ()
    assert info.architecture == "amd64"


@pytest.fixture(scope="session")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    src = tmp_path_factory.mktemp("cc") / "main.c"
    src.write_text("int main(void) { return 0; }\n")

    def build(*flags: str) -> Path:
        out = src.with_name("a" + str(abs(hash(flags))))
        proc = subprocess.run([gcc, *flags, str(src), "-o", str(out)], capture_output=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"gcc {' '.join(flags)} does not work here")
        return out

    return build


def test_static_pie(cc: Callable[..., Path]) -> None:
    info = inspect_binary(cc("-static-pie"))
    assert info.format == "elf" and info.static and info.needed == ()


def test_rpath_and_runpath(cc: Callable[..., Path]) -> None:
    runpath = inspect_binary(cc("-Wl,-rpath,/opt/a:/opt/b", "-Wl,--enable-new-dtags"))
    assert runpath.rpath == ("/opt/a", "/opt/b")
    rpath = inspect_binary(cc("-Wl,-rpath,$ORIGIN/lib", "-Wl,--disable-new-dtags"))
    assert rpath.rpath == ("$ORIGIN/lib",)


def test_object_file_is_rejected(cc: Callable[..., Path]) -> None:
    obj = cc("-c")
    with pytest.raises(InputError, match="relocatable object"):
        inspect_binary(obj)


def test_32bit(cc: Callable[..., Path]) -> None:
    # Freestanding, so no 32-bit C library is needed: Debian's gcc-multilib, which brings one,
    # cannot be installed beside the ARM cross compilers the tests below use.
    info = inspect_binary(cc("-m32", "-nostdlib", "-static", "-Wl,-e,main"))
    assert info.architecture == "386" and info.bits == 32


@pytest.fixture(scope="session")
def arm64_busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox-static for arm64 from Debian, or a skip when it cannot be had."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb") and shutil.which("dpkg")):
        pytest.skip("needs apt-get and dpkg-deb")
    work = tmp_path_factory.mktemp("arm64")

    def run(*argv: str, timeout: int = 300) -> bool:
        try:
            return subprocess.run(argv, cwd=work, capture_output=True, timeout=timeout).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def download() -> bool:
        return run("apt-get", "download", "busybox-static:arm64", timeout=180)

    if not download():
        if os.geteuid() != 0:
            pytest.skip("busybox-static:arm64 cannot be downloaded (not root to add arm64)")
        if not (run("dpkg", "--add-architecture", "arm64") and run("apt-get", "update") and download()):
            pytest.skip("busybox-static:arm64 cannot be downloaded")
    debs = sorted(work.glob("busybox-static_*_arm64.deb"))
    if not debs or not run("dpkg-deb", "-x", str(debs[0]), "root"):
        pytest.skip("busybox-static:arm64 could not be unpacked")
    binary = work / "root" / "bin" / "busybox"
    if not binary.is_file():
        pytest.skip("busybox-static:arm64 has no /bin/busybox")
    return binary


def test_arm64_busybox(arm64_busybox: Path) -> None:
    info = inspect_binary(arm64_busybox)
    assert info.format == "elf" and info.static
    assert info.architecture == "arm64" and info.bits == 64
    assert info.platform == Platform("linux", "arm64")


# --- ARM variants from .ARM.attributes ---------------------------------------------------------


def arm_attributes(
    cpu_arch: int | None,
    *,
    vendors_before: tuple[bytes, ...] = (b"gnu",),
    scope: int = 1,
    before: bytes = b"\x05" + b"7-A\0" + b"\x04" + b"raw\0" + b"\x20\x00gnu\0" + b"\x41\x06\x0a\0" + b"\x22\x01",
) -> bytes:
    """An .ARM.attributes section: format "A", other vendors' subsections first, then "aeabi"
    with one sub-subsection of ``scope`` (1 = Tag_File) holding ``before`` (attributes of every
    value type: CPU_name, CPU_raw_name, compatibility, also_compatible_with, a numeric one) and
    Tag_CPU_arch, then Tag_CPU_arch_profile 'A'."""

    def subsection(vendor: bytes, content: bytes) -> bytes:
        return struct.pack("<I", 4 + len(vendor) + 1 + len(content)) + vendor + b"\0" + content

    attrs = before + (b"\x06" + bytes([cpu_arch]) if cpu_arch is not None else b"") + b"\x07\x41"
    inner = bytes([scope]) + struct.pack("<I", 5 + len(attrs)) + attrs
    others = b"".join(subsection(v, b"\x01\x05\0\0\0") for v in vendors_before)
    return b"A" + others + subsection(b"aeabi", inner)


def section_tail(start: int, sections: list[tuple[int, bytes]], *, shnum_in_section0: bool = False) -> bytes:
    """What a linker puts at the end of a 32-bit little-endian ELF file from offset ``start``:
    the ``(sh_type, content)`` sections behind a .shstrtab, then the section header table
    (a null section 0 first)."""
    names = b"\0.shstrtab\0.ARM.attributes\0"
    body = bytearray()
    section0_size = len(sections) + 2 if shnum_in_section0 else 0
    headers = [struct.pack("<10I", 0, 0, 0, 0, 0, section0_size, 0, 0, 0, 0)]
    for name, sh_type, content in [(1, 3, names), *((11, t, c) for t, c in sections)]:
        headers.append(struct.pack("<10I", name, sh_type, 0, 0, start + len(body), len(content), 0, 0, 1, 0))
        body += content
    return bytes(body) + b"".join(headers)


def point_at_sections(elf: bytes, shoff: int, shnum: int) -> bytes:
    """``elf``'s header with e_shoff, e_shentsize, e_shnum and e_shstrndx (1) set."""
    return _patch(_patch(elf, 32, "<I", shoff), 46, "<HHH", 40, shnum, 1)


def with_sections(elf: bytes, sections: list[tuple[int, bytes]], *, shnum_in_section0: bool = False) -> bytes:
    tail = section_tail(len(elf), sections, shnum_in_section0=shnum_in_section0)
    shoff = len(elf) + len(tail) - 40 * (len(sections) + 2)
    shnum = 0 if shnum_in_section0 else len(sections) + 2
    return point_at_sections(elf, shoff, shnum) + tail


def arm_elf(attributes: bytes | None, **kwargs: Any) -> bytes:
    elf = make_elf(bits=32, machine=40, flags=0x05000400, interp=b"/lib/ld-linux-armhf.so.3", needed=(b"libc.so.6",))
    return with_sections(elf, [] if attributes is None else [(0x70000003, attributes)], **kwargs)


@pytest.mark.parametrize(
    ("cpu_arch", "variant"),
    [
        *[(n, "v5") for n in range(6)],  # pre-v4, v4, v4T, v5T, v5TE, v5TEJ
        *[(n, "v6") for n in (6, 7, 8, 9, 11, 12)],  # v6, v6KZ, v6T2, v6K, v6-M, v6S-M
        (10, "v7"),
        (13, "v7"),  # v7E-M
        *[(n, "v8") for n in range(14, 24)],  # v8-A, v8-R, v8-M.*, v8.1-A ... v9-A and later
    ],
)
def test_arm_variant_from_tag_cpu_arch(cpu_arch: int, variant: str) -> None:
    info = parse(arm_elf(arm_attributes(cpu_arch)))
    assert info.architecture == "arm" and info.variant == variant
    assert info.platform == Platform("linux", "arm", variant)
    assert info.needed == ("libc.so.6",)  # the rest of the file is read as before


def test_arm_section_count_from_section_zero() -> None:
    assert parse(arm_elf(arm_attributes(10), shnum_in_section0=True)).variant == "v7"


@pytest.mark.parametrize(
    "attributes",
    [
        None,  # no .ARM.attributes section
        arm_attributes(None),  # Tag_File without Tag_CPU_arch
        arm_attributes(10, scope=2),  # Tag_CPU_arch for one section only, not for the file
        arm_attributes(10, vendors_before=()).replace(b"aeabi", b"gnu\0\0"),  # no aeabi subsection
        b"",
        b"B" + arm_attributes(10)[1:],  # unknown format version
        arm_attributes(10)[:-4],  # cut inside the attributes
        arm_attributes(10)[:12],  # cut inside a subsection
        b"A\x02\0\0\0aeabi\0",  # a subsection length below its own size
        b"A\xff\xff\xff\x7faeabi",  # a length far beyond the section, vendor name never ends
        b"A" + struct.pack("<I", 11) + b"aeabi\0\x01\0\0\0\0",  # sub-subsection of size 0
        b"A" + struct.pack("<I", 16) + b"aeabi\0\x01" + struct.pack("<I", 5) + b"\x06\x80\x80",  # endless ULEB128
        b"A" + struct.pack("<I", 16) + b"aeabi\0\x01" + struct.pack("<I", 9) + b"\x05abcd",  # endless name
    ],
)
def test_arm_attributes_that_do_not_say(attributes: bytes | None) -> None:
    info = parse(arm_elf(attributes))
    assert info.architecture == "arm" and info.variant == ""
    assert info.platform == Platform("linux", "arm")


def test_lying_section_headers_give_no_variant_and_no_error() -> None:
    good = arm_elf(arm_attributes(10))
    (shoff,) = struct.unpack_from("<I", good, 32)
    attributes_header = shoff + 2 * 40
    cases = {
        "shoff beyond the end": _patch(good, 32, "<I", len(good) + 100),
        "shentsize too small": _patch(good, 46, "<H", 8),
        "shnum beyond the end": _patch(good, 48, "<H", 5000),
        "section offset beyond the end": _patch(good, attributes_header + 16, "<I", len(good) + 1),
        "section size beyond the end": _patch(good, attributes_header + 20, "<I", 1 << 31),
        "section 0 counts 2**32-1 sections": _patch(_patch(good, 48, "<H", 0), shoff + 20, "<I", 0xFFFFFFFF),
    }
    assert parse(good).variant == "v7"
    for why, data in cases.items():
        info = parse(data)
        assert (info.architecture, info.variant, info.needed) == ("arm", "", ("libc.so.6",)), why


def test_section_headers_are_read_for_arm_only() -> None:
    attributes = [(0x70000003, arm_attributes(10))]
    x86 = with_sections(make_elf(bits=32, machine=3), attributes)
    assert parse(x86) == BinaryInfo(format="elf", architecture="386", bits=32, static=True)


def test_huge_arm_binary_costs_few_kilobytes() -> None:
    """The section header table lies at the end of a 1 GB file: read there, not all the way."""
    size = 1024**3
    elf = make_elf(bits=32, machine=40, interp=b"/lib/ld-linux.so.3", needed=(b"libc.so.6",))
    tail = section_tail(size - 4096, [(0x70000003, arm_attributes(6))])
    head = point_at_sections(elf, size - 4096 + len(tail) - 3 * 40, 3)
    total = 0

    def read_at(offset: int, length: int) -> bytes:
        nonlocal total
        total += length
        data = bytearray(min(length, size - offset))
        for start, chunk in ((0, head), (size - 4096, tail)):
            lo, hi = max(offset, start), min(offset + len(data), start + len(chunk))
            if lo < hi:
                data[lo - offset : hi - offset] = chunk[lo - start : hi - start]
        return bytes(data)

    info = parse_elf(read_at, size)
    assert info.variant == "v6" and info.needed == ("libc.so.6",)
    assert total < 8192


@pytest.fixture(scope="session")
def arm_cc(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, tuple[str, ...]], Path]:
    """Cross-compile a C program for 32-bit ARM, or skip when the compiler is not installed
    (``apt-get install gcc-arm-linux-gnueabi gcc-arm-linux-gnueabihf``)."""
    src = tmp_path_factory.mktemp("arm") / "main.c"
    src.write_text("int main(void) { return 0; }\n")

    def build(compiler: str, flags: tuple[str, ...]) -> Path:
        if shutil.which(compiler) is None:
            pytest.skip(f"{compiler} is not installed")
        out = src.with_name(f"{compiler}{'_'.join(flags)}".replace("=", "_"))
        proc = subprocess.run([compiler, *flags, str(src), "-o", str(out)], capture_output=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"{compiler} {' '.join(flags)} does not work here: {proc.stderr[:200]!r}")
        return out

    return build


@pytest.mark.parametrize(
    ("compiler", "flags", "variant"),
    [
        ("arm-linux-gnueabi-gcc", ("-march=armv5te",), "v5"),
        ("arm-linux-gnueabi-gcc", ("-march=armv6",), "v6"),
        ("arm-linux-gnueabi-gcc", ("-march=armv7-a",), "v7"),
        ("arm-linux-gnueabi-gcc", ("-march=armv8-a",), "v8"),
        ("arm-linux-gnueabihf-gcc", (), "v7"),  # Debian's armhf: ARMv7-A, hard float
        ("arm-linux-gnueabihf-gcc", ("-static",), "v7"),
        # bare code, no C library merged in: the architecture alone decides
        ("arm-linux-gnueabi-gcc", ("-march=armv4t", "-nostdlib", "-static"), "v5"),
        ("arm-linux-gnueabi-gcc", ("-march=armv6-m", "-mthumb", "-nostdlib", "-static"), "v6"),
        ("arm-linux-gnueabi-gcc", ("-march=armv7e-m", "-mthumb", "-nostdlib", "-static"), "v7"),
        ("arm-linux-gnueabi-gcc", ("-march=armv8-m.main", "-mthumb", "-nostdlib", "-static"), "v8"),
    ],
)
def test_arm_variant_of_real_binaries(
    arm_cc: Callable[[str, tuple[str, ...]], Path], compiler: str, flags: tuple[str, ...], variant: str
) -> None:
    info = inspect_binary(arm_cc(compiler, flags))
    assert (info.format, info.architecture, info.bits) == ("elf", "arm", 32)
    assert info.variant == variant
    assert info.platform == Platform("linux", "arm", variant)


# --- reads stay bounded ---------------------------------------------------------------------


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    sizes: list[int] = []
    real = files.read_at

    def read_at(fd: int, length: int, offset: int) -> bytes:
        sizes.append(length)
        return real(fd, length, offset)

    monkeypatch.setattr(files, "read_at", read_at)
    yield sizes


def test_real_binaries_cost_few_reads(count_reads: list[int]) -> None:
    inspect_binary("/bin/ls")
    assert sum(count_reads) < 8192


def test_huge_sparse_binary_costs_few_kilobytes(tmp_path: Path, count_reads: list[int]) -> None:
    big = tmp_path / "big"
    data = make_elf(interp=b"/lib/ld.so", needed=(b"libc.so.6",))
    with open(big, "wb") as f:
        f.write(data)
        f.truncate(2 * 1024**3)
    info = inspect_binary(big)
    assert info.needed == ("libc.so.6",)
    assert sum(count_reads) < 8192


def test_lying_dynamic_size_is_bounded() -> None:
    size = 2 * 1024**3
    data = make_elf(needed=(b"libc.so.6",), null_terminated_dynamic=False)
    # PT_DYNAMIC says it runs to the end of a 2 GB file, never ending (no DT_NULL anywhere).
    (dyn_offset,) = struct.unpack_from("<Q", data, 64 + 56 + 8)
    data = _patch(data, 64 + 56 + 32, "<Q", size - dyn_offset)
    total = 0

    def read_at(offset: int, length: int) -> bytes:
        nonlocal total
        total += length
        chunk = data[offset : offset + length]
        return chunk + b"\x07" * (min(length, size - offset) - len(chunk))

    info = parse_elf(read_at, size)
    assert info.needed == ("libc.so.6",)
    assert total < 512 * 1024


# --- other formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "shebang"),
    [
        (b"#!/bin/sh\necho hi\n", "/bin/sh"),
        (b"#! /usr/bin/env python3\n", "/usr/bin/env"),
        (b"#!\t/bin/bash -e\n", "/bin/bash"),
        (b"#!/bin/sh", "/bin/sh"),
        (b"#!\n", ""),
        (b"#!", ""),
        (b"#!/" + b"x" * 1000, "/" + "x" * 253),
    ],
)
def test_scripts(head: bytes, shebang: str) -> None:
    assert identify(head) == BinaryInfo(format="script", shebang=shebang)


def test_script_with_bad_utf8(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_bytes(b"#!/bin/\xffsh\n")
    with pytest.raises(InputError, match=f"^binary {script} is a script"):
        inspect_binary(script)


@pytest.mark.parametrize(
    ("head", "arch", "bits"),
    [
        (b"\xcf\xfa\xed\xfe" + struct.pack("<I", 0x0100000C), "arm64", 64),
        (b"\xcf\xfa\xed\xfe" + struct.pack("<I", 0x01000007), "amd64", 64),
        (b"\xce\xfa\xed\xfe" + struct.pack("<I", 7), "386", 32),
        (b"\xfe\xed\xfa\xcf" + struct.pack(">I", 0x01000012), "ppc64", 64),
        (b"\xfe\xed\xfa\xce", "", 32),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", "", 0),
        (b"\xca\xfe\xba\xbf\x00\x00\x00\x02", "", 0),
    ],
)
def test_macho(head: bytes, arch: str, bits: int) -> None:
    info = identify(head + b"\0" * 64)
    assert info == BinaryInfo(format="macho", architecture=arch, bits=bits)
    assert info.platform is None


def test_java_class_is_not_macho() -> None:
    assert identify(b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\0" * 64).format == "unknown"


def test_pe() -> None:
    assert identify(b"MZ").format == "pe"
    dos = bytearray(b"MZ" + b"\0" * 0x3E)
    struct.pack_into("<I", dos, 0x3C, 0x40)
    pe = bytes(dos) + b"PE\0\0" + struct.pack("<H", 0x8664) + b"\0" * 32
    assert identify(pe) == BinaryInfo(format="pe", architecture="amd64", bits=64)
    struct.pack_into("<I", dos, 0x3C, 1 << 31)
    assert identify(bytes(dos)) == BinaryInfo(format="pe")


@pytest.mark.parametrize("head", [b"hello", b"\x7fEL", b"\0" * 100, b"PK\x03\x04", b"\n"])
def test_unknown(head: bytes) -> None:
    assert identify(head) == BinaryInfo(format="unknown")


def test_empty_file_is_named_empty(tmp_path: Path) -> None:
    assert identify(b"") == BinaryInfo(format="empty")
    empty = tmp_path / "app"
    empty.touch()
    assert inspect_binary(empty) == BinaryInfo(format="empty")
    assert inspect_binary(empty).platform is None


# --- files that cannot be inspected ---------------------------------------------------------


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"^binary {tmp_path}/nope does not exist$"):
        inspect_binary(tmp_path / "nope")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"^binary {tmp_path} is a directory"):
        inspect_binary(tmp_path)


def test_fifo_and_device_are_not_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        inspect_binary(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        inspect_binary("/dev/null")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"\x7fELF")
    f.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        inspect_binary(f)


@pytest.mark.parametrize("keep", [4, 5, 16, 40, 64, 100, 400, 800, 1000, 4000])
def test_truncated_real_binary(tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut"
    cut.write_bytes(Path("/bin/ls").read_bytes()[:keep])
    with pytest.raises(InputError, match=f"^binary {cut} is not a valid ELF file: "):
        inspect_binary(cut)


def test_garbage_after_magic(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    with pytest.raises(InputError):
        inspect_binary(junk)


# --- properties -----------------------------------------------------------------------------


def _only_input_errors(data: bytes) -> None:
    with contextlib.suppress(InputError):
        parse(data)
    with contextlib.suppress(InputError):
        identify(data)


@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _only_input_errors(data)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_magic(data: bytes) -> None:
    _only_input_errors(b"\x7fELF" + data)


_VALID = [
    make_elf(
        bits=b,
        little=le,
        machine=m,
        interp=b"/lib/ld.so",
        needed=(b"libc.so.6", b"libm.so.6"),
        runpath=b"/a:/b",
    )
    for b, le, m in [(64, True, 62), (32, True, 3), (64, False, 22), (32, False, 8)]
]
_VALID_ARM = arm_elf(arm_attributes(10))


@settings(max_examples=300)
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 500),
)
def test_mutated_headers(good: bytes, mutations: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(good)
    for offset, value in mutations:
        if offset < len(buf):
            buf[offset] = value
    _only_input_errors(bytes(buf))
    _only_input_errors(bytes(buf[: len(buf) - cut]))


@settings(max_examples=400)
@given(st.lists(st.tuples(st.integers(0, len(_VALID_ARM) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_arm_files(mutations: list[tuple[int, int]]) -> None:
    """Mutations anywhere, the section headers and .ARM.attributes included (they lie last)."""
    buf = bytearray(_VALID_ARM)
    for offset, value in mutations:
        buf[offset] = value
    _only_input_errors(bytes(buf))


@settings(max_examples=400)
@given(st.binary(max_size=120), st.binary(max_size=40))
def test_arbitrary_arm_attributes(attributes: bytes, aeabi: bytes) -> None:
    """Any bytes as the section, or as the content of a well-framed "aeabi" subsection: a
    variant or none, never an error (the rest of the file is sound)."""
    framed = b"A" + struct.pack("<I", 10 + len(aeabi)) + b"aeabi\0" + aeabi
    for section in (attributes, b"A" + attributes, framed):
        info = parse(arm_elf(section))
        assert info.variant in ("", "v5", "v6", "v7", "v8")
        assert info.needed == ("libc.so.6",)


def _readelf_versions(path: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(library, version) needs and defined versions, as binutils' readelf -V prints them."""
    text = subprocess.run(["readelf", "-V", "-W", path], capture_output=True, text=True, check=True).stdout
    needs: set[tuple[str, str]] = set()
    defines: set[str] = set()
    section, library = "", ""
    for line in text.splitlines():
        if "section '.gnu.version_r'" in line or "section '.gnu.version_d'" in line:
            section = line.split("'")[1]
        elif section == ".gnu.version_r" and "File:" in line:
            library = line.split("File:")[1].split()[0]
        elif section == ".gnu.version_r" and "Name:" in line:
            needs.add((library, line.split("Name:")[1].split()[0]))
        elif section == ".gnu.version_d" and "Name:" in line and "Flags: BASE" not in line:
            defines.add(line.split("Name:")[1].split()[0])
    return needs, defines


@pytest.mark.parametrize(
    "path", ["/bin/ls", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libselinux.so.1"]
)
def test_symbol_versions_match_readelf(path: str) -> None:
    if shutil.which("readelf") is None or not os.path.exists(path):
        pytest.skip("needs binutils and the host's library")
    info = inspect_binary(path)
    needs, defines = _readelf_versions(path)
    assert set(info.versions_needed) == needs and set(info.versions_defined) == defines
    assert needs or defines
