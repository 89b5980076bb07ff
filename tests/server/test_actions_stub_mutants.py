"""Tests written for mutmut's survivors in codestral_lsp/context/actions.py (docs/DEVELOPMENT.md, "Mutation testing"):
stub detection and the text of stubs (find_stubs, _body, _body_stub, _stands_in, _docstring, _indent_of,
function_name, stub_text, stub_fallback, tests_module_end)."""

from __future__ import annotations

import pytest

from codestral_lsp.context import actions, parse
from codestral_lsp.context.actions import (
    Points,
    Stub,
    _body,
    _docstring,
    _indent_of,
    find_stubs,
    stub_fallback,
    stub_text,
)

B, D = "body", "docstring"


@pytest.mark.parametrize("language, text, expected", [
    # a statement on its own line: the stub starts at that line, no lead, no trail (nothing follows)
    ("python", "def f(x):\n    pass\n", [(B, "f", 10, 18, "    ", "", ""), (D, "f", 10, 10, "    ", "", "")]),
    # only a docstring: the body goes after it, at the docstring's indentation (not the file's unit)
    ("python", "def f(x):\n    '''Doc.'''\n", [(B, "f", 24, 24, "    ", "\n", "")]),
    ("python", "def g():\n    return 1\n\n\ndef f(x):\n   '''D.'''\n",
     [(D, "g", 9, 9, "    ", "", ""), (B, "f", 45, 45, "   ", "\n", "")]),
    # a one-line body: lead "\n", the file's unit of spaces, no trail before a line break or the end
    ("python", "def f(x): pass\n", [(B, "f", 9, 14, "    ", "\n", "")]),
    ("python", "def f(x): pass", [(B, "f", 9, 14, "    ", "\n", "")]),
    ("python", "def f(x):pass", [(B, "f", 9, 13, "    ", "\n", "")]),      # ":" ends where the block starts
    ("python", "def f():# TODO\n    pass\n", [(B, "f", 8, 23, "    ", "\n", "")]),  # a comment right after ":"
    # the stub ends at the last statement, not at the block's end (which takes the ";")
    ("python", "def f(x):\n    pass;\n", [(B, "f", 10, 18, "    ", "", ""), (D, "f", 10, 10, "    ", "", "")]),
    # a zero-width space (whitespace to the grammar, not to str.strip) makes the statement not its line's own
    ("python", "def f(x):\n    \u200bpass\n", [(B, "f", 9, 19, "    ", "\n", ""), (D, "f", 10, 10, "    ", "", "")]),
    # after a line continuation the body's region starts at a line's start, still with a lead "\n"
    ("python", "def f(x):\\\n    pass\n", [(B, "f", 11, 19, "    ", "\n", ""), (D, "f", 11, 11, "    ", "", "")]),
    # a one-line function gets no docstring stub: its first statement's line is the def's line
    ("python", "def f(x): return 1\n", []),
    ("python", "class C:\n    def f(self): return 1\n", []),
    # Lua: the body starts after the parameters (not after the block), a comment before them is no statement
    ("lua", "local function f(x)\n  error('TODO')\nend\n", [(B, "f", 20, 36, "  ", "", "\n")]),
    ("lua", "local function f --c\n(x)\n  error('TODO')\nend\n", [(B, "f", 25, 41, "  ", "", "\n")]),
    ("lua", "local function f(x)\nend\n", [(B, "f", 19, 20, "    ", "\n", "\n")]),
    # a function whose `end` is missing (zero-width in the tree) has no body to fill
    ("lua", "f(function() )", []),
    # a TODO comment stands in for a body; one with a lone surrogate is read with replacement
    ("c", "int f(int x) {\n    // TODO\n}\n", [(B, "f", 15, 27, "    ", "", "\n")]),
    ("c", "int f(int x) {\n    /* see TODO */\n}\n", [(B, "f", 15, 34, "    ", "", "\n")]),  # TODO not first
    ("c", "int f(int x) {\n    // TODO \ud800\n}\n", [(B, "f", 15, 29, "    ", "", "\n")]),
    # declarators without an identifier to find: the fallback name, not the declarator's text
    ("c", "int (*f(int x)) {\n}\n", [(B, "function", 17, 18, "    ", "\n", "\n")]),
    ("cpp", "template<> int f<int>(int x) {\n}\n", [(B, "function", 30, 31, "    ", "\n", "\n")]),
    # docstrings are Python's only: a JS directive is a statement that does not stand in
    ("javascript", 'function f() {\n  "use strict";\n}\n', []),
    # an anonymous function takes the name of its object key
    ("javascript", "const o = { k: function() {\n} };\n", [(B, "k", 27, 28, "    ", "\n", "\n")]),
    ("javascript", 'const o = { "\ud800": function() {\n} };\n',
     [(B, '"\ufffd\ufffd\ufffd"', 29, 30, "    ", "\n", "\n")]),
    # a file indented with tabs: the body's indent is a tab
    ("go", "package m\n\nfunc G() int {\n\treturn 1\n}\n\nfunc F() {}\n", [(B, "F", 49, 49, "\t", "\n", "\n")]),
    # a method without a body (no braces, no `end`) has no stub
    ("java", "interface I {\n  void f();\n}\n", []),
])
def test_find_stubs(language, text, expected):
    found = find_stubs(parse(text, language), text, Points(text), 0, 10_000, language)
    assert found == [Stub(*s) for s in expected]


