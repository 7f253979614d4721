"""What a program file is: its format, and for ELF its architecture and how it is linked.

Only headers are read, with bounded reads at known offsets: inspecting a 2 GB binary costs a
few kilobytes of I/O. Everything read is distrusted: a truncated or lying header is an
InputError, never an IndexError or a read past the end of the file.

For 32-bit ARM the section headers are read too, for the one section that says which
architecture version the code needs (``.ARM.attributes``, ``Tag_CPU_arch``): that is the
``arm/v5`` … ``arm/v8`` variant a container platform names, and without it an ARMv7 program
would be labelled for an ARMv6 board it cannot run on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from zeroimage import files
from zeroimage.errors import InputError
from zeroimage.oci.platform import Platform

__all__ = [
    "ELF_MAGIC",
    "BinaryFormat",
    "BinaryInfo",
    "ElfError",
    "ElfLayout",
    "Section",
    "Segment",
    "inspect_binary",
    "opened",
    "parse_elf",
    "read_layout",
    "runs_as_program",
]

ReadAt = Callable[[int, int], bytes]

#: What a file is: an ELF program, a ``#!`` script, a Mach-O or PE program (foreign to Linux),
#: a 0-byte file, or anything else.
BinaryFormat = Literal["elf", "script", "macho", "pe", "empty", "unknown"]

MAX_PROGRAM_HEADERS = 65535
MAX_STRING = 4096  # longest interpreter path, needed name or rpath read
MAX_DYNAMIC_ENTRIES = 16384  # walking stops there even with no DT_NULL
_STRTAB_READ_WHOLE = 65536  # a string table this small is read in one go
_SHEBANG_MAX = 256  # the kernel reads no more of a #! line (BINPRM_BUF_SIZE)

#: What every ELF file begins with.
ELF_MAGIC = b"\x7fELF"
_ET_NAMES = {1: "a relocatable object file (.o)", 4: "a core dump"}

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29
_DT_VERDEF, _DT_VERDEFNUM, _DT_VERNEED, _DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
_NAMING_TAGS = (_DT_NEEDED, _DT_RPATH, _DT_RUNPATH)
_VER_FLG_BASE = 1
MAX_VERSIONS = 4096  # version needs, and definitions, read from one file

_EM_386, _EM_MIPS, _EM_PPC64, _EM_S390, _EM_ARM = 3, 8, 21, 22, 40
_EM_X86_64, _EM_AARCH64, _EM_RISCV, _EM_LOONGARCH = 62, 183, 243, 258
_EF_MIPS_ABI2 = 0x20  # n32: 64-bit MIPS with 32-bit pointers, no GOARCH

_SHT_ARM_ATTRIBUTES = 0x70000003
MAX_SECTIONS = 65536  # section headers looked through for .ARM.attributes
MAX_ATTRIBUTES = 65536  # bytes of .ARM.attributes read (real ones hold well under 100)
_SECTION_CHUNK = 64  # section headers read at a time
_TAG_FILE, _TAG_CPU_RAW_NAME, _TAG_CPU_NAME, _TAG_CPU_ARCH, _TAG_COMPATIBILITY = 1, 4, 5, 6, 32


def _arm_variant_of(cpu_arch: int) -> str:
    """The OCI variant of an ARM ``Tag_CPU_arch`` value (ARM's ELF ABI addenda, "Build
    Attributes"): pre-v4 … v5TEJ (0-5) run as v5; v6, v6KZ, v6T2, v6K, v6-M, v6S-M (6-9, 11, 12)
    as v6; v7 and v7E-M (10, 13) as v7; v8-A, v8-R, v8-M and every later one (14 on) as v8."""
    if cpu_arch <= 5:
        return "v5"
    if cpu_arch in (10, 13):
        return "v7"
    if cpu_arch <= 12:
        return "v6"
    return "v8"


_MACHO_THIN = {
    b"\xfe\xed\xfa\xce": (">", 32),
    b"\xce\xfa\xed\xfe": ("<", 32),
    b"\xfe\xed\xfa\xcf": (">", 64),
    b"\xcf\xfa\xed\xfe": ("<", 64),
}
_MACHO_FAT = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf", b"\xbe\xba\xfe\xca", b"\xbf\xba\xfe\xca")
_MACHO_CPU = {7: "386", 0x01000007: "amd64", 12: "arm", 0x0100000C: "arm64", 0x01000012: "ppc64"}
_PE_MACHINES = {0x14C: ("386", 32), 0x8664: ("amd64", 64), 0x1C4: ("arm", 32), 0xAA64: ("arm64", 64)}


@dataclass(frozen=True)
class BinaryInfo:
    """What :func:`inspect_binary` learnt from a file's headers."""

    format: BinaryFormat
    architecture: str = ""  # GOARCH name, "" when unknown
    variant: str = ""  # only when the file says so: ARM's v5/v6/v7/v8 from .ARM.attributes
    bits: int = 0
    static: bool = False  # ELF with no PT_INTERP and no DT_NEEDED (static-pie included)
    interpreter: str = ""  # PT_INTERP
    needed: tuple[str, ...] = ()  # DT_NEEDED, in order
    rpath: tuple[str, ...] = ()  # DT_RPATH and DT_RUNPATH entries
    versions_needed: tuple[tuple[str, str], ...] = ()  # (library, version), e.g. ("libc.so.6", "GLIBC_2.34")
    versions_defined: tuple[str, ...] = ()  # a library's own versions, e.g. "GLIBC_2.2.5", ...
    shebang: str = ""  # a script's interpreter: the first word after "#!"

    @property
    def platform(self) -> Platform | None:
        """``linux/<architecture>`` for an ELF file of a known architecture, else None.

        Not normalised: an ARM binary whose ``.ARM.attributes`` name its architecture gives
        ``linux/arm/v5`` … ``linux/arm/v8``; one that does not say gives ``linux/arm``.
        """
        if self.format != "elf" or not self.architecture:
            return None
        return Platform(os="linux", architecture=self.architecture, variant=self.variant)


def _elf_architecture(machine: int, bits: int, little: bool, flags: int) -> str:
    if machine == _EM_X86_64 and bits == 64:
        return "amd64"
    if machine == _EM_386 and bits == 32:
        return "386"
    if machine == _EM_AARCH64 and bits == 64 and little:
        return "arm64"
    if machine == _EM_ARM and bits == 32 and little:
        return "arm"
    if machine == _EM_PPC64 and bits == 64:
        return "ppc64le" if little else "ppc64"
    if machine == _EM_S390 and bits == 64:
        return "s390x"
    if machine == _EM_RISCV and bits == 64:
        return "riscv64"
    if machine == _EM_LOONGARCH and bits == 64:
        return "loong64"
    if machine == _EM_MIPS:
        if bits == 64:
            return "mips64le" if little else "mips64"
        if not flags & _EF_MIPS_ABI2:
            return "mipsle" if little else "mips"
    return ""


class ElfError(InputError):
    """A file whose ELF headers are not valid: the message names the file, ``why`` says alone
    what is wrong with it (for a message that names the file otherwise, or not at all)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name} is not a valid ELF file: {why}")
        self.why = why


class _Reader:
    """Bounded, checked reads of one ELF file."""

    def __init__(self, read_at: ReadAt, size: int, name: str, little: bool) -> None:
        self.read_at = read_at
        self.size = size
        self.name = name
        self.order = "<" if little else ">"

    def fail(self, why: str) -> ElfError:
        return ElfError(self.name, why)

    def read(self, offset: int, length: int, what: str) -> bytes:
        """Exactly ``length`` bytes at ``offset``, which must lie within the file."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.fail(f"{what} lies beyond the end of the file")
        data = self.read_at(offset, length)[:length] if length else b""
        if len(data) != length:
            raise self.fail(f"{what} is truncated")
        return data

    def unpack(self, fmt: str, data: bytes, offset: int = 0) -> tuple[int, ...]:
        return struct.unpack_from(self.order + fmt, data, offset)

    def string(self, offset: int, limit: int, what: str) -> str:
        """A NUL-terminated string of at most ``limit`` bytes (and MAX_STRING) at ``offset``."""
        if limit <= 0:
            raise self.fail(f"{what} is empty")
        if offset >= self.size:
            raise self.fail(f"{what} lies beyond the end of the file")
        length = min(limit, MAX_STRING + 1, self.size - offset)
        raw = self.read(offset, length, what)
        end = raw.find(b"\0")
        if end < 0:
            if length > MAX_STRING:
                raise self.fail(f"{what} is longer than {MAX_STRING} bytes")
            end = len(raw)
        return _decode(raw[:end], what, self)


def _decode(raw: bytes, what: str, reader: _Reader) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise reader.fail(f"{what} is not valid UTF-8") from None


@dataclass(frozen=True)
class Segment:
    """A program header: what the loader maps, from where in the file."""

    type: int
    offset: int
    vaddr: int
    filesz: int
    flags: int = 0  # PF_X 1, PF_W 2, PF_R 4


def _program_headers(r: _Reader, header: bytes, bits: int) -> list[Segment]:
    if bits == 64:
        (phoff,) = r.unpack("Q", header, 32)
        (shoff,) = r.unpack("Q", header, 40)
        entsize, phnum = r.unpack("HH", header, 54)
        shentsize = r.unpack("H", header, 58)[0]
        minimum, layout = 56, "IIQQQQ"
    else:
        (phoff,) = r.unpack("I", header, 28)
        (shoff,) = r.unpack("I", header, 32)
        entsize, phnum = r.unpack("HH", header, 42)
        shentsize = r.unpack("H", header, 46)[0]
        minimum, layout = 32, "IIIIIII"
    if phnum == 0xFFFF:
        # PN_XNUM: the real count is in the first section header's sh_info.
        info_at = 44 if bits == 64 else 28
        if shoff == 0 or shentsize < info_at + 4:
            raise r.fail("too many program headers and no valid section header to count them")
        (phnum,) = r.unpack("I", r.read(shoff + info_at, 4, "section header 0"))
        if phnum > MAX_PROGRAM_HEADERS:
            raise r.fail(f"{phnum} program headers (at most {MAX_PROGRAM_HEADERS})")
    if phnum == 0:
        return []
    if entsize < minimum:
        raise r.fail(f"program header size {entsize} is below {minimum}")
    table = r.read(phoff, phnum * entsize, "the program header table")
    segments = []
    for i in range(phnum):
        fields = r.unpack(layout, table, i * entsize)
        if bits == 64:
            p_type, flags, offset, vaddr, _paddr, filesz = fields
        else:
            p_type, offset, vaddr, _paddr, filesz, _memsz, flags = fields
        segments.append(Segment(p_type, offset, vaddr, filesz, flags))
    return segments


def _mapped(segments: Iterable[Segment], address: int, length: int) -> int | None:
    """The file offset of ``length`` bytes at virtual ``address``, when one loaded segment maps
    them all from the file; None otherwise."""
    for seg in segments:
        if seg.type == _PT_LOAD and seg.vaddr <= address and address + length <= seg.vaddr + seg.filesz:
            return seg.offset + (address - seg.vaddr)
    return None


def _file_offset(r: _Reader, segments: list[Segment], address: int, what: str) -> int:
    """The file offset of a virtual address, through the PT_LOAD segment that maps it."""
    offset = _mapped(segments, address, 1)
    if offset is None:
        raise r.fail(f"{what} address {address:#x} is in no loaded segment")
    return offset


def _dynamic_entries(r: _Reader, seg: Segment, bits: int) -> list[tuple[int, int]]:
    """(tag, value) pairs of PT_DYNAMIC, up to DT_NULL, bounded by segment, file and a cap."""
    entsize = 16 if bits == 64 else 8
    fmt = "qQ" if bits == 64 else "iI"
    if seg.offset + seg.filesz > r.size:
        raise r.fail("the dynamic segment lies beyond the end of the file")
    count = min(seg.filesz // entsize, MAX_DYNAMIC_ENTRIES)
    entries: list[tuple[int, int]] = []
    chunk = 256
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        data = r.read(seg.offset + start * entsize, n * entsize, "the dynamic segment")
        for i in range(n):
            tag, value = r.unpack(fmt, data, i * entsize)
            if tag == _DT_NULL:
                return entries
            entries.append((tag, value))
    return entries


StringAt = Callable[[int, str], str]


def _string_table(r: _Reader, segments: list[Segment], entries: list[tuple[int, int]]) -> StringAt:
    """A reader of strings at offsets in DT_STRTAB (raising when there is none)."""
    strtab = next((value for tag, value in entries if tag == _DT_STRTAB), None)
    if strtab is None:
        raise r.fail("it names libraries but has no string table (DT_STRTAB)")
    strsz = next((value for tag, value in entries if tag == _DT_STRSZ), None)
    base = _file_offset(r, segments, strtab, "the string table (DT_STRTAB)")
    limit = r.size - base if strsz is None else min(strsz, r.size - base)
    if limit <= 0:
        raise r.fail("the string table (DT_STRTAB) lies beyond the end of the file")

    whole = r.read(base, limit, "the string table") if limit <= _STRTAB_READ_WHOLE else None

    def string(offset: int, what: str) -> str:
        if offset >= limit:
            raise r.fail(f"{what} lies outside the string table")
        if whole is None:
            return r.string(base + offset, limit - offset, what)
        end = whole.find(b"\0", offset, offset + MAX_STRING + 1)
        if end < 0:
            if limit - offset > MAX_STRING:
                raise r.fail(f"{what} is longer than {MAX_STRING} bytes")
            end = limit
        return _decode(whole[offset:end], what, r)

    return string


def _dynamic_strings(entries: list[tuple[int, int]], string: StringAt) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DT_NEEDED names and DT_RPATH/DT_RUNPATH entries."""
    needed: list[str] = []
    rpath: list[str] = []
    for tag, value in entries:
        if tag == _DT_NEEDED:
            needed.append(string(value, "a needed library name (DT_NEEDED)"))
        elif tag in (_DT_RPATH, _DT_RUNPATH):
            text = string(value, "a library search path (DT_RPATH/DT_RUNPATH)")
            rpath.extend(p for p in text.split(":") if p)
    return tuple(needed), tuple(rpath)


def _symbol_versions(
    r: _Reader, segments: list[Segment], entries: list[tuple[int, int]], string: StringAt
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Symbol versions (GNU): the (library, version) pairs the file needs (DT_VERNEED, e.g.
    ``("libc.so.6", "GLIBC_2.34")``) and the versions it defines (DT_VERDEF). Both chains are
    walked with their counts and :data:`MAX_VERSIONS` as bounds."""
    tags = dict(entries)
    needs: list[tuple[str, str]] = []
    if _DT_VERNEED in tags:
        offset = _file_offset(r, segments, tags[_DT_VERNEED], "the version needs (DT_VERNEED)")
        for _ in range(min(tags.get(_DT_VERNEEDNUM, MAX_VERSIONS), MAX_VERSIONS)):
            _, count, file_name, aux, following = r.unpack("HHIII", r.read(offset, 16, "a version need"))
            library = string(file_name, "a versioned library name")
            entry = offset + aux
            for _ in range(min(count, MAX_VERSIONS)):
                _, _, _, name, next_aux = r.unpack("IHHII", r.read(entry, 16, "a needed version"))
                needs.append((library, string(name, "a needed version name")))
                if not next_aux:
                    break
                entry += next_aux
            if not following or len(needs) >= MAX_VERSIONS:
                break
            offset += following
    defines: list[str] = []
    if _DT_VERDEF in tags:
        offset = _file_offset(r, segments, tags[_DT_VERDEF], "the version definitions (DT_VERDEF)")
        for _ in range(min(tags.get(_DT_VERDEFNUM, MAX_VERSIONS), MAX_VERSIONS)):
            _, flags, _, count, _, aux, following = r.unpack("HHHHIII", r.read(offset, 20, "a version definition"))
            if count and not flags & _VER_FLG_BASE:  # the base entry is the file's own name
                (name,) = r.unpack("I", r.read(offset + aux, 8, "a version name"))
                defines.append(string(name, "a defined version name"))
            if not following:
                break
            offset += following
    return tuple(needs), tuple(defines)


def _uleb128(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """A ULEB128 number at ``pos`` and the position after it; None when it runs past ``end``
    or over ten bytes (no attribute value is that large)."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def _cpu_arch_attribute(data: bytes, at: int, stop: int) -> int | None:
    """``Tag_CPU_arch`` among the attributes in ``data[at:stop]`` (tag, value pairs), or None.

    A value's type follows from its tag: the CPU names (4, 5) are NUL-terminated strings,
    Tag_compatibility (32) is a number then a string, other tags above 32 are strings when odd
    and numbers when even, and every other tag below 32 is a ULEB128 number."""
    while at < stop:
        attribute = _uleb128(data, at, stop)
        if attribute is None:
            return None
        tag, at = attribute
        if tag == _TAG_CPU_ARCH:
            value = _uleb128(data, at, stop)
            return None if value is None else value[0]
        if tag == _TAG_COMPATIBILITY:
            flag = _uleb128(data, at, stop)
            if flag is None:
                return None
            at = flag[1]
        if tag in (_TAG_CPU_RAW_NAME, _TAG_CPU_NAME, _TAG_COMPATIBILITY) or (tag > 32 and tag & 1):
            nul = data.find(b"\0", at, stop)
            if nul < 0:
                return None
            at = nul + 1
        else:
            number = _uleb128(data, at, stop)
            if number is None:
                return None
            at = number[1]
    return None


def _file_cpu_arch(r: _Reader, data: bytes, pos: int, end: int) -> int | None:
    """``Tag_CPU_arch`` of the file-scope attributes of the "aeabi" subsection in
    ``data[pos:end]``: its parts are a tag (Tag_File, Tag_Section, Tag_Symbol), a uint32 size
    that counts the tag and itself, and the attributes; only Tag_File's speak for the file."""
    while pos < end:
        tag = _uleb128(data, pos, end)
        if tag is None or tag[1] + 4 > end:
            return None
        (size,) = r.unpack("I", data, tag[1])
        body, stop = tag[1] + 4, pos + size
        if stop < body or stop > end:
            return None
        if tag[0] == _TAG_FILE:
            found = _cpu_arch_attribute(data, body, stop)
            if found is not None:
                return found
        pos = stop
    return None


def _arm_attributes(r: _Reader, header: bytes) -> bytes | None:
    """The bytes (at most MAX_ATTRIBUTES) of a 32-bit ELF file's SHT_ARM_ATTRIBUTES section,
    found through the section header table; None when the file has no such section."""
    for _, kind, offset, length in _sections(r, _section_table(r, header, 32), 32):
        if kind == _SHT_ARM_ATTRIBUTES:
            return r.read(offset, min(length, MAX_ATTRIBUTES), "the ARM attributes section")
    return None


def _arm_variant(r: _Reader, header: bytes) -> str:
    """``v5``/``v6``/``v7``/``v8`` from a 32-bit ARM file's ``.ARM.attributes``, "" when it does
    not say. The section starts with format "A", then vendor subsections (a uint32 length
    that counts itself, the vendor's NUL-terminated name, its content)."""
    data = _arm_attributes(r, header)
    if not data or data[0] != ord("A"):
        return ""
    pos = 1
    while pos + 4 <= len(data):
        (length,) = r.unpack("I", data, pos)
        end = min(pos + length, len(data))  # a section cut at MAX_ATTRIBUTES is read as far as it goes
        if length < 4:
            return ""
        nul = data.find(b"\0", pos + 4, end)
        if nul < 0:
            return ""
        if data[pos + 4 : nul] == b"aeabi":
            cpu_arch = _file_cpu_arch(r, data, nul + 1, end)
            return "" if cpu_arch is None else _arm_variant_of(cpu_arch)
        pos = end
    return ""


_SHN_XINDEX = 0xFFFF
_SHT_NOBITS = 8
_PF_X, _PF_W = 1, 2
MAX_SECTION_NAMES = 1 << 20  # bytes of the section name table read


@dataclass(frozen=True)
class Section:
    """A section header: a named part of the file (``.go.buildinfo``, ``.dep-v0`` …)."""

    type: int
    offset: int
    size: int

    @property
    def in_file(self) -> bool:
        """Whether its bytes are in the file (SHT_NOBITS, such as .bss, has none)."""
        return self.type != _SHT_NOBITS


@dataclass(frozen=True)
class ElfLayout:
    """Where the parts of an ELF file are: the sections asked for, by name, and the segments."""

    sections: dict[str, Section]
    segments: tuple[Segment, ...]

    def data_segment(self) -> Segment | None:
        """The first loaded segment that is writable and not executable: where a linker puts
        data when the section headers are gone (Go's debug/buildinfo looks there too)."""
        for seg in self.segments:
            if seg.type == _PT_LOAD and seg.flags & (_PF_X | _PF_W) == _PF_W:
                return seg
        return None

    def file_offset(self, address: int, length: int) -> int | None:
        """The file offset of ``length`` bytes at virtual ``address``, when one loaded segment
        maps them all from the file; None otherwise."""
        return _mapped(self.segments, address, length)


@dataclass(frozen=True)
class _SectionTable:
    """Where the section headers are: offset, entry size, count (at most MAX_SECTIONS), and the
    index of the section name table."""

    offset: int
    entsize: int
    count: int
    names: int


def _section_table(r: _Reader, header: bytes, bits: int) -> _SectionTable:
    """The section header table the ELF header points to, the extended numbering (PN_XNUM's
    cousins) resolved; none (count 0) when there is none."""
    if bits == 64:
        (shoff,) = r.unpack("Q", header, 40)
        shentsize, shnum, shstrndx = r.unpack("HHH", header, 58)
        minimum, count_at, link_at = 64, 32, 40
    else:
        (shoff,) = r.unpack("I", header, 32)
        shentsize, shnum, shstrndx = r.unpack("HHH", header, 46)
        minimum, count_at, link_at = 40, 20, 24
    if shoff == 0:
        return _SectionTable(0, 0, 0, 0)
    if shentsize < minimum:
        raise r.fail(f"section header size {shentsize} is below {minimum}")
    if shnum == 0 or shstrndx == _SHN_XINDEX:  # 65280 sections or more: section 0 holds the numbers
        first = r.read(shoff, minimum, "section header 0")
        if shnum == 0:
            shnum = r.unpack("Q" if bits == 64 else "I", first, count_at)[0]
        if shstrndx == _SHN_XINDEX:
            (shstrndx,) = r.unpack("I", first, link_at)
    return _SectionTable(shoff, shentsize, min(shnum, MAX_SECTIONS), shstrndx)


def _section_at(r: _Reader, data: bytes, at: int, bits: int) -> tuple[int, int, int, int]:
    """(sh_name, sh_type, sh_offset, sh_size) of the section header at ``data[at:]``."""
    if bits == 64:
        name, kind, _flags, _address, offset, size = r.unpack("IIQQQQ", data, at)
    else:
        name, kind, _flags, _address, offset, size = r.unpack("IIIIII", data, at)
    return name, kind, offset, size


def _sections(r: _Reader, table: _SectionTable, bits: int) -> Iterator[tuple[int, int, int, int]]:
    """(sh_name, sh_type, sh_offset, sh_size) of each section header of ``table``, in order, read
    :data:`_SECTION_CHUNK` headers at a time."""
    for start in range(0, table.count, _SECTION_CHUNK):
        count = min(_SECTION_CHUNK, table.count - start)
        chunk = r.read(table.offset + start * table.entsize, count * table.entsize, "the section header table")
        for i in range(count):
            yield _section_at(r, chunk, i * table.entsize, bits)


def _open(read_at: ReadAt, size: int, name: str) -> tuple[_Reader, bytes, int]:
    """The reader of an ELF file, its ELF header, and its class (32 or 64 bits); ElfError when it
    does not begin as ELF files do (magic, class, byte order) or its header is cut short."""
    ident = read_at(0, 16)[:16] if size > 0 else b""
    if len(ident) < 16 or ident[:4] != ELF_MAGIC:
        raise ElfError(name, "it does not start with the ELF magic")
    ei_class, ei_data = ident[4], ident[5]
    if ei_class not in (1, 2):
        raise ElfError(name, f"unknown class {ei_class}")
    if ei_data not in (1, 2):
        raise ElfError(name, f"unknown byte order {ei_data}")
    bits = 64 if ei_class == 2 else 32
    r = _Reader(read_at, size, name, little=ei_data == 1)
    return r, r.read(0, 64 if bits == 64 else 52, "the ELF header"), bits


def read_layout(read_at: ReadAt, size: int, name: str, wanted: Collection[str]) -> ElfLayout:
    """The loaded segments of an ELF file, and those of its sections named in ``wanted`` (the
    first of each name), through bounded reads: at most :data:`MAX_SECTIONS` headers and
    :data:`MAX_SECTION_NAMES` bytes of names. A file without section headers has none.
    ElfError when the headers are truncated or point outside the file."""
    r, header, bits = _open(read_at, size, name)
    segments = tuple(_program_headers(r, header, bits))
    table = _section_table(r, header, bits)
    sections: dict[str, Section] = {}
    if table.count == 0 or not wanted or table.names >= table.count:
        return ElfLayout(sections, segments)
    names_header = r.read(table.offset + table.names * table.entsize, table.entsize, "the section name table's header")
    _, _, names_offset, names_size = _section_at(r, names_header, 0, bits)
    if names_offset >= size:
        raise r.fail("the section name table lies beyond the end of the file")
    names = r.read(names_offset, min(names_size, MAX_SECTION_NAMES, size - names_offset), "the section name table")
    by_name = {w.encode(): w for w in wanted}
    longest = max(map(len, by_name))
    for name_at, kind, offset, length in _sections(r, table, bits):
        end = names.find(b"\0", name_at, name_at + longest + 1)
        found = by_name.get(names[name_at:end]) if end >= 0 else None
        if found is not None and found not in sections:
            sections[found] = Section(kind, offset, length)
    return ElfLayout(sections, segments)


def parse_elf(read_at: ReadAt, size: int, name: str = "the file") -> BinaryInfo:
    """Read an ELF file's headers through ``read_at(offset, length)`` (short reads at EOF).

    ``size`` is the file's size; ``name`` is how error messages call the file.
    InputError when the file is not ELF or its headers are truncated or inconsistent.
    """
    r, header, bits = _open(read_at, size, name)
    e_type, e_machine = r.unpack("HH", header, 16)
    (e_flags,) = r.unpack("I", header, 48 if bits == 64 else 36)
    if e_type in _ET_NAMES:
        raise InputError(f"{name} is {_ET_NAMES[e_type]}, not a program")
    if e_type not in (2, 3):
        raise r.fail(f"unknown ELF type {e_type}")

    segments = _program_headers(r, header, bits)
    interpreter = ""
    interp = next((s for s in segments if s.type == _PT_INTERP), None)
    if interp is not None:
        if interp.offset + interp.filesz > size:
            raise r.fail("the interpreter path (PT_INTERP) lies beyond the end of the file")
        interpreter = r.string(interp.offset, interp.filesz, "the interpreter path (PT_INTERP)")
        if not interpreter:
            raise r.fail("the interpreter path (PT_INTERP) is empty")
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    needs: tuple[tuple[str, str], ...] = ()
    defines: tuple[str, ...] = ()
    dynamic = next((s for s in segments if s.type == _PT_DYNAMIC), None)
    entries = _dynamic_entries(r, dynamic, bits) if dynamic is not None else []
    string = _string_table(r, segments, entries) if any(tag in _NAMING_TAGS for tag, _ in entries) else None
    if string is not None:
        needed, rpath = _dynamic_strings(entries, string)
    if any(tag in (_DT_VERDEF, _DT_VERNEED) for tag, _ in entries):
        with contextlib.suppress(InputError):  # versions only refine a warning: never refuse a file for them
            needs, defines = _symbol_versions(r, segments, entries, string or _string_table(r, segments, entries))
    architecture = _elf_architecture(e_machine, bits, r.order == "<", e_flags)
    variant = ""
    if architecture == "arm":
        with contextlib.suppress(InputError):  # the loader never reads section headers: neither do we refuse them
            variant = _arm_variant(r, header)
    return BinaryInfo(
        format="elf",
        architecture=architecture,
        variant=variant,
        bits=bits,
        static=not interpreter and not needed,
        interpreter=interpreter,
        needed=needed,
        rpath=rpath,
        versions_needed=needs,
        versions_defined=defines,
    )


def _parse_shebang(head: bytes, name: str) -> BinaryInfo:
    line = head[2:_SHEBANG_MAX].split(b"\n", 1)[0]
    words = line.replace(b"\t", b" ").split()
    first = words[0] if words else b""
    try:
        shebang = first.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name} is a script whose #! line is not valid UTF-8") from None
    return BinaryInfo(format="script", shebang=shebang)


def _parse_macho(head: bytes) -> BinaryInfo:
    magic = head[:4]
    if magic in _MACHO_FAT:
        # Java class files share 0xcafebabe; there the next word is a version, 45 or more.
        if magic == b"\xca\xfe\xba\xbe" and len(head) >= 8 and struct.unpack(">I", head[4:8])[0] >= 45:
            return BinaryInfo(format="unknown")
        return BinaryInfo(format="macho")
    order, bits = _MACHO_THIN[magic]
    arch = ""
    if len(head) >= 8:
        arch = _MACHO_CPU.get(struct.unpack(order + "I", head[4:8])[0], "")
    return BinaryInfo(format="macho", architecture=arch, bits=bits)


def _parse_pe(read_at: ReadAt, size: int, head: bytes) -> BinaryInfo:
    """A PE file's machine, when its headers are where they say; "pe" whatever they say."""
    if len(head) >= 0x40:
        (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
        if pe_offset + 6 <= size:
            pe = read_at(pe_offset, 6)
            if len(pe) == 6 and pe[:4] == b"PE\0\0":
                arch, bits = _PE_MACHINES.get(struct.unpack_from("<H", pe, 4)[0], ("", 0))
                return BinaryInfo(format="pe", architecture=arch, bits=bits)
    return BinaryInfo(format="pe")


def runs_as_program(head: bytes) -> bool:
    """Whether a file that begins with ``head`` (4 bytes suffice) is one Linux runs by itself:
    an ELF program or a ``#!`` script. What a file's mode in the image follows where the host
    has no POSIX modes to tell."""
    return head[:4] == ELF_MAGIC or head[:2] == b"#!"


def _identify(read_at: ReadAt, size: int, name: str) -> BinaryInfo:
    if size <= 0:
        return BinaryInfo(format="empty")
    head = read_at(0, _SHEBANG_MAX)[:_SHEBANG_MAX]
    if head[:4] == ELF_MAGIC:
        return parse_elf(read_at, size, name)
    if head[:2] == b"#!":
        return _parse_shebang(head, name)
    if head[:4] in _MACHO_THIN or head[:4] in _MACHO_FAT:
        return _parse_macho(head)
    if head[:2] == b"MZ":
        return _parse_pe(read_at, size, head)
    return BinaryInfo(format="unknown")


def _check_regular(what: str, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {name} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} {name} is not a regular file")


@contextlib.contextmanager
def opened(path: str | os.PathLike[str], what: str) -> Iterator[tuple[ReadAt, int]]:
    """``read_at(offset, length)`` and the size of the regular file at ``path`` (symlinks
    followed), open for the ``with`` block: reads past the end are short, never larger than the
    file. InputError, the file called ``what`` (``"binary"``, ``"program"``), when it is missing,
    not a regular file, or cannot be opened or read."""
    name = os.fspath(path)
    try:
        # Opening a FIFO would wait for a writer: what is not a regular file is refused before it
        # is opened, and O_NONBLOCK (where the host has it: not Windows, which has no FIFOs
        # either) covers one swapped in meanwhile; the descriptor is checked again below.
        _check_regular(what, name, os.stat(name))
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | files.O_BINARY)
    except FileNotFoundError:
        raise InputError(f"{what} {name} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {name} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{what} {name} cannot be read: permission denied") from None
    except OSError as exc:
        raise InputError(f"{what} {name} cannot be opened: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        _check_regular(what, name, st)
        size = st.st_size

        def read_at(offset: int, length: int) -> bytes:
            if offset < 0 or length <= 0 or offset >= size:
                return b""
            try:
                return files.read_at(fd, min(length, size - offset), offset)
            except OSError as exc:
                raise InputError(f"{what} {name} cannot be read: {exc.strerror or exc}") from None

        yield read_at, size
    finally:
        os.close(fd)


def inspect_binary(path: str | os.PathLike[str]) -> BinaryInfo:
    """What the file at ``path`` is. InputError when it is missing, not a file, or unreadable."""
    with opened(path, "binary") as (read_at, size):
        return _identify(read_at, size, f"binary {os.fspath(path)}")
