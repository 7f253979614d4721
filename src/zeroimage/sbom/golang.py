"""The build info the Go linker puts in every program: the Go version, the main module, every
module compiled in (with its version and go.sum hash) and the build settings — what
``go version -m`` prints, read as Go's debug/buildinfo reads it.

Where: the ``.go.buildinfo`` section, or without section headers the first writable loaded
segment. What: a 32-byte header, 16-aligned within the first 64 KiB there — the magic
``\\xff Go buildinf:``, the pointer size, flags — then two strings: the version and the module
info. Go 1.18 and later write them inline, each a uvarint length and its bytes (flag 2); older
Go wrote two pointers to Go string headers (address, length) in the data, found through the
loaded segments (flag 1: big-endian). The module info sits between two 16-byte sentinels and is
lines of tab-separated fields: ``path``, ``mod``, ``dep``, ``=>`` (the replacement of the module
before), ``build KEY=VALUE`` (key and value quoted as Go quotes strings when they need it).

Everything is bounded: the strings are read from the file at most :data:`MAX_MODINFO` bytes
each, whatever length they claim; what cannot be read becomes a warning, never an error.
"""

from __future__ import annotations

import base64
import binascii
import struct

from zeroimage.elf import ElfLayout, ReadAt
from zeroimage.sbom import purl
from zeroimage.sbom.model import Package, ProgramContents

SECTION = ".go.buildinfo"
_MAGIC = b"\xff Go buildinf:"
_HEADER = 32
_ALIGN = 16
_WINDOW = 64 * 1024  # where the header is looked for, from the start of the data
_SENTINEL = 16
_FLAG_BIG_ENDIAN, _FLAG_INLINE = 1, 2
#: The largest version string and module info read (real module info: about 150 bytes a module).
MAX_VERSION = 1024
MAX_MODINFO = 4 << 20


class _Unreadable(Exception):
    """Why the build info cannot be read: a warning's text."""


def _uvarint(read_at: ReadAt, offset: int, end: int) -> tuple[int, int]:
    """A uvarint at ``offset`` and the offset after it."""
    raw = read_at(offset, 10)[: max(0, end - offset)]
    value = shift = 0
    for i, byte in enumerate(raw):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset + i + 1
        shift += 7
    raise _Unreadable("a string length is cut short")


def _read(read_at: ReadAt, offset: int, length: int, end: int, what: str) -> bytes:
    if offset + length > end:
        raise _Unreadable(f"the {what} lies beyond the end of the file")
    data = read_at(offset, length)[:length]
    if len(data) != length:
        raise _Unreadable(f"the {what} is cut short")
    return data


def _bounded(length: int, limit: int, what: str) -> int:
    if length > limit:
        raise _Unreadable(f"the {what} claims {length} bytes, more than the {limit} zeroimage reads")
    return length


def _pointer_string(
    read_at: ReadAt, size: int, layout: ElfLayout, address: int, ptr: int, order: str, limit: int, what: str
) -> bytes:
    """A Go string through its header at ``address`` (pre-1.18 build info)."""
    header_at = layout.file_offset(address, 2 * ptr)
    if header_at is None:
        raise _Unreadable(f"the {what}'s address {address:#x} is in no loaded segment")
    fmt = order + ("Q" if ptr == 8 else "I")
    header = _read(read_at, header_at, 2 * ptr, size, f"{what}'s header")
    (data,) = struct.unpack_from(fmt, header, 0)
    (length,) = struct.unpack_from(fmt, header, ptr)
    _bounded(length, limit, what)
    at = layout.file_offset(data, length)
    if at is None:
        raise _Unreadable(f"the {what}'s bytes at {data:#x} are in no loaded segment")
    return _read(read_at, at, length, size, what)


