"""Suggestions follow the document's indentation when the editor does not say: tabs stay tabs."""

import doctest

import pytest

from codestral_lsp.context import indentation, parsing
from codestral_lsp.context import Suggestion, completion_mode, postprocess
from codestral_lsp.context.indentation import DEFAULT, Indentation, detect_indentation
from codestral_lsp.pipeline import Completer, Document

GO = "package main\n\nfunc area(w, h int) int {\n\t\n}\n\nfunc main() {\n\tprintln(area(2, 3))\n}\n"
GO_CURSOR = GO.index("\t\n") + 1
GO_BODY = "if w < 0 {\n\t\treturn 0\n\t}\n\treturn w * h"


@pytest.mark.parametrize("text, expected", [
    (GO, Indentation(False, 4)),
    ("all: build\n\nbuild:\n\tgo build ./...\n\tgo vet ./...\n", Indentation(False, 4)),
    ("/*\n * A comment.\n */\nint f(void) {\n\treturn 0;\n}\n", Indentation(False, 4)),
    ("def f():\n    if x:\n        return 1\n    return 2\n", Indentation(True, 4)),
    ("function f() {\n  if (x) {\n    return 1;\n  }\n}\n", Indentation(True, 2)),
    ("x = 1\ny = 2\n", DEFAULT),
    ("", DEFAULT),
])
def test_detects_tabs_or_the_number_of_spaces(text, expected):
    assert detect_indentation(text) == expected


def test_docstring_examples_of_the_new_context_modules():
    for module in (indentation, parsing):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0


def test_only_the_head_of_a_long_document_is_read():
    text = "x = 1\n" * 5000 + "\tindented\n"
    assert detect_indentation(text) == DEFAULT


def test_a_go_document_indented_with_tabs_gets_a_multi_line_suggestion_indented_with_tabs():
    assert completion_mode(GO, GO_CURSOR, "go") == "multi"
    assert postprocess(GO_BODY, GO, GO_CURSOR, "go", "multi") == Suggestion(GO_BODY, GO_CURSOR)
    spaced = GO_BODY.replace("\t", "    ")  # a model that writes spaces is brought to the file's tabs
    assert postprocess(spaced, GO, GO_CURSOR, "go", "multi") == Suggestion(GO_BODY, GO_CURSOR)


def test_the_editors_settings_win_over_the_document():
    s = postprocess(GO_BODY, GO, GO_CURSOR, "go", "multi", tab_size=4, insert_spaces=True)
    assert s.text == GO_BODY.replace("\t", "    ")


class Tokenizer:
    @staticmethod
    def encode(s: str) -> list[int]:
        return [0] * (len(s) // 3 + 1)


class Run:
    """What the engine's stream returns: iterated to the end, then .text and .stats are read."""

    def __init__(self, text: str):
        self.text, self.stats = text, {"stop_reason": "stop"}

    def __iter__(self):
        return iter(())


class ScriptedEngine:
    """Writes `script` whatever the prompt, cut where the stop rule says."""
    tokenizer = Tokenizer()

    def __init__(self, script: str):
        self.script = script

    def stream(self, prefix, suffix, stop_fn=None, **kwargs):
        keep = stop_fn(self.script) if stop_fn else None
        return Run(self.script[:keep])


def test_the_server_pipeline_keeps_the_tabs_of_a_go_document():
    """The server calls the completer without the editor's settings (inline completion has none)."""
    completer = Completer(ScriptedEngine(GO_BODY + "\n}\n\nfunc other() {"))
    result = completer.complete(Document("file:///area.go", "go", GO, 1), GO_CURSOR, use_recent=False)
    assert result.suggestion == Suggestion(GO_BODY, GO_CURSOR)
