"""Held-out infilling tasks per language (`train --heldout-tasks`): only held-out files of the task's
language, never a comment line, whole block bodies for the multi-line share, stable with the seed."""

from __future__ import annotations

import doctest
import json
import os
import random
import sysconfig
from pathlib import Path

import pytest

from codestral_lsp.context import completion_mode
from codestral_lsp.context.parsing import ParseCache
from engine.training import heldout
from engine.training.corpus import LANGUAGES, Corpus, Source, is_heldout
from engine.training.heldout import comment_lines, heldout_tasks
from engine.training.train import main as train_main

GO = """// Package demo{i} scales and sums numbers for the tests.
package demo

/*
 * Scale{i} is documented in a block comment that spans lines,
 * each of them long enough to be a gap if comments were allowed.
 */

// Scale{i} multiplies every value by a factor and adds {i}.
func Scale{i}(values []int, factor int) []int {{
	out := make([]int, len(values))  // one slot per value
	for k, v := range values {{
		out[k] = v*factor + {i}
	}}
	return out
}}

// Sum{i} adds the values up, a comment line long enough to count.
func Sum{i}(values []int) int {{
	total := 0
	for _, v := range values {{
		total += v
	}}
	return total
}}
"""

PYTHON = '''# Module demo{i}: scales and sums numbers for the tests.
# Another comment line that is long enough to be a gap.


def scale_{i}(values, factor):
    # every value times the factor, plus {i}
    out = [v * factor + {i} for v in values]
    return out


def total_{i}(values):
    result = 0
    for v in values:
        result += v
    return result


print(total_{i}(scale_{i}([1, 2], 3)))
'''

C = """/* demo{i}.c: scales numbers for the tests,
   in a block comment whose lines are long enough */
#include <stddef.h>

int scale_{i}(int value, int factor) {{
    int out = value * factor + {i};
    /* one multiplication and one addition */
    return out;
}}
"""

TEMPLATES = {"python": (PYTHON, ".py"), "go": (GO, ".go"), "c": (C, ".c"), "typescript": (GO, ".tsx")}


def make_corpus(tmp_path: Path, languages=("python", "go", "c"), files: int = 300) -> Corpus:
    """`files` files per language, about 2% of them held out (by the hash of their path)."""
    sources = []
    for lang in languages:
        template, ext = TEMPLATES[lang]
        root = tmp_path / lang
        root.mkdir(parents=True)
        paths = []
        for i in range(files):
            path = root / f"mod{i}{ext}"
            path.write_text(template.format(i=i))
            paths.append(str(path))
        sources.append(Source(lang, str(root), "MIT", paths, sum(os.path.getsize(p) for p in paths), lang))
    corpus = Corpus(sources)
    assert all(len(corpus.pools[lang].heldout) >= 2 for lang in languages)
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def document(task: dict) -> str:
    return task["prompt"] + task["canonical_solution"] + task["suffix"]


def test_docstring_examples():
    result = doctest.testmod(heldout)
    assert result.failed == 0 and result.attempted > 0


def test_each_language_gets_n_tasks_from_its_own_heldout_files_only(corpus):
    tasks = heldout_tasks(corpus, n=12, multiline=4)
    by_text = {corpus.text(f): (lang, f in pool.heldout) for lang, pool in corpus.pools.items()
               for f in pool.train + pool.heldout}
    for task in tasks:
        assert by_text[document(task)] == (task["language"], True), task["task_id"]
    for lang in ("python", "go", "c"):
        ids = [t["task_id"] for t in tasks if t["language"] == lang]
        prefix = "heldout/" if lang == "python" else f"heldout/{lang}/"
        assert ids == [f"{prefix}{k}" for k in range(12)] + [f"{prefix}multi/{k}" for k in range(4)]


def first_code_point(text: str, start: int) -> tuple[int, int]:
    line = text.count("\n", 0, start)
    gap_line = text[start:text.find("\n", start)]
    return line, len((gap_line[: len(gap_line) - len(gap_line.lstrip())]).encode())


def in_comment(tree, point: tuple[int, int]) -> bool:
    node = tree.root_node.descendant_for_point_range(point, point)
    while node is not None:
        if "comment" in node.type:
            return True
        node = node.parent
    return False


def test_no_gap_starts_in_a_comment_by_the_languages_grammar(corpus):
    """tree-sitter is the oracle: the gap's first character is never inside a comment node."""
    parses = ParseCache()
    tasks = heldout_tasks(corpus, n=40, multiline=10)
    for task in tasks:
        text = document(task)
        tree = parses.get(task["task_id"], 0, text, task["language"])
        assert not in_comment(tree, first_code_point(text, len(task["prompt"]))), task["canonical_solution"]


@pytest.mark.parametrize("lang", ["c", "go", "python"])
def test_comment_lines_agree_with_the_grammar(lang, tmp_path):
    template, _ = TEMPLATES[lang]
    text = template.format(i=3) + ("/* one */ int x = 1; /* two\n   still two */\n" if lang == "c" else "")
    lines = text.splitlines(keepends=True)
    parser_tree = ParseCache().get("t", 0, text, lang)
    starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
    expected = [in_comment(parser_tree, first_code_point(text, s)) for s, line in zip(starts, lines)]
    got = comment_lines(lines, LANGUAGES[lang])
    assert [g for g, line in zip(got, lines) if line.strip()] == [e for e, line in zip(expected, lines) if line.strip()]
    assert any(got) and not all(got)


