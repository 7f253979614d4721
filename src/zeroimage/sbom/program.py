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
import stat
from pathlib import Path

from zeroimage import files
from zeroimage.elf import ElfError, read_layout
from zeroimage.errors import InputError
from zeroimage.sbom import golang, rust
from zeroimage.sbom.model import ProgramContents

_ELF_MAGIC = b"\x7fELF"


def read_program(path: Path) -> ProgramContents:
    """What the program at ``path`` says it was built from. InputError only when the file cannot
    be opened or read, or is not a regular file; whatever its content, the answer is contents
    and warnings."""
    name = os.fspath(path)
    fd = _open(name)
    try:
        size = os.fstat(fd).st_size

        def read_at(offset: int, length: int) -> bytes:
            if offset < 0 or length <= 0 or offset >= size:
                return b""
            try:
                return files.read_at(fd, length, offset)
            except OSError as exc:
                raise InputError(f"program {name} cannot be read: {exc.strerror or exc}") from None

        if read_at(0, 4) != _ELF_MAGIC:
            return ProgramContents()
        try:
            layout = read_layout(read_at, size, name, (golang.SECTION, rust.SECTION))
        except ElfError as exc:
            return ProgramContents(warnings=(f"its headers cannot be read: {exc.why}",))
        go = golang.read_go(read_at, size, layout)
        if go is not None:
            return go
        return rust.read_rust(read_at, size, layout) or ProgramContents()
    finally:
        os.close(fd)


def _open(name: str) -> int:
    """A descriptor of the program (followed through symlinks, as it is added to the image) if
    it is a regular file; never blocking on a FIFO (a host without ``O_NONBLOCK``: looked at first)."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    try:
        if not nonblock and not stat.S_ISREG(os.stat(name).st_mode):
            raise InputError(f"program {name} is not a regular file")
        fd = os.open(name, os.O_RDONLY | nonblock | files.O_BINARY)
    except FileNotFoundError:
        raise InputError(f"program {name} does not exist") from None
    except OSError as exc:
        raise InputError(f"program {name} cannot be opened: {files.describe_os_error(exc, name)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"program {name} is not a regular file")
    return fd
