"""Tests written for mutmut's survivors in codestral_lsp/context/windows.py (docs/DEVELOPMENT.md,
"Mutation testing"): the chunk helpers against plain oracles written from their docstrings, and the
budgets of the header and the imports at their boundaries."""

from __future__ import annotations

import random

import pytest

from codestral_lsp.context import profile
from codestral_lsp.context.lines import LineRanker
from codestral_lsp.context.windows import _closest_fit, _fitting_imports, _prefix_cut, _suffix_cut, best_cut, fim_window, range_starts

chars = len  # one token a character: budgets below are character counts


def texts(seed: int, n: int = 150):
    rng = random.Random(seed)
    pieces = ["\n", "\n", "x = 1", "    y", "  ", ")", "if a:", "z"]
    for _ in range(n):
        yield "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))


def starts_oracle(text: str, lo: int, hi: int) -> list[int]:
    return [p for p in range(max(lo, 0), hi) if p == 0 or text[p - 1] == "\n"]


def test_range_starts_against_every_line_start():
    # hi >= 1 as the callers pass it (a chunk [lo, hi) with lo < hi, or (lo, hi] shifted by one)
    for text in ["\nab\n\ncd", "ab\ncd\ne", "\n"] + list(texts(1)):
        for lo in range(len(text) + 1):
            for hi in range(1, len(text) + 2):
                assert list(range_starts(text, lo, hi)) == starts_oracle(text, lo, min(hi, len(text) + 1)), (text, lo, hi)


class Ranks:
    def __init__(self, ranks: dict[int, tuple[int, int]]):
        self.ranks = ranks

    def rank(self, p: int) -> tuple[int, int]:
        return self.ranks[p]


def test_best_cut_takes_the_best_rank_then_the_earliest_or_latest_of_equals():
    ranks = Ranks({1: (0, 4), 2: (0, 0), 3: (1, 0), 4: (0, 0), 5: (2, 0)})
    assert best_cut("", [1, 2, 3, 4, 5], ranks, latest=False, default=None) == 2
    assert best_cut("", [1, 2, 3, 4, 5], ranks, latest=True, default=None) == 4
    assert best_cut("", [2, 3], ranks, latest=True, default=None) == 2  # a worse later one is not taken
    assert best_cut("", [], ranks, latest=True, default=7) == 7


def test_closest_fit_takes_the_first_candidate_that_fits():
    assert _closest_fit([5, 7, 9], lambda c: c >= 7, 3) == 7
    assert _closest_fit([5, 7, 9], lambda c: c > 9, 3) == 3


def prefix_cut_oracle(text, lo, hi, offset, ranker):
    starts = starts_oracle(text, lo, hi)
    if starts:
        return min(starts, key=lambda p: (ranker.rank(p), p))
    later = [p for p in starts_oracle(text, lo + 1, offset + 1)]
    return later[0] if later else lo


def suffix_cut_oracle(text, offset, lo, hi, ranker):
    if hi == len(text):
        return hi
    starts = starts_oracle(text, lo + 1, hi + 1)
    if starts:
        return min(starts, key=lambda p: (ranker.rank(p), -p))
    before = [p for p in starts_oracle(text, offset + 1, lo + 1)]
    return before[-1] if before else hi


def test_chunk_cuts_against_their_docstrings():
    for text in texts(2, 120):
        ranker = LineRanker(text, language=profile("python"))
        n = len(text)
        for offset in range(n + 1):
            for lo in range(0, offset + 1, 2):
                for hi in (lo + 1, lo + 3, lo + 6):
                    if hi <= offset:
                        assert _prefix_cut(text, lo, hi, offset, ranker) == \
                            prefix_cut_oracle(text, lo, hi, offset, ranker), (text, lo, hi, offset)
            for lo in range(offset, n):
                for hi in (lo + 1, lo + 3, lo + 6):
                    hi = min(hi, n)
                    assert _suffix_cut(text, offset, lo, hi, ranker) == \
                        suffix_cut_oracle(text, offset, lo, hi, ranker), (text, offset, lo, hi)


BODY = "".join(f"v{i} = {i}\n" for i in range(40))


@pytest.mark.parametrize("header_len, kept", [(3, True), (4, True), (5, False)])
def test_the_header_is_kept_up_to_half_the_prefix_budget(header_len, kept):
    header = "#" * (header_len - 1) + "\n"
    w = fim_window(BODY, len(BODY), "python", 9, 0, chars, header=header)
    assert w.prefix.startswith(header) is kept


@pytest.mark.parametrize("header, budget, imported", [
    ("", 40, True),            # imports get 40 // 4 = 10 tokens: "import ab\n" fits
    ("", 39, False),           # 9
    ("#" * 29 + "\n", 40, True),   # a header over half the budget is dropped and costs nothing
    ("#" * 9 + "\n", 40, False),   # a kept header of 10: imports get (40 - 10) // 4 = 7
    ("#" * 9 + "\n", 80, True),    # (80 - 10) // 4 = 17
])
def test_imports_get_a_quarter_of_what_the_header_leaves(header, budget, imported):
    text = "import ab\n" + BODY
    w = fim_window(text, len(text), "python", budget, 0, chars, header=header)
    assert ("import ab\n" in w.prefix) is imported
    assert w.prefix.count("import ab\n") <= 1


def test_imports_are_taken_once_wherever_the_window_starts():
    text = "import ab\n" + BODY[:60]
    for budget in range(8, 90):
        w = fim_window(text, len(text), "python", budget, 0, chars)
        assert w.prefix.count("import ab\n") == (1 if w.prefix_start <= 10 or budget // 4 >= 10 else 0), budget


def test_imports_that_do_not_fit_are_left_out_whole():
    text = "import abcdef\nimport b\nx = 1\n"
    assert _fitting_imports(text, len(text), "python", 3, chars) == []
    assert _fitting_imports(text, len(text), "python", 14, chars) == [(0, 14)]
    assert _fitting_imports(text, len(text), "python", 23, chars) == [(0, 14), (14, 23)]


def test_an_import_that_ends_where_the_window_starts_is_kept():
    # the window starts right after `import bb` (39), which fits the imports' budget of 46 // 4
    text = "\n\n    y = 2\n    y = 2\nx = 1\n\nimport bb\ndef f():\n"
    w = fim_window(text, 48, "python", 46, 0, chars)
    assert (w.prefix_start, w.prefix) == (39, "import bb\ndef f():\n")

