"""`eval --actions` and `--make-actions`: the tasks are real corruptions, the scores can fail and succeed."""

import ast

import pytest

from codestral_lsp.pipeline import Completer, Completion
from codestral_lsp.tools.eval_actions import evaluate_actions, make_tasks
from engine import Engine
from engine.testing import make_checkpoint

SOURCE = '''import os


def join(root, name):
    """Join two parts."""
    path = os.path.join(root, name)
    if not path:
        raise ValueError(root)
    return path


def listing(root):
    names = sorted(os.listdir(root))
    found = join(root, names[0])
    return found
'''


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "mod.py"
    path.write_text(SOURCE)
    return make_tasks(4, files=[str(path)] * 4)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine.load(make_checkpoint(tmp_path_factory.mktemp("tiny")), max_sessions=8)


def test_corruptions_differ_and_are_detectable(tasks):
    fixes = [t for t in tasks if t["kind"] == "fix"]
    assert fixes and all(t["line"] >= 0 for t in fixes)
    source_lines = SOURCE.split("\n")
    for t in fixes:
        bad = t["text"].split("\n")[t["line"]]
        assert bad.strip() != t["original"] and source_lines[t["line"]].strip() == t["original"]
        tree = ast.parse(t["text"])  # still parses: a linter's finding, not a syntax error
        if t["message"].startswith("undefined name"):
            name = t["message"].split("'")[1]
            assert name in bad and name not in SOURCE
            assert not any(isinstance(n, (ast.FunctionDef, ast.arg, ast.alias)) for n in ast.walk(tree)
                           if getattr(n, "name", getattr(n, "arg", None)) == name)
        elif t["message"] == "Missing return statement":
            assert "return" not in bad
        else:
            assert bad.count(",") < t["original"].count(",")
    stubs = [t for t in tasks if t["kind"] == "stub"]
    assert stubs and all(t["original"] in SOURCE and t["original"] not in t["text"] for t in stubs)


def test_heldout_only():
    from codestral_lsp.tools.eval_actions import heldout_python_files
    from engine.training.corpus import gather_sources, is_heldout

    files = set(heldout_python_files())
    for source in gather_sources():
        assert all(is_heldout(f, source.root) == (f in files) for f in source.files[:200])


def test_eval_runs_end_to_end_on_a_tiny_model(engine, tasks):
    completer = Completer(engine)
    completer.settings.completion.timeout_ms = 600_000  # on a busy machine the budget would cut at random points
    result = evaluate_actions(completer, (tasks * 3)[:5])
    assert set(result) >= {"n_fix", "fix_exact", "fix_parses", "n_stub", "stub_edit_similarity", "stub_parses",
                           "p50_ms", "p95_ms", "model"}
    assert result["n_fix"] + result["n_stub"] == 5
    for key in ("fix_exact", "fix_parses", "stub_edit_similarity", "stub_parses"):
        assert result[key] is None or 0.0 <= result[key] <= 1.0
    assert result["p50_ms"] <= result["p95_ms"]
    assert result["fix_exact"] == 0.0  # a random model does not restore a statement
    assert result["fix_typed_same"] == 1.0  # the cache kept from the completion changes no token
    assert result["fix_typed_prefilled_tokens"] < 40  # only the note and the statement's line were prefilled


class Scripted(Completer):
    """A completer whose model writes the task's original text: the metric reaches 1.0."""

    answer = ""

    def fill(self, prefix, suffix, **options):
        return Completion(self.answer, [], {})


def test_a_completer_that_writes_the_original_scores_one(engine, tasks):
    completer = Scripted(engine)
    for task in tasks:
        completer.answer = task["original"] if task["kind"] == "fix" else task["original"].lstrip() + "\n"
        result = evaluate_actions(completer, [task])
        if task["kind"] == "fix":
            assert result["fix_exact"] == 1.0 and result["fix_parses"] == 1.0
        else:
            assert result["stub_edit_similarity"] == 1.0 and result["stub_parses"] == 1.0


def test_listing_timing_lists_actions(engine):
    from codestral_lsp.tools.eval_actions import time_listing

    result = time_listing(Completer(engine), SOURCE * 20, requests=10)
    assert result["requests"] == 10 and result["mean_actions"] > 0
    assert 0 <= result["list_p50_ms"] <= result["list_p95_ms"]
