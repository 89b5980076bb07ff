"""The server's copy of a document equals the editor's after any incremental edits.

The "editor" here is an independent model: the text as a list of LSP lines (split only at \\n, \\r\\n,
\\r) with positions counted in UTF-16 code units by encoding each line to UTF-16-LE.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol.types import Position, Range

from codestral_lsp.lsp.documents import PositionError, TextDocument

ALPHABET = st.sampled_from(list("ab \t(){}:=\n\r") + ["é", "ß", "€", "中", "😀", "𝔘", "\u2028", "\x0c", "\x85"])
TEXT = st.lists(ALPHABET, max_size=40).map("".join)


def editor_lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def editor_offset(text: str, line: int, utf16_col: int) -> int:
    """Independent oracle: walk lines with their break lengths, count UTF-16 units via encode()."""
    pieces = re.split(r"(\r\n|\r|\n)", text)
    offset = 0
    for i in range(line):
        offset += len(pieces[2 * i]) + len(pieces[2 * i + 1])
    current = pieces[2 * line]
    for n in range(len(current) + 1):
        if len(current[:n].encode("utf-16-le")) // 2 >= utf16_col:
            return offset + n
    return offset + len(current)


@st.composite
def edit(draw, text):
    lines = editor_lines(text)
    l1 = draw(st.integers(0, len(lines) - 1))
    l2 = draw(st.integers(l1, len(lines) - 1))
    c1 = draw(st.integers(0, len(lines[l1].encode("utf-16-le")) // 2))
    c2 = draw(st.integers(0, len(lines[l2].encode("utf-16-le")) // 2))
    if l1 == l2 and c2 < c1:
        c1, c2 = c2, c1
    a, b = editor_offset(text, l1, c1), editor_offset(text, l2, c2)
    return Range(Position(l1, c1), Position(l2, c2)), draw(TEXT), a, b


@settings(max_examples=200, deadline=None)
@given(st.data(), TEXT)
def test_incremental_edits_match_the_editor(data, initial):
    doc = TextDocument("file:///t.py", "python", 1, initial)
    editor = initial
    for _ in range(data.draw(st.integers(1, 8))):
        rng, new_text, a, b = data.draw(edit(editor))
        editor = editor[:a] + new_text + editor[b:]
        doc.apply_change(new_text, rng)
        assert doc.text == editor


@settings(max_examples=100, deadline=None)
@given(TEXT)
def test_offsets_and_positions_round_trip(text):
    doc = TextDocument("file:///t.py", "python", 1, text)
    for offset in range(len(text) + 1):
        if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
            continue  # between \r and \n: not a position an editor can express
        pos = doc.position_at(offset)
        assert doc.offset_at(pos) == offset
        assert editor_offset(text, pos.line, pos.character) == offset


def test_utf16_columns_with_astral_characters():
    doc = TextDocument("file:///t.py", "python", 1, "a😀b\nc")
    assert doc.offset_at(Position(0, 3)) == 2  # after the emoji (2 units)
    assert doc.position_at(2) == Position(0, 3)
    assert doc.offset_at(Position(0, 99)) == 3  # past the end of a line: clamped to its end
    assert doc.offset_at(Position(1, 1)) == 5


def test_form_feed_and_line_separator_are_not_line_breaks():
    doc = TextDocument("file:///t.py", "python", 1, "a\x0cb\u2028c\nd")
    assert len(doc.line_starts) == 2
    assert doc.offset_at(Position(1, 0)) == 6


def test_positions_past_the_end_are_errors():
    doc = TextDocument("file:///t.py", "python", 1, "one\ntwo")
    with pytest.raises(PositionError, match="past the end"):
        doc.offset_at(Position(5, 0))


def test_utf8_and_utf32_encodings():
    doc = TextDocument("file:///t.py", "python", 1, "é😀x")
    assert doc.offset_at(Position(0, 2), "utf-8") == 1
    assert doc.offset_at(Position(0, 6), "utf-8") == 2
    assert doc.offset_at(Position(0, 2), "utf-32") == 2
    assert doc.position_at(2, "utf-8") == Position(0, 6)
