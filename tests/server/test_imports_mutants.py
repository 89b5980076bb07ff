"""Tests written for mutmut's survivors in codestral_lsp/context/imports.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

from codestral_lsp.context.imports import HEAD_CHARS, MAX_LINES, _statement_end, import_spans

TEXT = "import os\nfrom a import (\n    b,\n    import_c,\n)\nimport x, \\\n    y\nz = 1\nimport late\n"


def test_spans_of_one_line_bracketed_and_continued_imports():
    assert import_spans(TEXT, len(TEXT), "python") == [(0, 10), (10, 49), (49, 67), (73, 85)]
    assert [TEXT[a:b] for a, b in import_spans(TEXT, len(TEXT), "python")][1:3] == [
        "from a import (\n    b,\n    import_c,\n)\n", "import x, \\\n    y\n"]
    assert import_spans(TEXT, len(TEXT), "plaintext") == []


def test_an_import_must_end_before_end():
    assert import_spans(TEXT, 9, "python") == []          # its newline is at 9
    assert import_spans(TEXT, 10, "python") == [(0, 10)]
    assert import_spans(TEXT, 11, "python") == [(0, 10)]
    assert import_spans("import os", 9, "python") == []   # no newline: not finished
    assert import_spans("import os", 100, "python") == []
    assert import_spans("import os\n", 100, "python") == [(0, 10)]


def test_statement_end():
    assert _statement_end("a(\n)\n", 0, 100, "(", ")") == 5
    assert _statement_end("a(\n)\n", 0, 4, "(", ")") is None
    assert import_spans("import a)\nimport b\n", 100, "python") == [(0, 10), (10, 19)]  # a stray closer ends it


def test_long_imports_and_the_head():
    assert MAX_LINES == 200 and HEAD_CHARS == 1 << 16
    longest = "from a import (\n" + "    b,\n" * (MAX_LINES - 2) + ")\nimport c\n"
    assert import_spans(longest, len(longest), "python") == [(0, 1404), (1404, 1413)]
    too_long = "from a import (\n" + "    b,\n" * (MAX_LINES - 1) + ")\nimport c\n"
    assert import_spans(too_long, len(too_long), "python") == []   # given up, and nothing after it
    head = "import a\n" + "#" * HEAD_CHARS + "\nimport b\n"
    assert import_spans(head, len(head), "python") == [(0, 9)]


def test_a_continuation_backslash_may_have_trailing_spaces():
    text = "import x, \\  \n    y\nz = 1\n"
    assert import_spans(text, len(text), "python") == [(0, 20)]


def test_an_import_line_inside_a_bracketed_import_is_part_of_it():
    text = "from a import (\nimport b,\n)\nimport c\n"
    assert import_spans(text, len(text), "python") == [(0, 28), (28, 37)]
