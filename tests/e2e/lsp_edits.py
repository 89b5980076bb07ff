"""Applying an LSP edit to a document's text (positions in UTF-16 code units, as the server sends them
by default), so end-to-end tests check a suggestion's effect and not only its type."""

from __future__ import annotations

import ast

from lsprotocol import types


def encoding_of(init_result: types.InitializeResult) -> str:
    """The position encoding the server chose (UTF-16 when it says none)."""
    encoding = init_result.capabilities.position_encoding
    return str(getattr(encoding, "value", encoding) or "utf-16")


def width(ch: str, encoding: str = "utf-16") -> int:
    """A character's length in the position encoding's code units."""
    if encoding == "utf-8":
        return len(ch.encode("utf-8", "surrogatepass"))
    return 1 if encoding == "utf-32" or ord(ch) <= 0xFFFF else 2


def offset(text: str, pos: types.Position, encoding: str = "utf-16") -> int:
    """The string index of an LSP position; fails on a position outside the text or inside a character."""
    lines = text.split("\n")
    assert 0 <= pos.line < len(lines), f"line {pos.line} outside a {len(lines)}-line document"
    line, units, column = lines[pos.line], 0, 0
    while units < pos.character:
        assert column < len(line), f"character {pos.character} past the end of line {pos.line}: {line!r}"
        units += width(line[column], encoding)
        column += 1
    assert units == pos.character, f"character {pos.character} splits a character on line {pos.line}"
    return sum(len(s) + 1 for s in lines[:pos.line]) + column


def apply(text: str, rng: types.Range, new_text: str, encoding: str = "utf-16") -> str:
    start, end = offset(text, rng.start, encoding), offset(text, rng.end, encoding)
    assert start <= end, f"range ends before it starts: {rng}"
    return text[:start] + new_text + text[end:]


def assert_parses(source: str) -> None:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        raise AssertionError(f"the edited document does not parse ({exc}):\n{source}") from None


def assert_stays_in_block(insert_text: str, column: int) -> None:
    """A suggestion typed at `column` inside an indented block: it starts with text, and each later
    non-blank line is indented at least as deep (it does not spill out of the block it was asked for).
    For suggestions cut by maxTokens, which need not parse on their own."""
    first, *rest = insert_text.split("\n")
    assert first.strip(), f"the suggestion starts with a blank line: {insert_text!r}"
    for line in rest:
        assert not line.strip() or len(line) - len(line.lstrip(" ")) >= column, \
            f"a line leaves the block: {line!r} in {insert_text!r}"


def assert_tree_parses(source: str, language_id: str) -> None:
    """The edited document parses with the language's tree-sitter grammar: no ERROR or MISSING node."""
    from codestral_lsp.context import parse

    tree = parse(source, language_id)
    assert tree is not None, f"no grammar for {language_id}"
    assert not tree.root_node.has_error, f"the edited {language_id} document does not parse:\n{source}"
