"""`eval` in every language: a task's `language` reaches the server's windows and stop rules, and
`--by-language` splits the scores by language and by single- or multi-line gap."""

import json

import pytest

from codestral_lsp import cli, pipeline
from codestral_lsp.context import Suggestion
from codestral_lsp.pipeline import Completer, Result
from codestral_lsp.tools.evaluate import evaluate, gap_kind
from engine.testing import make_checkpoint

# The opener line ends in a Go comment: only Go's comment marker shows that it opens a block, so only
# as Go is the gap completed multi-line, and only Go's stop rule cuts the body at the document's "}".
GO_TASK = {"task_id": "go/0", "language": "go",
           "prompt": "package main\n\nfunc double(n int) int { // twice n\n",
           "canonical_solution": "\tm := n * 2\n\treturn m",
           "suffix": "\n}\n\nfunc main() {\n\tprintln(double(2))\n}\n"}  # tab-indented, as gofmt writes
GO_MODEL_WRITES = "\tm := n * 2\n\treturn m\n}\n\nfunc other() {\n"


class Chars:
    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


class Written:
    def __init__(self, text: str):
        self.text, self.tokens, self.stats = text, [], {"stop_reason": "stop"}

    def __iter__(self):
        return iter(())


class NamedScript:
    """An engine that writes `script` whatever the prompt, cut where the stop rule says."""
    tokenizer, checkpoint = Chars(), None

    def __init__(self, script: str):
        self.script = script

    def stream(self, prefix, suffix, stop_fn=None, **options):
        return Written(self.script[:stop_fn(self.script) if stop_fn else None])


def test_a_go_task_gets_gos_multi_line_stop_rule():
    as_go = evaluate(Completer(NamedScript(GO_MODEL_WRITES)), [GO_TASK], with_completions=True)
    assert as_go["completions"] == [GO_TASK["canonical_solution"]] and as_go["exact_match"] == 1.0
    untagged = {k: v for k, v in GO_TASK.items() if k != "language"}  # read as Python: "#" comments
    as_python = evaluate(Completer(NamedScript(GO_MODEL_WRITES)), [untagged], with_completions=True)
    assert as_python["completions"] == ["\tm := n * 2"] and as_python["exact_match"] == 0.0


@pytest.mark.parametrize("language", ["go", "typescriptreact", "rust", None])
def test_the_language_reaches_the_window_mode_and_stop_rule(monkeypatch, language):
    seen = []
    def spy(name: str, at: int):  # at: where the language id is among the arguments
        real = getattr(pipeline, name)

        def call(*args, **kwargs):
            seen.append((name, args[at]))
            return real(*args, **kwargs)
        monkeypatch.setattr(pipeline, name, call)

    for name, at in (("fim_window", 2), ("completion_mode", 2), ("stop_rule", 3)):
        spy(name, at)
    task = {**GO_TASK, "language": language}
    evaluate(Completer(NamedScript(GO_MODEL_WRITES)), [task])
    assert seen == [("fim_window", language or "python"), ("completion_mode", language or "python"),
                    ("stop_rule", language or "python")]


def task(task_id: str, language: str | None, solution: str) -> dict:
    record = {"task_id": task_id, "prompt": f"// {task_id}\n", "canonical_solution": solution, "suffix": "\nend\n"}
    return record | ({"language": language} if language else {})


class Answers(Completer):
    """Answers each task (found by its prompt's first line) with a fixed text."""

    def __init__(self, engine, answers: dict[str, str]):
        super().__init__(engine)
        self.answers = answers

    def complete(self, doc, offset, *args, **kwargs):
        return Result(Suggestion(self.answers[doc.text.split("\n")[0][3:]], offset), {}, 10.0)


RECORDS = [task("py/a", None, "    x = 1\n"), task("py/b", "python", "    y = 2\n"),
           task("go/a", "go", "\tm := 2\n\treturn m"), task("go/b", "go", "\treturn n\n"),
           task("py/c", None, "if x:\n    pass\n")]
ANSWERS = {"py/a": "    x = 1\n", "py/b": "    y = 3\n", "go/a": "\tm := 2\n\treturn m", "go/b": "\treturn n",
           "py/c": "if x:\n    pass"}


def test_gap_kinds_ignore_the_final_line_break():
    assert [gap_kind(r["canonical_solution"]) for r in RECORDS] == [
        "single_line", "single_line", "multi_line", "single_line", "multi_line"]


def test_by_language_splits_languages_and_gap_kinds():
    result = evaluate(Answers(NamedScript(""), ANSWERS), RECORDS, by_language=True)
    assert result["n"] == 5 and result["exact_match"] == pytest.approx(4 / 5)
    split = result["by_language"]
    assert list(split) == ["python", "go"] and list(split["python"]) == ["single_line", "multi_line"]
    single = split["python"]["single_line"]
    assert single["n"] == 2 and single["exact_match"] == 0.5 and single["edit_similarity"] == pytest.approx((1 + 8 / 9) / 2)
    assert split["python"]["multi_line"]["n"] == 1 and split["python"]["multi_line"]["exact_match"] == 1.0
    assert list(split["go"]) == ["single_line", "multi_line"]
    assert [split["go"][k]["n"] for k in split["go"]] == [1, 1]
    assert split["go"]["single_line"]["exact_match"] == split["go"]["multi_line"]["exact_match"] == 1.0
    assert "by_language" not in evaluate(Answers(NamedScript(""), ANSWERS), RECORDS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


def test_eval_by_language_on_the_command_line(tiny, tmp_path, capsys):
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    cli.main(["eval", str(data), "--model", str(tiny), "--by-language", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    counts = {lang: {kind: s["n"] for kind, s in kinds.items()} for lang, kinds in result["by_language"].items()}
    assert counts == {"python": {"single_line": 2, "multi_line": 1}, "go": {"single_line": 1, "multi_line": 1}}
    cli.main(["eval", str(data), "--model", str(tiny), "--by-language"])
    table = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["language", "gaps", "n", "exact", "edit_sim", "pass@1", "p50_ms", "p95_ms"]
    assert [row.split()[:3] for row in table[1:]] == [["python", "single", "2"], ["python", "multi", "1"],
                                                      ["go", "single", "1"], ["go", "multi", "1"]]
    assert {row.split()[5] for row in table[1:]} == {"-"}  # no --execute
