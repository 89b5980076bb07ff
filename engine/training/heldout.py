"""Held-out infilling tasks per language, in HumanEval-infilling's format, for `codestral-lsp eval`.

    codestral-lsp train --heldout-tasks FILE.jsonl --languages python,go,... [--heldout-n N] [--heldout-multiline M]
                        [--heldout-seed S]

Per language: N single-line and M multi-line gaps, drawn only from that language's held-out files
(`Corpus.pools[language].heldout`) by a generator seeded with `seed` alone, so a language's tasks do
not depend on the other languages asked, and Python's single-line tasks are the ones the Python-only
recipe always wrote (same ids, same gaps). Every task carries `language`, the server's languageId.

- single-line: one whole line of 10 to 100 characters, not a comment, indentation and line break
  included; the prompt is the file before it, the suffix the file after it (HumanEval's single lines).
- multi-line: the whole body of a block: the 2 to 8 lines indented deeper than the line of code above
  them that opens the block (it ends with an opening bracket, or ":" in Python, or is a `case` label),
  blank lines inside included, the first one code. The gap stops before the body's last line break, so
  the document keeps an empty line where the body was: what an editor holds after the user opens a
  block, where the server completes multi-line.

Comment lines are found with the language's own markers (`corpus.LANGUAGES`): a line that starts with
its line comment or a block comment, or starts inside a block comment.
"""

from __future__ import annotations

import os
import random
import re
import sysconfig
from functools import partial
from itertools import accumulate
from pathlib import Path

from .corpus import LANGUAGES, LSP_ID_OF_EXTENSION, Corpus, Language

MIN_BODY, MAX_BODY = 2, 8  # lines of a multi-line gap


def comment_lines(lines: list[str], language: Language) -> list[bool]:
    """Whether each line is a comment line.

    >>> comment_lines(["/* a\\n", " * b */ int x;\\n", "int y; // z /*\\n", "  // w\\n", "int v;\\n"], LANGUAGES["c"])
    [True, True, False, True, False]
    """
    out, inside = [], False
    for line in lines:
        body = line.lstrip()
        opens = language.block_comment is not None and body.startswith(language.block_comment[0])
        out.append(inside or opens or body.startswith(language.line_comment))
        if language.block_comment is not None:
            inside = _open_at_end(line, inside, language)
    return out


def _open_at_end(line: str, inside: bool, language: Language) -> bool:
    """Whether a block comment is still open at the end of the line (strings are not looked into)."""
    opener, closer = language.block_comment
    k = 0
    while True:
        if inside:
            end = line.find(closer, k)
            if end < 0:
                return True
            inside, k = False, end + len(closer)
        else:
            start, marker = line.find(opener, k), line.find(language.line_comment, k)
            if start < 0 or 0 <= marker < start:
                return False
            inside, k = True, start + len(opener)


def _indent(line: str) -> int:
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(4))


def single_line_gaps(lines: list[str], comments: list[bool]) -> list[tuple[int, int]]:
    """(first line, end line) of each eligible single line."""
    return [(i, i + 1) for i, line in enumerate(lines)
            if 10 <= len(line.strip()) <= 100 and line.endswith("\n") and not comments[i]]


def block_bodies(lines: list[str], comments: list[bool], language: Language) -> list[tuple[int, int]]:
    """(first line, end line) of each block body that makes a multi-line gap.

    >>> lines = ["int f(int n) {\\n", "\\tint m = n;\\n", "\\n", "\\treturn m;\\n", "}\\n"]
    >>> block_bodies(lines, [False] * 5, LANGUAGES["c"])
    [(1, 4)]
    """
    out = []
    for i, line in enumerate(lines[:-1]):
        code = line.split(language.line_comment)[0].rstrip()
        first = i + 1
        if comments[i] or not re.search(language.block_opener, code) or not lines[first].strip() or comments[first]:
            continue
        base = _indent(line)
        stop = first
        while stop < len(lines) and (not lines[stop].strip() or _indent(lines[stop]) > base):
            stop += 1
        end = stop
        while not lines[end - 1].strip():
            end -= 1
        if stop < len(lines) and MIN_BODY <= end - first <= MAX_BODY:  # a line closes the block
            out.append((first, end))
    return out


def heldout_tasks(corpus: Corpus, n: int = 200, seed: int = 7, multiline: int = 0,
                  languages: list[str] | None = None) -> list[dict]:
    """n single-line and `multiline` multi-line tasks per language (default: the corpus's languages)."""
    tasks = []
    for lang in languages or corpus.languages:
        pool = corpus.pools.get(lang)
        files = sorted(pool.heldout) if pool else []
        spec = LANGUAGES.get(lang, Language((), 0.0))
        rng = random.Random(seed)
        ids = "heldout" if lang == "python" else f"heldout/{lang}"  # Python's ids as they always were
        tasks += _draw(corpus, files, rng, n, single_line_gaps, spec, lang, f"{ids}/")
        tasks += _draw(corpus, files, rng, multiline, partial(block_bodies, language=spec), spec, lang,
                       f"{ids}/multi/", keep_break=False)
    return tasks


def _draw(corpus: Corpus, files: list[str], rng: random.Random, n: int, gaps, spec: Language, lang: str,
          id_prefix: str, keep_break: bool = True) -> list[dict]:
    """n tasks: a file, then one of its gaps (a file without any is drawn again); gaps(lines, comments)
    lists (first line, end line) ranges. Without keep_break the gap's last line break stays in the suffix."""
    tasks = []
    for _ in range(100 * n):  # bounded: a language whose held-out files have no such gap gets fewer
        if len(tasks) >= n or not files:
            break
        path = rng.choice(files)
        text = corpus.text(path)
        lines = text.splitlines(keepends=True)
        found = gaps(lines, comment_lines(lines, spec))
        if not found:
            continue
        first, end = rng.choice(found)
        starts = [0, *accumulate(map(len, lines))]
        start, stop = starts[first], starts[end]
        if not keep_break:
            stop -= len(lines[end - 1]) - len(lines[end - 1].rstrip("\r\n"))
        tasks.append({"task_id": f"{id_prefix}{len(tasks)}", "prompt": text[:start],
                      "canonical_solution": text[start:stop], "suffix": text[stop:], "source": _source(path),
                      "language": LSP_ID_OF_EXTENSION.get(Path(path).suffix, lang)})
    return tasks


def _source(path: str) -> str:
    stdlib = sysconfig.get_paths()["stdlib"]
    return os.path.relpath(path, stdlib) if path.startswith(stdlib) else Path(path).name
