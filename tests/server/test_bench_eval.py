"""`bench typing` and `eval` on a tiny random model: the numbers they report mean what they say."""

import json

import pytest

from codestral_lsp.pipeline import Completer
from codestral_lsp.tools.bench import bench_typing
from codestral_lsp.tools.evaluate import edit_similarity, evaluate, levenshtein, read_records, run_program
from codestral_lsp.tools.replay import typing_events
from engine import Engine
from engine.testing import make_checkpoint

SOURCE = "import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield name\n\n\nprint(list(walk('.')))\n"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine.load(make_checkpoint(tmp_path_factory.mktemp("tiny")), max_sessions=8)


def test_typing_events_retype_the_middle_third():
    events = typing_events(SOURCE, None)
    lines = SOURCE.splitlines(keepends=True)
    start = sum(map(len, lines[:3]))
    region = "".join(lines[3:6])
    assert len(events) == len(region)
    assert all(text == SOURCE[: start + i + 1] + SOURCE[start + len(region):] for i, (text, _) in enumerate(events))
    assert events[-1] == (SOURCE, start + len(region))


def test_bench_modes_agree_and_reuse_the_cache(engine, tmp_path):
    path = tmp_path / "walk.py"
    path.write_text(SOURCE)
    result = bench_typing(engine, path, events=6, modes=("cold", "cache", "cache+ngram"))
    assert result["events"] == 6 and result["identical_outputs"] is True
    cold, cache = result["modes"]["cold"], result["modes"]["cache"]
    assert cold["mean_reused_tokens"] == 0
    assert cache["mean_reused_tokens"] >= 0.7 * cache["mean_prompt_tokens"]  # only the first event is cold
    assert cache["mean_prompt_tokens"] == cold["mean_prompt_tokens"]
    assert result["modes"]["cache+ngram"]["acceptance_rate"] is None or 0 <= result["modes"]["cache+ngram"]["acceptance_rate"] <= 1


def test_levenshtein_and_similarity():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abxd") == 0.75


def test_run_program_passes_fails_and_times_out():
    assert run_program("assert 1 + 1 == 2\n") is True
    assert run_program("raise SystemExit(3)\n") is False
    assert run_program("while True:\n    pass\n", timeout_s=1.0) is False
    assert run_program("x = bytearray(4 << 30)\n", memory_mb=256) is False


def test_eval_scores_a_perfect_completer(engine, tmp_path):
    records = [{"task_id": "t/0", "prompt": "def f(x):\n", "canonical_solution": "    return x + 1\n",
                "suffix": "\n", "test": "def check(f):\n    assert f(1) == 2\n", "entry_point": "f"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    assert read_records(path) == records

    class Oracle(Completer):
        def complete(self, doc, offset, *args, **kwargs):
            from codestral_lsp.context import Suggestion
            from codestral_lsp.pipeline import Result

            return Result(Suggestion("    return x + 1", offset), {}, 1.0)

    result = evaluate(Oracle(engine), records, execute=True)
    assert result["exact_match"] == 1.0 and result["edit_similarity"] == 1.0 and result["pass_at_1"] == 1.0
    real = evaluate(Completer(engine), records, execute=False)
    assert real["n"] == 1 and real["pass_at_1"] is None and 0.0 <= real["edit_similarity"] <= 1.0


def test_a_whole_line_gap_keeps_its_line_break_so_a_right_answer_passes():
    """HumanEval's single-line gaps are whole lines with their line break, so the cursor sits at the start of
    the next line's text. A right answer must come out as a new line (stop rule and post-processing keep
    its line break); without it the program would join two lines and fail although exact match holds."""
    from codestral_lsp.context import completion_mode, postprocess, stop_rule
    from codestral_lsp.tools.evaluate import score

    record = {"task_id": "t/1", "prompt": "def f(xs):\n    total = 0\n", "canonical_solution": "    for x in xs:\n",
              "suffix": "        total += x\n    return total\n",
              "test": "def check(f):\n    assert f([1, 2]) == 3\n", "entry_point": "f"}
    text, offset = record["prompt"] + record["suffix"], len(record["prompt"])
    mode = completion_mode(text, offset, "python")
    generated = record["canonical_solution"] + "        total += x\n"  # the model runs on; the stop rule cuts
    cut = stop_rule(mode, text, offset, "python")(generated)
    suggestion = postprocess(generated[:cut], text, offset, "python", mode)
    assert suggestion.text == "    for x in xs:\n" and suggestion.replace_end == offset
    result = score([record], lambda rec, t, o: (suggestion.text, suggestion.replace_end, 0.0), True, None, None)
    assert result["exact_match"] == 1.0 and result["pass_at_1"] == 1.0
