"""Each stop rule of context/postprocess.py next to the case it must not cut: a rule that stops too
early hides good suggestions, so every exception is pinned by a completion that goes on past it, beside
the nearest completion that the rule does stop."""

from __future__ import annotations

from codestral_lsp.context.postprocess import stop_rule

PY_BODY = "def f(x):\n    \n"          # the cursor in an empty body (offset 14, after the indentation)
PY_CURSOR = PY_BODY.index("\n    \n") + 5


def multi(gen: str, text: str = PY_BODY, offset: int = PY_CURSOR, language: str = "python"):
    return stop_rule("multi", text, offset, language)(gen)


def single(gen: str, text: str, offset: int, language: str = "python"):
    return stop_rule("single", text, offset, language)(gen)


# -- single line -------------------------------------------------------------------------------------------

def test_single_stops_at_the_first_line_break():
    assert single("1\ny", "x = ", 4) == 1
    assert single("\n1", "x = ", 4) == 0  # after text on the line, a line break ends it at once


def test_single_skips_up_to_two_blank_lines_when_the_line_is_blank_to_the_cursor():
    gen = "\nreturn 1\nx"
    assert single(gen, PY_BODY, PY_CURSOR) == gen.index("\nx")  # not 0: the blank line is skipped
    gen = "\n\nreturn 1\nx"
    assert single(gen, PY_BODY, PY_CURSOR) == gen.index("\nx")
    assert single("\n\n\nreturn 1\nx", PY_BODY, PY_CURSOR) == 0  # a third blank line: nothing to show


def test_single_keeps_the_line_break_when_it_opens_a_line_above_text():
    text = "a = 1\n    b()\n"
    at_line_start = text.index("    b()")
    assert single("x = 2\nfoo", text, at_line_start) == len("x = 2\n")
    assert single("x = 2\nfoo", "a = 1\n", len("a = 1\n")) == len("x = 2")  # nothing after: no line break


# -- multi line: the end of the block ----------------------------------------------------------------------

def test_multi_stops_at_a_line_indented_less_than_the_first():
    gen = "y = x\nz = 1"
    assert multi(gen) == gen.index("\nz")


def test_multi_stops_at_a_new_statement_after_a_blank_line_once_it_went_deeper():
    gen = "if x:\n        return 1\n\n    y = 2"
    assert multi(gen) == gen.index("\n    y")


def test_multi_goes_on_at_else_elif_except_finally_after_a_blank_line():
    for gen in ("if x:\n        return 1\n\n    else:\n        return 2",
                "if x:\n        return 1\n\n    elif y:\n        return 2",
                "try:\n        g()\n\n    except ValueError:\n        pass",
                "try:\n        g()\n\n    finally:\n        h()"):
        assert multi(gen) is None, gen


def test_multi_goes_on_at_the_same_level_without_a_blank_line():
    assert multi("if x:\n        return 1\n    y = 2") is None


def test_multi_goes_on_after_a_blank_line_when_it_never_went_deeper():
    assert multi("y = x\n\n    z = 2") is None


# -- multi line: a line that repeats the document ----------------------------------------------------------

def test_multi_stops_before_repeating_the_line_below_the_cursor():
    text = "def f(x):\n    \n    return x\n"
    gen = "y = x * 2\n    return x\n"
    assert multi(gen, text, PY_CURSOR) == gen.index("\n    return x")


def test_multi_does_not_take_a_one_word_line_below_for_a_repeat():
    text = "def f(x):\n    \n    pass\n"  # "pass", "}", "end": too common to mean the completion repeats
    assert multi("y = 1\n    pass\n    z = 2", text, PY_CURSOR) is None


def test_multi_waits_while_the_repeating_line_is_still_being_written():
    text = "def f(x):\n    \n    return x\n"
    assert multi("y = x * 2\n    return x", text, PY_CURSOR) is None  # may become "return x + y"


# -- multi line: closing brackets --------------------------------------------------------------------------

JS_OPEN = "function f() {\n  \n"
JS_CURSOR = JS_OPEN.index("\n  \n") + 3


def test_multi_stops_before_a_closer_the_document_already_has():
    gen = "return 1;\n}"
    assert multi(gen, JS_OPEN + "}\n", JS_CURSOR, "javascript") == gen.index("\n}")


def test_multi_keeps_a_closer_the_document_lacks_even_below_the_first_lines_indent():
    gen = "return 1;\n}"
    assert multi(gen, JS_OPEN, JS_CURSOR, "javascript") == len(gen)  # the "}" completes the block


def test_multi_waits_on_a_rust_char_literal_being_written():
    text = "fn f() {\n    \n}\n"
    cursor = text.index("\n    \n") + 5
    assert multi("let c = '}", text, cursor, "rust") is None  # maybe '}' (a char), not the block's end
    assert multi("let c = '}';", text, cursor, "rust") is None
    gen = "let c = 1;\n}"
    assert multi(gen, text, cursor, "rust") == gen.index("\n}")


# -- any mode: degenerate loops ----------------------------------------------------------------------------

def test_a_loop_of_eight_characters_is_cut_and_shorter_repeats_are_not():
    gen = "f(a, self.size, self.size, self.size, "
    assert single(gen, "x = ", 4) == len("f(a, self.size, ")
    assert single("[0, 0, 0, 0, 0, 0, ", "x = ", 4) is None  # a period of 3 (and 6): still being written
    assert single("'-------------------", "x = ", 4) is None
    gen = "g(abc.de, abc.de, abc.de, "  # a period of exactly 8
    assert single(gen, "x = ", 4) == len("g(abc.de, ")
