"""Declared licenses as SPDX 2.3 can carry them: an SPDX license expression when every
identifier in it is one of the common SPDX licenses and exceptions listed here, otherwise a
``LicenseRef-`` of our own whose extracted text is the declaration as written (so a validator
never meets an identifier it does not know, and nothing the package said is lost).
"""

from __future__ import annotations

import hashlib
import re

#: Identifiers of the SPDX license list that packages commonly declare (current, not deprecated).
KNOWN_LICENSES = frozenset(
    [
        "0BSD",
        "AFL-2.1",
        "AFL-3.0",
        "AGPL-3.0-only",
        "AGPL-3.0-or-later",
        "Apache-1.0",
        "Apache-1.1",
        "Apache-2.0",
        "APSL-2.0",
        "Artistic-1.0",
        "Artistic-1.0-Perl",
        "Artistic-2.0",
        "Beerware",
        "BlueOak-1.0.0",
        "BSD-1-Clause",
        "BSD-2-Clause",
        "BSD-2-Clause-Patent",
        "BSD-3-Clause",
        "BSD-3-Clause-Clear",
        "BSD-4-Clause",
        "BSL-1.0",
        "bzip2-1.0.6",
        "CC-BY-3.0",
        "CC-BY-4.0",
        "CC-BY-SA-3.0",
        "CC-BY-SA-4.0",
        "CC0-1.0",
        "CDDL-1.0",
        "CDDL-1.1",
        "curl",
        "EPL-1.0",
        "EPL-2.0",
        "EUPL-1.1",
        "EUPL-1.2",
        "FSFAP",
        "FTL",
        "GFDL-1.2-only",
        "GFDL-1.2-or-later",
        "GFDL-1.3-only",
        "GFDL-1.3-or-later",
        "GPL-1.0-only",
        "GPL-1.0-or-later",
        "GPL-2.0-only",
        "GPL-2.0-or-later",
        "GPL-3.0-only",
        "GPL-3.0-or-later",
        "HPND",
        "ICU",
        "IJG",
        "ISC",
        "LGPL-2.0-only",
        "LGPL-2.0-or-later",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-3.0-only",
        "LGPL-3.0-or-later",
        "Libpng",
        "libtiff",
        "MIT",
        "MIT-0",
        "MPL-1.1",
        "MPL-2.0",
        "MS-PL",
        "NCSA",
        "OFL-1.1",
        "OpenSSL",
        "PHP-3.01",
        "PostgreSQL",
        "PSF-2.0",
        "Python-2.0",
        "Ruby",
        "Sleepycat",
        "TCL",
        "Unicode-DFS-2016",
        "Unicode-3.0",
        "Unlicense",
        "UPL-1.0",
        "Vim",
        "W3C",
        "WTFPL",
        "X11",
        "Zlib",
        "zlib-acknowledgement",
        "ZPL-2.1",
    ]
)
KNOWN_EXCEPTIONS = frozenset(
    [
        "Autoconf-exception-3.0",
        "Bison-exception-2.2",
        "Classpath-exception-2.0",
        "Font-exception-2.0",
        "GCC-exception-2.0",
        "GCC-exception-3.1",
        "Linux-syscall-note",
        "LLVM-exception",
    ]
)
_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+-]+")
_MAX_EXPRESSION = 512
_MAX_DEPTH = 16


def _parse(tokens: list[str]) -> bool:
    """Whether ``tokens`` make ``expr := term ((AND|OR) term)*``, ``term := ( expr ) | ID [WITH EXC]``."""
    position = 0

    def term(depth: int) -> bool:
        nonlocal position
        if position >= len(tokens) or depth > _MAX_DEPTH:
            return False
        token = tokens[position]
        position += 1
        if token == "(":
            if not expression(depth + 1) or position >= len(tokens) or tokens[position] != ")":
                return False
            position += 1
            return True
        if token not in KNOWN_LICENSES:
            return False
        if position < len(tokens) and tokens[position] == "WITH":
            if position + 1 >= len(tokens) or tokens[position + 1] not in KNOWN_EXCEPTIONS:
                return False
            position += 2
        return True

    def expression(depth: int) -> bool:
        nonlocal position
        if not term(depth):
            return False
        while position < len(tokens) and tokens[position] in ("AND", "OR"):
            position += 1
            if not term(depth):
                return False
        return True

    return expression(0) and position == len(tokens)


def spdx_expression(text: str) -> str | None:
    """``text`` as an SPDX license expression (whitespace normalised), when it is one made of
    the identifiers known here; None otherwise."""
    if len(text) > _MAX_EXPRESSION:
        return None
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != "".join(text.split()) or not _parse(tokens):
        return None
    return " ".join(tokens).replace("( ", "(").replace(" )", ")")


def license_ref(text: str) -> str:
    """A ``LicenseRef-`` identifier for a declaration that is not an expression of known
    identifiers: readable where it can be, unique through a hash of the text."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")[:40]
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    return f"LicenseRef-{readable}-{digest}" if readable else f"LicenseRef-{digest}"
