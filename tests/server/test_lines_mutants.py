"""Tests written for mutmut's survivors in codestral_lsp/context/lines.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest

from codestral_lsp.context import parse, profile
from codestral_lsp.context.lines import LineRanker, indent_end, leading, line_end, line_start, starts_statement, width

SRC = "def f():\n    x = 1\n    y = (1,\n         2)\n    return y\n"  # lines start at 0, 9, 19, 31, 43


def test_line_arithmetic_at_the_edges():
    assert (line_start("ab\ncd", 0), line_start("\nx", 0), line_start("\nx", 1)) == (0, 0, 1)
    assert (line_end("ab", 1), line_end("a\n", 1), line_end("ab\n", 3), line_end("\nx", 0)) == (2, 1, 3, 0)
    assert (width("\t", 2), width("\t"), width(" \t"), width("  "), width(" \t", 8)) == (2, 4, 4, 2, 8)
    assert (leading("  \tx "), leading("\x0cx"), leading("   ")) == ("  \t", "", "   ")
    assert (indent_end("  x", 0), indent_end("a \tb", 1), indent_end("ab", 2)) == (2, 3, 2)


def test_ranks_without_a_tree():
    text = "x\n\n  }\n  y\r\n\r\nz"
    ranker = LineRanker(text, language=profile("c"))
    got = [ranker.rank(p) for p in (0, 2, 3, 7, 12, 14, len(text))]
    assert got == [(0, 0), (2, 0), (1, 2), (0, 2), (2, 0), (0, 0), (2, 0)]
    assert LineRanker(text).rank(3) == (1, 2)   # the default language knows closing brackets too


@pytest.mark.parametrize("anchor", [0, 31, len(SRC)])
def test_ranks_and_rows_with_a_tree_from_any_anchor(anchor):
    ranker = LineRanker(SRC, parse(SRC, "python"), anchor, profile("python"))
    starts = (0, 9, 19, 31, 43, len(SRC))
    assert [ranker.row(p) for p in starts] == [0, 1, 2, 3, 4, 5]
    assert [ranker.rank(p) for p in starts] == [(0, 0), (0, 4), (0, 4), (1, 9), (0, 4), (2, 0)]


def test_starts_statement():
    root, containers = parse(SRC, "python").root_node, profile("python").containers
    assert starts_statement(root, 2, 4, containers)
    assert not starts_statement(root, 3, 9, containers)   # inside the tuple
    assert not starts_statement(root, 1, 5, containers)   # mid-statement
    assert starts_statement(root, 0, 0, frozenset())      # the root itself


def test_rows_of_a_text_that_starts_with_a_newline():
    ranker = LineRanker("\nx\ny", anchor=2)
    assert (ranker.row(4), ranker.row(0), ranker.row(2)) == (2, 0, 1)


def test_a_line_starting_with_a_letter_is_a_statement_start():
    assert LineRanker("X = 1\n").rank(0) == (0, 0)
