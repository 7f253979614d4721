"""What a program says it was built from, read from the program itself: Go's build info, the
crate list of ``cargo auditable``. Only the ELF headers and the sections that hold them are
read, through bounded reads at known offsets: a 2 GB program costs a few kilobytes of I/O.
A program that says nothing (C, Zig, a script, a program not for Linux) gives empty contents;
one whose headers or sections cannot be read gives a warning, never an error. Warnings speak of
"its" headers or sections, never of the host's path: the caller names the program (the SBOM by
its path in the image, which the same binary anywhere on the host shares).
"""

from __future__ import annotations

import os
from pathlib import Path

from zeroimage.elf import ELF_MAGIC, ElfError, opened, read_layout
from zeroimage.sbom import golang, rust
from zeroimage.sbom.model import ProgramContents


def read_program(path: Path) -> ProgramContents:
    """What the program at ``path`` says it was built from. InputError only when the file cannot
    be opened or read, or is not a regular file; whatever its content, the answer is contents
    and warnings."""
    with opened(path, "program") as (read_at, size):
        if read_at(0, 4) != ELF_MAGIC:
            return ProgramContents()
        try:
            layout = read_layout(read_at, size, os.fspath(path), (golang.SECTION, rust.SECTION))
        except ElfError as exc:
            return ProgramContents(warnings=(f"its headers cannot be read: {exc.why}",))
        go = golang.read_go(read_at, size, layout)
        if go is not None:
            return go
        return rust.read_rust(read_at, size, layout) or ProgramContents()