def _find_header(read_at: ReadAt, size: int, start: int) -> tuple[int, bytes] | None:
    """The offset and bytes of the build info header, 16-aligned from ``start`` in its first 64 KiB."""
    window = read_at(start, min(_WINDOW, max(0, size - start)))
    at = 0
    while True:
        found = window.find(_MAGIC, at)
        if found < 0 or len(window) - found < _HEADER:
            return None
        if found % _ALIGN == 0:
            return start + found, window[found : found + _HEADER]
        at = (found + _ALIGN - 1) & ~(_ALIGN - 1)


def raw_build_info(read_at: ReadAt, size: int, layout: ElfLayout) -> tuple[bytes, bytes] | None:
    """The version and module info (sentinels removed) of a Go program, as bytes; None for a
    program that is not Go; _Unreadable when it is, but its build info cannot be read."""
    section = layout.sections.get(SECTION)
    if section is not None and section.in_file:
        if section.offset >= size:
            raise _Unreadable(f"its {SECTION} section lies beyond the end of the file")
        start = section.offset
    else:  # no section, or one without bytes in the file (SHT_NOBITS): where the linker puts data
        segment = layout.data_segment()
        if segment is None or segment.offset >= size:
            return None
        start = segment.offset
    found = _find_header(read_at, size, start)
    if found is None:
        return None
    at, header = found
    ptr, flags = header[14], header[15]
    if flags & _FLAG_INLINE:
        length, at = _uvarint(read_at, at + _HEADER, size)
        version = _read(read_at, at, _bounded(length, MAX_VERSION, "Go version"), size, "Go version")
        length, at = _uvarint(read_at, at + length, size)
        modinfo = _read(read_at, at, _bounded(length, MAX_MODINFO, "module info"), size, "module info")
    else:
        if ptr not in (4, 8):
            raise _Unreadable(f"its pointer size is {ptr}")
        order = ">" if flags & _FLAG_BIG_ENDIAN else "<"
        fmt = order + ("Q" if ptr == 8 else "I")
        (version_at,) = struct.unpack_from(fmt, header, 16)
        (modinfo_at,) = struct.unpack_from(fmt, header, 16 + ptr)
        version = _pointer_string(read_at, size, layout, version_at, ptr, order, MAX_VERSION, "Go version")
        modinfo = _pointer_string(read_at, size, layout, modinfo_at, ptr, order, MAX_MODINFO, "module info")
    if not version:
        return None
    if len(modinfo) >= 2 * _SENTINEL + 1 and modinfo[-_SENTINEL - 1] == ord("\n"):
        modinfo = modinfo[_SENTINEL:-_SENTINEL]
    else:
        modinfo = b""
    return version, modinfo


_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def go_unquote(text: str) -> str | None:
    """A Go string literal (``"…"`` with Go's escapes, or a raw ```…```) unquoted, as
    strconv.Unquote does; None when it is not one."""
    if len(text) >= 2 and text[0] == text[-1] == "`":
        body = text[1:-1]
        return None if "`" in body else body.replace("\r", "")
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    out = bytearray()
    body, i = text[1:-1], 0
    while i < len(body):
        c = body[i]
        if c == '"' or c == "\n":
            return None
        if c != "\\":
            out += c.encode("utf-8", "replace")
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            digits = {"x": 2, "u": 4, "U": 8}[e]
            hex_digits = body[i + 2 : i + 2 + digits]
            if len(hex_digits) != digits or any(h not in "0123456789abcdefABCDEF" for h in hex_digits):
                return None
            value = int(hex_digits, 16)
            if e == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value < 0xE000:
                return None
            else:
                out += chr(value).encode("utf-8")
            i += 2 + digits
        elif e in "01234567":
            octal = body[i + 1 : i + 4]
            if len(octal) != 3 or any(o not in "01234567" for o in octal) or int(octal, 8) > 255:
                return None
            out.append(int(octal, 8))
            i += 4
        else:
            return None
    return out.decode("utf-8", "replace")


