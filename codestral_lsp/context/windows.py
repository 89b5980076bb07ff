r"""Prefix and suffix windows around the cursor for the FIM prompt, cut at syntactic boundaries and
kept stable while the user types.

The prompt is [SUFFIX] suffix [PREFIX] prefix, and the engine reuses its KV cache for the longest
common token prefix, so from keystroke to keystroke the suffix and the start of the prefix must stay
byte-identical. Both cuts are therefore chosen on a coarse grid that typing at the cursor does not move:

- the text before the cursor is divided into chunks of `size` characters at fixed document offsets
  (size is a quarter of the prefix budget at 3 characters a token); each chunk offers one cut, its best
  line start (a statement start with the least indentation, the earliest of equals; else the next line
  start; inside a line only when a line is longer than a chunk). The prefix starts at the earliest
  offered cut whose prefix fits the budget. Typing only appends to the last chunk, so the start moves
  only when the budget overflows, and then by a whole chunk: a jump every ~size characters typed.
- the text after the cursor is divided the same way, but at offsets relative to the cursor, so the
  suffix depends only on the text after the cursor; it ends at the latest offered cut that fits.

Worked example: prefix budget 8 tokens, so size = 8 * 3 // 4 = 6 characters, and 1 token per 3 characters.

    text  "x = 1\n" [0, 6)  "def f():\n" [6, 15)  "    a = 1\n" [15, 25)  "    b = 2\n" [25, 35)
    chunk [0, 6)  [6, 12)  [12, 18)  [18, 24)             [24, 30)  [30, 35)
    cut   0       6        15        25 (next line start)  25        35 (next line start)
    cursor at 35: a cut fits when (35 - cut) // 3 + 1 <= 8, that is cut >= 12: the prefix starts at 15.

    >>> count = lambda s: len(s) // 3 + 1
    >>> text = "x = 1\ndef f():\n    a = 1\n    b = 2\n"
    >>> fim_window(text, 35, "python", 8, 0, count).prefix_start
    15

    Typing "  " keeps it there (cut >= 14); at "    c" (cut >= 17) it jumps a whole line, and stays:

    >>> [fim_window(text + typed, 35 + len(typed), "python", 8, 0, count).prefix_start
    ...  for typed in ("  ", "    c", "    c = 3")]
    [15, 25, 25]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .imports import import_spans
from .languages import profile
from .lines import LineRanker, line_start

CHARS_PER_TOKEN = 3    # a guess that sizes chunks and picks the first candidate; budgets are counted exactly
CHUNKS_PER_BUDGET = 4  # the window start jumps by about a quarter of the budget at a time

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Window:
    prefix: str        # text given to the model before the cursor (may start with imports and neighbour snippets)
    suffix: str        # text after the cursor
    prefix_start: int  # document offset (Python str index) where the cut prefix text begins (after imports/snippets)
    suffix_end: int    # document offset where the suffix text ends


def fim_window(text: str, offset: int, language_id: str, prefix_tokens: int, suffix_tokens: int,
               count_tokens: CountTokens, tree=None, header: str = "") -> Window:
    """Cut the prompt's prefix and suffix around `offset` within their token budgets.

    prefix = header + imports above the window + text[prefix_start:offset]; suffix = text[offset:suffix_end].
    The header is dropped when it needs more than half the prefix budget; imports get at most a
    quarter of what is left. `tree` (of exactly this text) refines where statements start.

    >>> w = fim_window("a = 1\\nb = 2\\n", 8, "python", 64, 64, lambda s: len(s) // 3 + 1)
    >>> (w.prefix, w.suffix, w.prefix_start, w.suffix_end)
    ('a = 1\\nb ', '= 2\\n', 0, 12)
    """
    offset = min(max(offset, 0), len(text))
    header_tokens = count_tokens(header) if header else 0
    if header_tokens > prefix_tokens // 2:
        header, header_tokens = "", 0
    language = profile(language_id)
    spans = _fitting_imports(text, offset, language_id, (prefix_tokens - header_tokens) // 4, count_tokens)

    def prefix(start: int) -> str:
        return header + "".join(text[s:e] for s, e in spans if e <= start) + text[start:offset]

    start = _prefix_start(text, offset, prefix, prefix_tokens, count_tokens, LineRanker(text, tree, offset, language))
    end = _suffix_end(text, offset, suffix_tokens, count_tokens, LineRanker(text, language=language))
    return Window(prefix(start), text[offset:end], start, end)


def _fitting_imports(text: str, offset: int, language_id: str, budget: int,
                     count_tokens: CountTokens) -> list[tuple[int, int]]:
    """The longest leading run of the file's imports above the cursor line that fits `budget`."""
    spans = import_spans(text, line_start(text, offset), language_id)
    fits = lambda n: count_tokens("".join(text[s:e] for s, e in spans[:n])) <= budget  # noqa: E731
    if not spans or fits(len(spans)):
        return spans
    lo, hi = 0, len(spans)  # fits(lo) holds (or lo == 0), fits(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return spans[:lo]


def chunk_chars(budget: int) -> int:
    return max(4, budget * CHARS_PER_TOKEN // CHUNKS_PER_BUDGET)


def _prefix_start(text: str, offset: int, prefix: Callable[[int], str], budget: int,
                  count_tokens: CountTokens, ranker: LineRanker) -> int:
    """The earliest chunk cut c (see the module docstring) with count(prefix(c)) <= budget."""
    if offset == 0:
        return 0
    size = chunk_chars(budget)
    cut = _memo(lambda k: _prefix_cut(text, k * size, min((k + 1) * size, offset), offset, ranker) if k else 0)
    fits = _memo(lambda k: count_tokens(prefix(cut(k))) <= budget)
    guess = -(-(offset - budget * CHARS_PER_TOKEN + len(prefix(offset))) // size)  # ceil: first chunk estimated to fit
    k = first_true(0, (offset - 1) // size, guess, fits)
    if k is not None:
        return cut(k)
    return _closest_fit([max(0, offset - (size >> i)) for i in range(1, size.bit_length())],
                        lambda s: count_tokens(prefix(s)) <= budget, offset)


def _prefix_cut(text: str, lo: int, hi: int, offset: int, ranker: LineRanker) -> int:
    """The best line start in [lo, hi), earliest of equals; else the next one before the cursor; else lo."""
    best = best_cut(text, range_starts(text, lo, hi), ranker, latest=False, default=None)
    if best is None:
        newline = text.find("\n", lo, offset)
        best = newline + 1 if newline >= 0 else lo  # lo: a line longer than a chunk is cut inside
    return best


def _suffix_end(text: str, offset: int, budget: int, count_tokens: CountTokens, ranker: LineRanker) -> int:
    """The latest cut e after the cursor, on chunks counted from the cursor, with count(text[offset:e]) <= budget."""
    if budget <= 0 or offset == len(text):
        return offset
    size = chunk_chars(budget)
    cut = _memo(lambda j: _suffix_cut(text, offset, offset + j * size, min(offset + (j + 1) * size, len(text)), ranker))
    fits = _memo(lambda j: count_tokens(text[offset:cut(j)]) <= budget)
    last = (len(text) - offset - 1) // size
    over = first_true(0, last, CHUNKS_PER_BUDGET - 1, lambda j: not fits(j))
    if over is None:
        return cut(last)
    if over > 0:
        return cut(over - 1)
    return _closest_fit([min(len(text), offset + (size >> i)) for i in range(1, size.bit_length())],
                        lambda e: count_tokens(text[offset:e]) <= budget, offset)


def _suffix_cut(text: str, offset: int, lo: int, hi: int, ranker: LineRanker) -> int:
    """The best end in (lo, hi]: the end of the text, else the line start before the best line (latest of
    equals), else the last line start after the cursor, else hi (a line longer than a chunk is cut inside)."""
    if hi == len(text):
        return hi
    best = best_cut(text, range_starts(text, lo + 1, hi + 1), ranker, latest=True, default=None)
    if best is None:
        newline = text.rfind("\n", offset, lo)
        best = newline + 1 if newline >= 0 else hi
    return best


def range_starts(text: str, lo: int, hi: int):
    """Line starts p with lo <= p < hi: range_starts("ab\\ncd\\ne", 1, 6) yields 3 (6 is excluded)."""
    if lo < hi and (lo == 0 or text[lo - 1] == "\n"):
        yield lo
    p = lo
    while (j := text.find("\n", p, hi - 1)) >= 0:
        yield j + 1
        p = j + 1


def best_cut(text: str, starts, ranker: LineRanker, latest: bool, default: int) -> int:
    """The best-ranked of `starts` (earliest or latest of equals), or `default` when there are none."""
    best, best_key = default, None
    for p in starts:
        key = ranker.rank(p)
        if best_key is None or key < best_key or (latest and key == best_key):
            best, best_key = p, key
    return best


def first_true(lo: int, hi: int, guess: int, pred: Callable[[int], bool]) -> int | None:
    """Smallest k in [lo, hi] with pred(k), for pred false..false true..true; None when pred(hi) is false.

    Gallops from `guess` (1, 2, 4, ... steps) then bisects, so a good guess costs few calls of pred.
    """
    if hi < lo:
        return None
    k = min(max(guess, lo), hi)
    good, bad, step = (k, None, 1) if pred(k) else (None, k, 1)
    while good is None:
        if bad >= hi:
            return None
        k = min(hi, bad + step)
        good, bad, step = (k, bad, step) if pred(k) else (None, k, step * 2)
    while bad is None:
        if good <= lo:
            return lo
        k = max(lo, good - step)
        good, bad, step = (k, None, step * 2) if pred(k) else (good, k, step)
    while good - bad > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if pred(mid) else (good, mid)
    return good


def _closest_fit(candidates: list[int], fits: Callable[[int], bool], fallback: int) -> int:
    """The first candidate (they run from far to near the cursor) that fits; for text too dense for a chunk."""
    return next((c for c in candidates if fits(c)), fallback)


def _memo(f: Callable[[int], object]):
    memo: dict[int, object] = {}
    return lambda k: memo[k] if k in memo else memo.setdefault(k, f(k))
