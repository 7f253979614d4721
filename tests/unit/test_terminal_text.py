"""Text from outside reaches a terminal shown, never obeyed: every character a terminal could act
on is escaped in what the CLI prints for people, and JSON stays exact JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroimage.cli.text import json_text, printable

ATTACKS = [
    ("\x1b[2K\x1b[1Agotcha", "\\x1b[2K\\x1b[1Agotcha"),  # erase the line, move up: rewrite what was said
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: set the window title, ring the bell
    ("ok\rLogin Succeeded", "ok\\rLogin Succeeded"),  # a carriage return hides what came before
    ("two\nlines", "two\\nlines"),  # a message is one line
    ("nul\0byte\x7f", "nul\\x00byte\\x7f"),
    ("\x9b31mred", "\\x9b31mred"),  # an 8-bit CSI
    ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override shows text in another order
    ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
    ("line\u2028sep", "line\\u2028sep"),
    ("bad\udcffname", "bad\\udcffname"),  # an undecodable file name: no encoding can write it
]


@pytest.mark.parametrize(("raw", "shown"), ATTACKS)
def test_what_a_terminal_could_act_on_is_escaped(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_text_without_controls_is_shown_as_it_is() -> None:
    text = "café 日本 emoji 🐳 tab-free, quotes \"' and backslashes \\x1b"
    assert printable(text) == text


@given(st.text())
def test_nothing_printable_leaves_is_a_control(text: str) -> None:
    shown = printable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in shown)
    shown.encode("utf-8")  # always writable


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_json_stays_exact_json_and_safe(value: object) -> None:
    text = json_text(value)
    assert json.loads(text) == value  # the same value, to any JSON reader
    assert not any(ord(c) < 0x20 and c not in "\n " or 0x7F <= ord(c) <= 0x9F for c in text)
    text.encode("utf-8")


def test_json_keeps_readable_text_readable() -> None:
    assert json_text({"label": "café \x1b[31m\u202e"}) == '{\n  "label": "café \\u001b[31m\\u202e"\n}'