def _setting(rest: str) -> tuple[str, str] | None:
    """``KEY=VALUE`` of a ``build`` line, either quoted as Go quotes them."""
    if not rest or rest[0] == "=":
        return None
    if rest[0] in '"`':
        end = _quoted_prefix(rest)
        key = go_unquote(rest[:end]) if end else None
        if key is None or rest[end : end + 1] != "=":
            return None
        raw = rest[end + 1 :]
    else:
        key, eq, raw = rest.partition("=")
        if not eq:
            return None
    value = raw
    if raw[:1] in ('"', "`"):
        unquoted = go_unquote(raw)
        if unquoted is None:
            return None
        value = unquoted
    return key, value


def _quoted_prefix(text: str) -> int:
    """The length of the Go string literal at the start of ``text``, 0 if there is none."""
    quote = text[0]
    i = 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return 0


def h1_to_sha256(checksum: str) -> str:
    """The hex SHA-256 of a go.sum ``h1:`` hash; "" for anything else."""
    if not checksum.startswith("h1:"):
        return ""
    try:
        raw = base64.b64decode(checksum[3:], validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.hex() if len(raw) == 32 else ""


def _module(fields: list[str]) -> tuple[str, str, str]:
    """(path, version, sum) of a ``mod``/``dep``/``=>`` line's fields."""
    fields = fields + ["", "", ""]
    return fields[0], fields[1], fields[2]


def _package(path: str, version: str, checksum: str, replaced: tuple[str, str, str] | None) -> Package:
    properties: list[tuple[str, str]] = []
    if replaced is not None:
        new_path, new_version, new_sum = replaced
        if new_version:  # replaced by another module: that one is compiled in
            properties.append(("go:replaces", f"{path}@{version}" if version else path))
            path, version, checksum = new_path, new_version, new_sum
        else:  # replaced by a directory: its code, of no version
            properties.append(("go:replaced-by", new_path))
            version, checksum = "", ""
    sha256 = h1_to_sha256(checksum)
    if checksum:
        properties.append(("go:sum", checksum))
    return Package(
        name=path,
        version=version,
        ecosystem="golang",
        purl=purl.golang(path, version),
        checksums={"sha256": sha256} if sha256 else {},
        properties=tuple(properties),
    )


def parse_build_info(version: str, modinfo: str) -> ProgramContents:
    """What the build info says, as ``go version -m`` prints it; lines that are not as Go writes
    them are skipped, and counted in one warning."""
    Module = list[tuple[str, str, str] | None]  # the module, and its replacement
    main: Module | None = None
    deps: list[Module] = []
    settings: list[tuple[str, str]] = []
    odd = 0
    last: Module | None = None
    for line in modinfo.split("\n"):
        word, tab, rest = line.partition("\t")
        if not tab:
            odd += bool(line)
            continue
        if word == "path":
            continue
        if word in ("mod", "dep"):
            entry = _module(rest.split("\t"))
            last = [entry, None] if entry[0] and (word == "dep" or main is None) else None
            if last is None:
                odd += 1
            elif word == "mod":
                main = last
            else:
                deps.append(last)
        elif word == "=>" and last is not None and last[1] is None and rest.split("\t")[0]:
            last[1] = _module(rest.split("\t"))
        elif word == "build" and (setting := _setting(rest)) is not None:
            settings.append(setting)
        else:
            odd += 1

    def package(module: Module) -> Package:
        entry, replacement = module
        assert entry is not None
        return _package(*entry, replacement)

    warnings = (f"{odd} lines of its Go build info are not as Go writes them, and were skipped",) if odd else ()
    return ProgramContents(
        language="go",
        toolchain=version,
        main=package(main) if main is not None else None,
        packages=tuple(package(m) for m in deps),
        settings=tuple(settings),
        warnings=warnings,
    )


def read_go(read_at: ReadAt, size: int, layout: ElfLayout) -> ProgramContents | None:
    """What a Go program says it was built from; None for a program that is not Go."""
    try:
        raw = raw_build_info(read_at, size, layout)
    except _Unreadable as why:
        return ProgramContents(language="go", warnings=(f"its Go build info cannot be read: {why}",))
    if raw is None:
        return None
    version, modinfo = raw
    return parse_build_info(version.decode("utf-8", "replace"), modinfo.decode("utf-8", "replace"))
