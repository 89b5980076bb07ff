"""Instruct code actions (explain, refactor, write tests): prompts, answer parsing and the edits they make.

The edits are checked exactly with a stand-in engine whose answers are fixed; a real tiny engine
checks that `Engine.chat` is refused for FIM-only checkpoints and runs for instruct ones.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from codestral_lsp.lsp.features.code_actions import as_comment, code_block, instruct_edit, instruct_turns
from engine import Engine
from engine.testing import make_checkpoint

SOURCE = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n"
SELECTION = (SOURCE.index("def"), len(SOURCE))


class FixedAnswers:
    """Answers every chat with the same text; remembers the turns it was asked."""

    instruct = True

    def __init__(self, answer: str):
        self.answer, self.asked = answer, []

    def chat(self, turns, **kwargs):
        self.asked.append(turns)
        return SimpleNamespace(text=self.answer)


def test_explain_puts_wrapped_comments_above_the_selection_at_its_indent():
    engine = FixedAnswers("Computes the area of a circle of radius r, using the constant pi from the math "
                          "module, and returns it as a float.")
    text = "class Shapes:\n    def area(self, r):\n        return 3.14 * r * r\n"
    start = text.index("def")
    edit = instruct_edit(engine, text, "explain", start, len(text), "python")
    line_start = text.index("    def")
    assert edit[:2] == (line_start, line_start)
    lines = edit[2].splitlines()
    assert len(lines) == 2 and all(line.startswith("    # ") and len(line) <= 88 for line in lines)
    assert " ".join(line[6:] for line in lines) == engine.answer
    (turns,) = engine.asked
    assert turns[0][0] == "user" and "```python\ndef area(self, r):" in turns[0][1]


def test_refactor_replaces_the_selection_with_the_fenced_code():
    engine = FixedAnswers("Sure:\n```python\ndef area(r):\n    return math.pi * r ** 2\n```\nThis is shorter.")
    start, end = SELECTION
    edit = instruct_edit(engine, SOURCE, "refactor", start, end, "python")
    assert edit == (start, end, "def area(r):\n    return math.pi * r ** 2\n")


def test_tests_are_appended_after_the_document():
    engine = FixedAnswers("```python\ndef test_area():\n    assert area(1) == math.pi\n```")
    edit = instruct_edit(engine, SOURCE, "tests", *SELECTION, "python")
    assert edit == (len(SOURCE), len(SOURCE), "\n\ndef test_area():\n    assert area(1) == math.pi\n")
    new = SOURCE + edit[2]
    compile(new, "new.py", "exec")  # still a valid module


def test_empty_answers_make_no_edit():
    assert instruct_edit(FixedAnswers("  \n"), SOURCE, "explain", *SELECTION, "python") is None
    assert instruct_edit(FixedAnswers("```python\n```"), SOURCE, "refactor", *SELECTION, "python") is None


@pytest.mark.parametrize("answer,code", [
    ("```js\nlet x = 1;\n```", "let x = 1;"),
    ("no fence at all\n", "no fence at all"),
    ("```\nunterminated", "unterminated"),
    ("a\n```py\nfirst\n```\n```py\nsecond\n```", "first"),
])
def test_code_block(answer, code):
    assert code_block(answer) == code


def test_comment_syntax_follows_the_language():
    assert as_comment("Hi.", "lua", "") == "-- Hi.\n"
    assert as_comment("Hi.", "rust", "\t") == "\t// Hi.\n"
    assert as_comment("One.\nTwo.", "python", "") == "# One.\n# Two.\n"


def test_prompts_name_the_task_and_fence_the_code():
    for kind in ("explain", "refactor", "tests"):
        (role, content), = instruct_turns(kind, "go", "func f() {}\n")
        assert role == "user" and content.endswith("```go\nfunc f() {}\n```")


def test_chat_only_for_checkpoints_that_declare_instruct(tmp_path):
    fim_only = Engine.load(make_checkpoint(tmp_path / "tiny"))
    assert fim_only.instruct is False
    with pytest.raises(ValueError, match="not instruction-tuned"):
        fim_only.chat([("user", "hi")])
    chat = Engine.load(make_checkpoint(tmp_path / "tiny-Instruct"))
    assert chat.instruct is True and chat.info()["instruct"] is True
    out = chat.chat([("user", "hi")], max_tokens=5)
    assert out.stats["prompt_tokens"] == len(chat.tokenizer.encode_chat([("user", "hi")]))
    assert 1 <= len(out.tokens) <= 5
    with pytest.raises(ValueError, match="context"):
        chat.chat([("user", "word " * 5000)], max_tokens=5)
