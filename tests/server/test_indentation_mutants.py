"""Tests written for mutmut's survivors in codestral_lsp/context/indentation.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

from codestral_lsp.context.indentation import DEFAULT, HEAD_CHARS, Indentation, detect_indentation as detect

SPACES, TABS = Indentation(True, 4), Indentation(False, 4)


def test_no_indented_line_gives_the_default():
    assert DEFAULT == SPACES
    assert detect("") == detect("x\n") == detect("x\n y\n") == SPACES   # one space says nothing
    assert detect("x\n", Indentation(False, 3)) == Indentation(False, 3)


def test_tabs_against_spaces():
    assert detect("a\n\tb\n\tc\n  d\n") == TABS
    assert detect("a\n\t  b\n  c\n") == Indentation(True, 2)   # a tie: spaces
    assert detect("a\n\tb\n", Indentation(True, 3)) == Indentation(False, 3)  # the default's tab size


def test_the_step_is_the_most_common_growth_from_2_to_8_columns():
    assert detect("a\n  b\n    c\n      d\n") == Indentation(True, 2)
    assert detect("a\n   b\n   c\n      d\n") == Indentation(True, 3)
    assert detect("a\n        b\n") == Indentation(True, 8)
    assert detect("a\n" + " " * 9 + "b\n") == SPACES                          # 9: no step, the default's size
    assert detect("a\n" + " " * 9 + "b\n", Indentation(False, 3)) == Indentation(True, 3)
    assert detect("a\n    b\n\t\tc\n      d\n") == SPACES                      # a tab line leaves the previous width


def test_only_the_head_is_read():
    assert detect("x\n" + "#" * HEAD_CHARS + "\n\tb\n") == SPACES
    assert detect("x\n" + "#" * (HEAD_CHARS - 10) + "\n\tb\n") == TABS
    assert HEAD_CHARS == 1 << 14


def test_the_first_line_counts_and_tab_lines_make_no_step():
    assert detect("\tx\n") == TABS
    assert detect("\t\t\t\t\ta\n  b\n    c\n") == Indentation(True, 2)


def test_the_step_counts_each_growth_and_only_growth():
    assert detect("a\n    b\n      c\n        d\n") == Indentation(True, 2)   # 4 once, 2 twice


def test_an_indented_first_line_grows_from_column_zero():
    assert detect("  a\n") == Indentation(True, 2)
