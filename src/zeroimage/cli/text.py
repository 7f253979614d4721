"""What the CLI writes: text for people shows outside text, never runs it; JSON stays exact JSON.

Much of what zeroimage prints came from outside — a registry's error message, an image's labels,
annotations, environment and history, a tag, a file name in an archive, a credential helper's or
Docker daemon's complaint. Written raw, an escape sequence in it would drive the terminal: move
the cursor, rewrite the line above (a fake "Login Succeeded"), set the window title, ring the
bell, or hide text behind a carriage return; a Unicode direction override would show it in
another order than it is. :func:`printable` escapes every such character, visibly and
unambiguously, as Python writes them (``\\x1b``, ``\\r``, ``\\u202e``): what is printed is what
was there.

JSON is for programs and is written exact: :func:`json_text` keeps every value, writing the
characters a terminal could act on (C1 controls, direction marks, line separators) and lone
surrogates (which no encoding can write) as JSON escapes, which mean the same characters to any
JSON reader.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: C0 controls (newline and tab among them: a message is one line), DEL, C1 controls (0x9b is a
#: CSI on terminals that take 8-bit controls), direction marks, embeddings, overrides and
#: isolates, the line and paragraph separators, and lone surrogates (undecodable file names).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What json.dumps(ensure_ascii=False) leaves raw that a terminal could act on (it escapes C0).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on written as an escape."""
    return _UNSAFE.sub(_escaped, text)


def json_text(value: Any) -> str:
    """``value`` as indented JSON, non-ASCII kept readable, nothing a terminal could act on."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
