"""Tests written for mutmut's survivors in codestral_lsp/context/windows.py (docs/DEVELOPMENT.md,
"Mutation testing"): the chunk helpers against plain oracles written from their docstrings, and the
budgets of the header and the imports at their boundaries."""

from __future__ import annotations

import random

import pytest

from codestral_lsp.context import profile
from codestral_lsp.context.lines import LineRanker
from codestral_lsp.context.windows import (_closest_fit, _fitting_imports, _prefix_cut, _suffix_cut, best_cut, chunk_chars,
                                           fim_window, first_true, range_starts)

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
    later = starts_oracle(text, lo + 1, offset + 1)
    return later[0] if later else lo


def suffix_cut_oracle(text, offset, lo, hi, ranker):
    if hi == len(text):
        return hi
    starts = starts_oracle(text, lo + 1, hi + 1)
    if starts:
        return min(starts, key=lambda p: (ranker.rank(p), -p))
    before = starts_oracle(text, offset + 1, lo + 1)
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



def test_first_true_against_a_scan_and_its_gallop():
    for lo in range(4):
        for hi in range(lo - 1, 9):
            for first in range(lo, hi + 2):  # hi + 1: pred is false everywhere
                for guess in range(-2, 11):
                    expected = first if first <= hi else None
                    assert first_true(lo, hi, guess, lambda k: k >= first) == expected, (lo, hi, first, guess)
    # The calls a search makes: from the guess in steps of 1, 2, 4, ... then halving (the docstring's cost).
    for guess, expected in [(10, [10, 11, 13, 17, 25, 41, 73, 57, 49, 53, 51, 50]),
                            (90, [90, 89, 87, 83, 75, 59, 27, 43, 51, 47, 49, 50])]:
        calls = []
        assert first_true(0, 100, guess, lambda k: calls.append(k) or k >= 50) == 50
        assert calls == expected


DENSE = {"two a char": lambda s: 2 * len(s), "a char": len, "a third": lambda s: -(-len(s) // 3)}


def chunked_prefix_start(offset: int, budget: int, count) -> int:
    """`_prefix_start` on one long line, where chunk k's cut is its start k * size: the earliest that fits,
    else the first of the halving distances below a chunk that fits, else the cursor."""
    if offset == 0:
        return 0
    size = chunk_chars(budget)
    fits = lambda c: count("x" * (offset - c)) <= budget  # noqa: E731
    cuts = [k * size for k in range((offset - 1) // size + 1) if fits(k * size)]
    if cuts:
        return cuts[0]
    return next((c for c in (max(0, offset - (size >> i)) for i in range(1, size.bit_length())) if fits(c)), offset)


def chunked_suffix_end(length: int, offset: int, budget: int, count) -> int:
    """`_suffix_end` on one long line after the cursor: chunk j ends at offset + (j + 1) * size (or the end of
    the text); the latest end before the first that does not fit, else the halving distances, else the cursor."""
    if budget <= 0 or offset == length:
        return offset
    size = chunk_chars(budget)
    ends = [min(offset + (j + 1) * size, length) for j in range((length - offset - 1) // size + 1)]
    fits = lambda e: count("x" * (e - offset)) <= budget  # noqa: E731
    over = next((j for j, e in enumerate(ends) if not fits(e)), None)
    if over is None:
        return ends[-1]
    if over > 0:
        return ends[over - 1]
    return next((e for e in (min(length, offset + (size >> i)) for i in range(1, size.bit_length())) if fits(e)), offset)


@pytest.mark.parametrize("name", DENSE)
def test_window_edges_on_long_lines_against_the_chunk_rule(name):
    count = DENSE[name]
    before = "x" * 200 + "\ny = 1\n"  # the cursor in the long first line: the next newline lies after it
    after = "y = 1\n" + "x" * 200  # the cursor in the long last line: a newline lies before it
    for budget in range(0, 41):
        for offset in [*range(10), *range(10, 201, 3)]:
            w = fim_window(before, offset, "python", budget, 0, count)
            assert w.prefix_start == chunked_prefix_start(offset, budget, count), (budget, offset)
        for offset in range(6, len(after) + 1, 3):
            w = fim_window(after, offset, "python", 1, budget, count)
            assert w.suffix_end == chunked_suffix_end(len(after), offset, budget, count), (budget, offset)


def test_each_candidate_is_counted_once():
    text = "".join(f"    v{i} = {i}  # {'x' * (i % 7)}\n" for i in range(300))
    counted = []
    fim_window(text, len(text) // 2, "python", 200, 100, lambda s: counted.append(s) or len(s) // 3 + 1)
    assert len(counted) == len(set(counted)) > 3
