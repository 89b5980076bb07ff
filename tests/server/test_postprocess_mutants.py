"""Tests written for mutmut's survivors in codestral_lsp/context/postprocess.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

from codestral_lsp.context import completion_mode, parse, postprocess, profile, stop_rule
from codestral_lsp.context.postprocess import unmatched_closers
from codestral_lsp.context.postprocess import _balance, _block_end, _clamp, _code, _cursor, _drop_repeated_tail, _in_string_or_comment, _line_above, _loop_cut, _reindent, _skip_blank_lead

LINES = 'a = 1\nb = "xy"\nc = 2\nd = 3\n'  # the string "xy" is on row 1, columns 4 to 8


def inside(text: str, offset: int, language: str = "python") -> bool:
    return _in_string_or_comment(parse(text, language), text, offset)


def test_a_string_is_found_by_the_cursor_row_and_column_of_a_later_line():
    assert inside(LINES, 12)          # between "x" and "y"
    assert not inside(LINES, 10)      # on the opening quote: not inside
    assert not inside(LINES, 8)       # "b = " before the string
    assert inside('\nb = "xy"\n', 7)  # a document that starts with a newline


def test_a_comment_counts_and_so_does_a_string_two_levels_up():
    assert inside("x = 1  # abc\n", 10)
    assert inside('x = f"{ab}"\n', 8)           # identifier, interpolation, string
    assert not inside('x = f"{ab + c}"\n', 8)   # the string is four levels up: code inside an f-string


def test_multi_stops_before_a_statement_that_starts_with_no_word_after_a_blank_line():
    gen = "if a:\n        b = 1\n\n    # next\n    c = 2"
    assert stop_rule("multi", "def f():\n    \n", 13, "python")(gen) == 20


def test_the_editor_tab_size_with_the_documents_spaces_or_tabs():
    spaces, tabs = "def f():\n    x = 1\n    \n", "def f():\n\tx = 1\n\t\n"
    got = postprocess("if a:\n    b = 1", spaces, 23, "python", "multi", tab_size=4, insert_spaces=None)
    assert (got.text, got.replace_end) == ("if a:\n    b = 1", 23)
    got = postprocess("if a:\n    b = 1", tabs, 17, "python", "multi", tab_size=2)
    assert (got.text, got.replace_end) == ("if a:\n\t\tb = 1", 17)


def test_reindent_edges():
    assert _reindent("a\n  b", 1, False) == "a\n\t\tb"     # tabs of one column
    assert _reindent("  a\n    b", 4, False) == "  a\n\tb"  # the first line is left alone
    assert _reindent("a\n\tb", 2, True) == "a\n  b"         # a tab is tab_size columns


def test_the_overlap_stops_short_of_a_rest_of_line_with_words():
    got = postprocess("b)", "f(a, ) + 1\n", 5, "python", "single")
    assert (got.text, got.replace_end) == ("b)", 6)   # ")" reused, " + 1" kept
    got = postprocess("a, b)", "f(x, b) + c\n", 4, "python", "single")
    assert (got.text, got.replace_end) == ("a, b)", 4)  # "b)" has a word and is not the whole rest
    got = postprocess("b)", "f(a,  )\n", 4, "python", "single")
    assert (got.text, got.replace_end) == ("b)", 4)   # the overlap starts right at the cursor
    got = postprocess("b)", "f(a, )  \n", 5, "python", "single")
    assert (got.text, got.replace_end) == ("b)", 6)   # trailing spaces are not part of it


def test_leading_blank_lines_and_the_cursors_indentation_are_dropped():
    assert _skip_blank_lead("\n\nx = 1\ny = 2\nz = 3", "    ") == "x = 1\ny = 2\nz = 3"
    assert _skip_blank_lead("\n        x", "    ") == "    x"   # deeper than the cursor: the rest kept
    assert _skip_blank_lead("\n  x", "    ") == "x"            # shallower: all of it dropped
    assert _skip_blank_lead("\n    x", "\t") == "x"
    assert _skip_blank_lead("\n  Xy", "    ") == "Xy"
    assert _skip_blank_lead("\n\x0cx = 1", "    ") == "\x0cx = 1"  # only spaces and tabs are indentation
    assert _skip_blank_lead("x\n\ny", "") == "x\n\ny"


def test_the_line_above():
    assert _line_above("x\n", 0) is None                  # the first line has none
    assert _line_above("ab\ncd", 3) == "ab"
    assert _line_above("a\n\nb", 3) == "a"                # blank lines are passed over
    assert _line_above("a" * 5000 + "\nb", 5001) == "a" * 4096  # the last MAX_LINE characters of a long line
    assert _line_above("x:\n" + "\n" * 63 + "b", 66) == "x:"  # 64 lines are looked at, no more
    assert _line_above("x:\n" + "\n" * 64 + "b", 67) is None


def test_multi_stops_at_a_closer_the_document_has():
    rule = stop_rule("multi", "function f() {\n    \n}\n", 19, "javascript")
    assert rule("return 1;\n}\n") == 9   # the closer's line is dropped, from its newline
    assert rule("\n}") == 0
    assert rule("return 1; }") == 10      # code before the closer on its line: cut at the closer


def test_block_end_repeats_of_the_line_below():
    py = profile("python")
    assert _block_end("a\nfoo()\nb", "x = ", "foo()", py) == 1     # a later line that repeats the one below
    assert _block_end("a\nfoo()  \nb", "", "foo()", py) == 1       # its trailing spaces do not count
    assert _block_end("foo()\nbar", "x = ", "x = foo()", py) is None  # the cursor's own line is not a repeat
    assert _block_end("x = 1\n\x0cfoo()\ny", "", "foo()", py) is None  # only spaces and tabs are indentation
    assert _block_end("x = 1\nXy()\nz", "", "y()", py) is None


def test_balance_counts_net_closers_and_quote_parity():
    py = profile("python")
    assert _balance("(a)", py) == (0, 0, 0, 0, 0, 0)
    assert _balance('a)"', py) == (1, 0, 0, 1, 0, 0)
    assert _balance("''", py) == (0, 0, 0, 0, 0, 0)
    assert _balance("'", py) == (0, 0, 0, 0, 1, 0)
    assert _balance("XX]`", py) == (0, 1, 0, 0, 0, 1)


def test_windows_line_breaks_in_the_completion_become_newlines():
    got = postprocess("b\r\nc", "f(a, )\n", 5, "python", "single")
    assert (got.text, got.replace_end) == ("b", 5)   # no "\r" left before the text after the cursor
    got = postprocess("b\r\nc", "f(a, )\n", 5, "python", "multi")
    assert (got.text, got.replace_end) == ("b\nc", 5)


def test_single_line_at_the_start_of_a_line_keeps_its_line_break():
    got = postprocess("x = 1\ny", "a\n    b\n", 2, "python", "single")
    assert (got.text, got.replace_end) == ("x = 1\n", 2)


def test_the_text_after_the_cursor_follows_the_last_of_several_lines():
    got = postprocess("a\nb\nc + (", "f(x, )\n", 5, "python", "multi")
    assert (got.text, got.replace_end) == ("a\nb\nc + (", 5)


def test_a_tail_that_closes_its_own_bracket_is_kept_by_the_languages_comment_rule():
    # "#" is no comment in JavaScript: the "(" is the completion's own, so "  2);" is not a repeat
    got = postprocess("this.#a(1,\n  2);", "let v = \n  2);\n", 8, "javascript", "multi")
    assert (got.text, got.replace_end) == ("this.#a(1,\n  2);", 8)


def test_loops_of_eight_characters_or_more_are_cut():
    assert _loop_cut("abcdefgh" * 3) == 8
    assert _loop_cut("x" + "abcdefgh" * 3) == 9
    assert _loop_cut("abcdefg" * 3) is None


def test_repeated_tail():
    def drop(lines, text, offset=4):
        return _drop_repeated_tail(lines, _cursor(text, offset), "python")
    assert drop(["foo()", "bar"], "x = \nfoo()\nbar\n") == "foo()\nbar"  # the cursor's own line is never a repeat
    assert drop(["a", "b"], "x = \nb\n") == "a"
    assert drop(["f(", ")"], "    \n)\n") == "f(\n)"        # the ")" closes the completion's own "("
    assert drop(["x", "(y)"], "    \n(y)\n") == "x"          # a pair inside the repeated line is not
    assert drop(["  a", "", "b"], "    \nb\n") == "  a"


def test_a_deeper_closing_bracket_below_still_means_an_empty_block():
    assert completion_mode("if (x) {\n    \n    }\n", 13, "javascript") == "multi"
    assert completion_mode("if (x) {\n    \n    y();\n", 13, "javascript") == "single"


def test_the_lines_below_the_cursor():
    assert _cursor("a\nb\n", 0).below == ("b", "")   # the empty line after the last newline counts
    assert _cursor("a\nb", 0).below == ("b",)
    assert _cursor("a\nbc\nd", 1).below == ("bc", "d")
    below = _cursor("x\n" * 40, 0).below
    assert len(below) == 32 and below[-1] == "x"


def test_the_code_of_a_line_without_its_comment():
    assert _code("# a", "#") == ""
    assert _code('x = "a\\"" # c', "#") == 'x = "a\\"" '   # an escaped quote does not end the string
    assert _code('x = "a#b" # c', "#") == 'x = "a#b" '
    assert _code("X = 1 # c", "#") == "X = 1 "
    assert _code("s = 'a' + `b#` // c", "//") == "s = 'a' + `b#` "


def test_offsets_are_clamped_to_the_text_and_brackets_counted_from_the_first_character():
    assert (_clamp("abc", 0), _clamp("abc", -5), _clamp("abc", 9)) == (0, 0, 3)
    assert unmatched_closers(")", "python") == [0]
    assert unmatched_closers("])", "python") == [0, 1]


def test_strings_end_at_the_line_and_escapes_are_skipped_when_counting_brackets():
    assert unmatched_closers('"a\n)', "python") == [3]
    assert unmatched_closers('"a\\"")', "python") == [5]
    assert unmatched_closers('"a\\")")', "python") == [6]


def test_a_string_ends_only_at_its_own_quote_and_a_char_literal_is_skipped_whole():
    assert unmatched_closers('"a)"', "python") == []
    assert unmatched_closers("'a')'", "rust") == [3]        # the literal's closing quote starts nothing
    assert unmatched_closers("x = '(';)", "rust") == [8]


def test_brackets_in_a_line_comment_are_skipped_to_its_end():
    assert unmatched_closers("x # )\n", "python") == []
    assert unmatched_closers("a\nb # )\n)", "python") == [8]
    assert unmatched_closers("x // )", "go") == []


def test_loop_periods_up_to_80_characters():
    piece = "".join(chr(0x100 + i) for i in range(81))   # no shorter period inside
    assert _loop_cut(piece[:80] * 3) == 80
    assert _loop_cut(piece * 3) is None


def test_single_line_stops_at_the_first_newline():
    assert stop_rule("single", "x = ", 4, "python")("1\ny\nz") == 1


def test_reindent_leaves_the_first_line_alone_with_spaces_too():
    assert _reindent("\ta\n\tb", 2, True) == "\ta\n  b"
