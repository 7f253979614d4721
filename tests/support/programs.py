"""Programs for tests that need big or odd ones fast: any content behind a real ELF header.

zeroimage reads a program's platform from its ELF header and refuses to guess one for a file
that has none; a test that only needs N bytes of (in)compressible data gets them behind the
header of a static linux/amd64 executable (one PT_LOAD segment, no interpreter, no dynamic
section), which is all the header check looks at.
"""

from __future__ import annotations

import struct

_EHSIZE, _PHENTSIZE = 64, 56


def static_amd64_header() -> bytes:
    """An ELF64 little-endian header of an x86-64 executable with one PT_LOAD program header."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, System V
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # e_type: ET_EXEC
        62,  # e_machine: EM_X86_64
        1,  # e_version
        0x401000,  # e_entry
        _EHSIZE,  # e_phoff: right after this header
        0,  # e_shoff: no section headers
        0,  # e_flags
        _EHSIZE,
        _PHENTSIZE,
        1,  # e_phnum
        64,  # e_shentsize
        0,  # e_shnum
        0,  # e_shstrndx
    )
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 4096, 4096, 4096)  # PT_LOAD, R+X
    return header + load
