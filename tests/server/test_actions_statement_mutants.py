"""Tests written for mutmut's survivors in codestral_lsp/context/actions.py (docs/DEVELOPMENT.md, "Mutation testing"): statement boundaries and fixes (statement_stop and its _statement_end and _back_at, block_stop, _statements, enclosing_statement, nodes_in_rows, parses_after, longest_parsing, fix_note, commented, Points)."""

from __future__ import annotations

import pytest

from codestral_lsp.context import actions, parse
from codestral_lsp.context.actions import (
    Points, _back_at, _statements, block_stop, commented, enclosing_statement, fix_note, longest_parsing,
    nodes_in_rows, parses_after, statement_stop,
)
from codestral_lsp.context.languages import profile


# -- statement_stop / _statement_end -----------------------------------------------------------------

@pytest.mark.parametrize("depth, language, gen, lines, stop", [
    (0, "python", "x = 1\n", 1, 5),                   # one whole line: ends at its line break (not the cut)
    (0, "python", "x = [(1),\n2]\ny\n", 1, 12),       # "[(" then ")": still one bracket open after line 1
    (0, "python", "x = [\n1]\n", 1, 8),               # a closer back at `depth` is no body line
    (0, "python", "  x = 1\n", 1, 7),                 # the first line, however indented, is no body
    (0, "python", "x = 1\n\ny = 2\n", 2, 12),          # blank lines of a selection do not count
    (0, "python", "# a\nx = 1\ny = 2\n", 2, 9),        # its comment lines do
    (0, "python", "if x:\n    y\n    # c\nz\n", 1, 11),   # a comment inside the body does not count
    (0, "python", "if x:  # c\n    y\nz\n", 1, 16),    # the block opener is seen before a trailing comment
    (0, "python", "for x in y:\n    f(x)\n    g(x)\nz\n", 1, 29),  # the whole body, not its first line
    (0, "python", "for x in y:\n    f(x)\nz", 1, 20),   # the line being written is back at depth
    (0, "python", "for x in y:\n    f(x)\n", 1, None),  # nothing after the body yet: wait
    (0, "python", "if x:\n    y\nelse:\nw", 1, None),   # `else:` reset what was pending
    (0, "go", "x := 1 }", 1, 7),                      # block_stop's cut, when no line ended
    (0, "go", "x := 1 }\ny := 2\n", 1, 7),            # the cut text is what is read, not all of gen
    (0, "go", "x := 1 // (\ny := 2\n", 1, 11),         # brackets in Go's comments do not count
    (0, "go", "x := 1 // }\n", 1, 11),                # nor closers (block_stop's)
    (0, "go", "x := 1 // {\ny\n", 1, 11),             # nor a block opener
])
def test_statement_stop(depth, language, gen, lines, stop):
    assert statement_stop(depth, language, lines)(gen) == stop


@pytest.mark.parametrize("line, depth, language, back", [
    ("z", 0, "python", True), ("}", 0, "go", False), (") + 1", 0, "python", False),
    ("x}", 0, "go", True),                  # only the first character may be a closer
    ("    x", 0, "go", False),              # deeper: still the body
    ("else:", 0, "python", False), ("  else", 4, "python", False), ("  y", 4, "python", True),
])
def test_back_at(line, depth, language, back):
    assert _back_at(line, depth, profile(language)) is back


# -- block_stop --------------------------------------------------------------------------------------

@pytest.mark.parametrize("gen, language, stop", [
    ("a\nb)", "python", 2),                  # at the start of the closer's line
    ("a\nb)\nc\n", "python", 2),             # the line break before the closer, not after
    ("a\nb\nc)", "python", 4),               # the last one before it
    ("\n  )", "python", 1),                  # a line break at 0 counts
    ("x := 1 // }\n", "go", None),           # Go's comments are not read for closers
    ("x) # )\n", "python", 1),               # one line: at the closer itself
    ("return x\n}\nfunc g() {", "go", 9),
])
def test_block_stop(gen, language, stop):
    assert block_stop(0, language)(gen) == stop


# -- _statements, nodes_in_rows, enclosing_statement -------------------------------------------------

def test_gos_statement_list_is_flattened():
    text = "func f() {\n\ta := 1\n\tb := 2\n}\n"
    body = parse(text, "go").root_node.named_children[0].child_by_field_name("body")
    assert [c.type for c in body.named_children] == ["statement_list"]
    assert [c.text for c in _statements(body)] == [b"a := 1", b"b := 2"]