def legacy_python_tasks(corpus: Corpus, n: int, seed: int) -> list[dict]:
    """The Python-only recipe's task writer, as it was before languages: the oracle for Python's tasks."""
    rng = random.Random(seed)
    files = sorted(corpus.heldout)
    tasks = []
    while len(tasks) < n and files:
        path = rng.choice(files)
        text = corpus.text(path)
        lines = text.splitlines(keepends=True)
        eligible = [i for i, line in enumerate(lines) if 10 <= len(line.strip()) <= 100 and line.endswith("\n")
                    and not line.lstrip().startswith(("#", "//"))]
        if not eligible:
            continue
        i = rng.choice(eligible)
        start = sum(len(line) for line in lines[:i])
        stdlib = sysconfig.get_paths()["stdlib"]
        tasks.append({"task_id": f"heldout/{len(tasks)}", "prompt": text[:start], "canonical_solution": lines[i],
                      "suffix": text[start + len(lines[i]):], "source": os.path.relpath(path, stdlib)
                      if path.startswith(stdlib) else Path(path).name})
    return tasks


def test_python_alone_writes_the_tasks_it_always_wrote(tmp_path, corpus):
    python_only = make_corpus(tmp_path, ("python",))
    tasks = heldout_tasks(python_only, n=30, seed=7)
    assert {t.pop("language") for t in tasks} == {"python"}
    assert tasks == legacy_python_tasks(python_only, 30, 7)
    mixed = [t for t in heldout_tasks(corpus, n=30, seed=7, multiline=5) if t["language"] == "python"][:30]
    assert [t["canonical_solution"] for t in mixed] == [t["canonical_solution"] for t in tasks]


def test_the_seed_alone_decides(corpus):
    assert heldout_tasks(corpus, n=8, seed=3, multiline=2) == heldout_tasks(corpus, n=8, seed=3, multiline=2)
    assert heldout_tasks(corpus, n=8, seed=3) != heldout_tasks(corpus, n=8, seed=4)
    go_alone = heldout_tasks(corpus, n=8, seed=3, languages=["go"])
    assert go_alone == [t for t in heldout_tasks(corpus, n=8, seed=3) if t["language"] == "go"]


def test_multi_line_gaps_are_block_bodies_that_the_server_completes_multi_line(corpus):
    tasks = heldout_tasks(corpus, n=0, multiline=15)
    assert len(tasks) == 45
    parses = ParseCache()
    for task in tasks:
        body, prompt, suffix = task["canonical_solution"], task["prompt"], task["suffix"]
        assert 2 <= body.count("\n") + 1 <= 8 and not body.endswith("\n") and suffix.startswith("\n")
        opener = prompt.splitlines()[-1]
        assert opener.rstrip().endswith(":" if task["language"] == "python" else "{")
        depth = len(opener) - len(opener.lstrip())
        assert all(len(line) - len(line.lstrip()) > depth for line in body.splitlines() if line.strip())
        after = next(line for line in suffix.splitlines() if line.strip())
        assert len(after) - len(after.lstrip()) <= depth  # the whole body: the next line closes the block
        text, offset = prompt + suffix, len(prompt)
        tree = parses.get(task["task_id"], 0, text, task["language"])
        assert completion_mode(text, offset, task["language"], "auto", tree) == "multi"


def test_tsx_files_are_typescriptreact_tasks(tmp_path):
    tasks = heldout_tasks(make_corpus(tmp_path, ("typescript",)), n=3)
    assert [t["language"] for t in tasks] == ["typescriptreact"] * 3


def test_the_command_writes_tasks_per_language_from_the_fetched_cache(tmp_path):
    corpus = make_corpus(tmp_path / "made", ("go", "c"))
    packages = []
    for source in corpus.sources:
        rel = [os.path.relpath(f, source.root) for f in source.files]
        packages.append({"name": source.name, "version": "1", "registry": "debian", "license": "MIT",
                         "root": source.root, "languages": {source.language: {"files": rel, "chars": source.chars}}})
    (tmp_path / "manifest.json").write_text(json.dumps({"packages": packages}))
    out = tmp_path / "tasks.jsonl"
    train_main(["--heldout-tasks", str(out), "--languages", "go,c", "--corpus-cache", str(tmp_path),
                "--heldout-n", "5", "--heldout-multiline", "2", "--heldout-seed", "3"])
    tasks = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["language"] for t in tasks] == ["go"] * 7 + ["c"] * 7
    assert tasks == heldout_tasks(corpus, 5, seed=3, multiline=2, languages=["go", "c"])
    assert all(is_heldout(os.path.join(tmp_path / "made" / t["language"], t["source"]),
                          str(tmp_path / "made" / t["language"])) for t in tasks)