def test_body_of_a_node_without_children_is_none():
    leaf = parse("x = 1\n", "python").root_node.children[0].children[0].children[0]
    assert leaf.child_count == 0 and _body(leaf) is None


def test_docstring_of_no_statements_is_none():
    assert _docstring([]) is None


@pytest.mark.parametrize("text, offset, indent", [
    ("    y = 1\n", 4, "    "),
    ("    y = 1\n", 1, "  "),     # the character at the offset counts, not the one after it
    ("\t\tz\n", 0, "\t"),
    ("x\n  y\n", 4, "  "),
])
def test_indent_of(text, offset, indent):
    assert _indent_of(text, Points(text), offset) == indent


STUB = Stub("body", "f", 0, 0, "    ", "\n", "\n}")
PLAIN = Stub("body", "f", 0, 0, "  ")


@pytest.mark.parametrize("stub, generated, text", [
    (STUB, "  return 1  \n\n", "\n      return 1\n}"),   # trailing space goes, leading space stays
    (PLAIN, "x\n", "  x"),
    (STUB, "  \n\t\n", ""),
    (STUB, "", ""),
])
def test_stub_text(stub, generated, text):
    assert stub_text(stub, generated) == text


@pytest.mark.parametrize("stub, generated, original, text", [
    (PLAIN, "  x = (\n", "  pass", "  #   x = (\n  pass"),       # leading spaces are kept, only line breaks go
    (PLAIN, "X = (X\n", "  pass", "  # X = (X\n  pass"),
    (PLAIN, "x = (\n", "pass", "  # x = (\npass"),            # without a lead, the placeholder is kept as it was
    (STUB, "\nx = (\n\n", "  pass  ", "\n    # x = (\n    pass\n}"),
    (STUB, "x = (", "", "\n    # x = (\n}"),
    (STUB, "\n \n", "pass", ""),
    (PLAIN, "", "pass", ""),
])
def test_stub_fallback(stub, generated, original, text):
    assert stub_fallback(stub, generated, original, "python") == text


@pytest.mark.parametrize("text, closer", [
    ("mod other {\n}\n", None),                                     # a module of another name is not the tests'
    ("mod other {\n}\n\nmod tests {\n}\n", 27),
    ("fn f() {}\n", None),
])
def test_tests_module_end(text, closer):  # called as `actions.`: pytest would collect an imported `tests_*`
    assert actions.tests_module_end(parse(text, "rust"), Points(text), "rust") == closer