@pytest.mark.parametrize("text, language, types", [
    # a child that ends at column 1 of the first row still overlaps it
    ("x = (1,\n)\ny = 2\n", "python", ["module", "expression_statement", "assignment", "tuple", ")"]),
    ("func f() {\n}\n", "go", ["source_file", "function_declaration", "block", "}"]),
])
def test_nodes_in_rows_keep_a_child_ending_at_column_one(text, language, types):
    assert [n.type for n in nodes_in_rows(parse(text, language).root_node, 1, 1)] == types


def test_no_statement_between_two():
    text = "x = 1\n\ny = 2\n"
    assert enclosing_statement(parse(text, "python"), Points(text), 6, 6, "python") is None
    assert enclosing_statement(parse(text, "python"), Points(text), 7, 8, "python") == (7, 12)


# -- parses_after, longest_parsing -------------------------------------------------------------------

def test_parses_after():
    assert parses_after("x", 0, 0, "y(", "cobol") is True          # no grammar: nothing to check
    broken = "x = 1\ny = (\n"
    # an old error right after the new text is not the new text's
    assert parses_after(broken, 0, 0, "z = 2\n", "python") is True
    assert parses_after(broken, 0, 0, "z = (\n", "python") is False
    text = "def f():\n    pass\n"
    assert parses_after(text, 9, 17, "    return 1", "python") is True   # in place, not appended


def test_the_tree_given_is_parsed_from_incrementally(monkeypatch):
    olds = []

    def spy(parser, source, old=None):
        olds.append(old)
        return parse_source(parser, source, old)

    parse_source = actions.parse_source
    monkeypatch.setattr(actions, "parse_source", spy)
    text = "def f():\n    pass\n"
    tree = parse(text, "python")
    assert parses_after(text, 9, 17, "    return 1", "python", tree) is True
    assert longest_parsing(text, 9, 17, lambda h: h, "    return 1", "python", tree) == "    return 1"
    assert parses_after(text, 9, 17, "    return 1", "python") is True
    assert [old is not None for old in olds] == [True, True, False]
    assert olds[0] is not tree                                     # a copy is edited, not the caller's


@pytest.mark.parametrize("generated, new", [
    ("y = 2\n(\n(\n(\n(\n(\n(\n", ""),        # 7 lines: six tries, so the first line alone is not tried
    ("y = 2\n(\n(\n(\n(\n(\n", "y = 2\n"),    # 6 lines: it is
    ("y = 2\n(", "y = 2\n"),                 # every length is tried, one line less each time
    ("y = 2\n\n\n", "y = 2"),                # the trailing line breaks go
    ("y = 1\nz = 2", "y = 1\nz = 2"),        # lines keep their breaks
    ("  y = 1", "  y = 1"),                  # leading indentation stays
])
def test_longest_parsing(generated, new):
    assert longest_parsing("x = 1\n", 6, 6, lambda head: head, generated, "python") == new


def test_longest_parsing_edits_in_place():
    text = "def f():\n    pass\n"
    assert longest_parsing(text, 9, 17, lambda h: h, "    return 1", "python") == "    return 1"
    # "**k" parses only where it goes, as the argument (appended at the end, it would not)
    assert longest_parsing("f(x)\n", 2, 3, lambda h: h, "**k", "python") == "**k"


# -- commented, fix_note -----------------------------------------------------------------------------

@pytest.mark.parametrize("generated, out", [
    ("  x\n\n\n", "#   x"),                    # leading indentation kept, trailing blank lines dropped
    ("x\n  y", "# x\n#   y"),
])
def test_commented(generated, out):
    assert commented(generated, "", "python") == out


@pytest.mark.parametrize("text, start, message, note", [
    ("x = 1\r\ny = z\r\n", 7, "m", (5, "  # FIX: m")),    # at the end of the line above, before its "\r\n"
    ("x = 1\ny = z\n", 6, "m", (5, "  # FIX: m")),
    ("\ny = z\n", 1, "m", (1, "# FIX: m\n")),               # the line above is empty
    ("\r\ny = z\n", 2, "m", (2, "# FIX: m\n")),
    ("y\n", 0, "a" * 250, (0, "# FIX: " + "a" * 200 + "\n")),  # at most 200 characters of the message
])
def test_fix_note(text, start, message, note):
    assert fix_note(text, Points(text), start, message, "python") == note


# -- Points ------------------------------------------------------------------------------------------

def test_points():
    starts = [0, 2]
    assert Points("a\nb", starts).starts is starts        # a document's row starts are used as they are
    assert Points("é = 1").offset((0, 2)) == 1           # byte column 2 is after the two bytes of "é"
    assert Points("a\né = 1").offset((1, 2)) == 3
    assert Points("a\nb").offset((1, 0)) == 2 and Points("a\nb").offset((5, 0)) == 2   # rows past the end: the last
    assert Points("é = 1").point(1) == (0, 2) and Points("a\nb").point(3) == (1, 1)
