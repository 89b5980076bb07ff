"""Tests written for mutmut's survivors in codestral_lsp/context/neighbours.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

from codestral_lsp.context.neighbours import _jaccard, _path, _pick, chunks, display_paths, neighbour_header, render

A, B = "file:///ab.py", "file:///bee.py"
NAMES = display_paths([A, B])                              # "ab.py" and "bee.py"
A0, A16 = chunks("alpha = 1\n" + "\n" * 15 + "beta = 2\n")  # "# alpha = 1\n" 12 characters, "# beta = 2\n" 11
(B0,) = chunks("gamma = 3\n")                              # "# gamma = 3\n" 12
(DUP,) = chunks("alpha = 1\n")                             # the same text as A0
# path lines: "# path: ab.py\n" 14 characters, "# path: bee.py\n" 15


def pick(ranked, max_files: int, budget: int) -> list[tuple[str, int]]:
    return [(NAMES[uri], chunk.line) for uri, chunk in _pick(ranked, NAMES, "#", max_files, budget, len)]


def test_the_budget_counts_each_chunk_and_each_new_files_path_line():
    ranked = [(A, A0), (A, A16), (B, B0)]   # 12 + 14, 11, 12 + 15: 64 in all
    assert pick(ranked, 2, 64) == [("ab.py", 0), ("ab.py", 16), ("bee.py", 0)]
    assert pick(ranked, 2, 63) == [("ab.py", 0), ("ab.py", 16)]


def test_max_files_duplicates_and_the_budget_skip_a_chunk_and_go_on():
    assert pick([(A, A0), (B, B0), (A, A16)], 1, 100) == [("ab.py", 0), ("ab.py", 16)]
    assert pick([(A, A0), (B, DUP), (A, A16)], 2, 100) == [("ab.py", 0), ("ab.py", 16)]
    assert pick([(A, A0), (B, B0), (A, A16)], 2, 37) == [("ab.py", 0), ("ab.py", 16)]


def test_render_marks_only_a_gap_between_chunks_of_a_file():
    assert render([(A, A16), (A, A0)], NAMES, "#") == "# path: ab.py\n# alpha = 1\n# beta = 2\n"
    c = chunks("a\n" * 16 + "b\n" * 16 + "c\n")
    assert render([(A, c[0]), (A, c[2])], NAMES, "#") == "# path: ab.py\n" + "# a\n" * 16 + "# ...\n# c\n"


def test_chunks_keep_indentation_and_lone_surrogates():
    assert chunks("    x = 1\n")[0].text == "    x = 1"
    assert chunks("X = 1\n")[0].text == "X = 1"
    (chunk,) = chunks("x = '\ud800'\n")
    assert (chunk.line, chunk.text) == (0, "x = '\ud800'")


def header(anchor: str, others, max_files: int = 2, budget: int = 100, count=len) -> str:
    return neighbour_header("python", anchor, others, max_files, budget, count)


def test_a_budget_of_one_token_is_a_budget():
    assert header("x = alpha", [(A, "python", "alpha = 1\n")], budget=1, count=lambda s: len(s) // 100) == (
        "# path: ab.py\n# alpha = 1\n")


def test_the_anchor_is_the_last_16_lines_of_the_last_64_kib():
    alpha = [(A, "python", "alpha = 1\n")]
    assert header("alpha\nbeta", [(A, "python", "alpha\nbeta\n")]) == "# path: ab.py\n# alpha\n# beta\n"
    assert header("alpha\n" + "zz\n" * 15, alpha) == ""                 # "alpha" is the 17th line from the end
    assert header("alpha " + "x" * 100000 + "\nbeta", alpha) == ""       # "alpha" is 100,000 characters back


def test_the_most_similar_chunk_wins():
    others = [(A, "python", "alpha beta gamma\n"), (B, "python", "alpha delta omega kappa\n")]
    assert header("alpha beta gamma", others, max_files=1) == "# path: ab.py\n# alpha beta gamma\n"
    assert _jaccard(frozenset(["ab", "bc"]), frozenset(["bc", "cd"])) == 1 / 3


def test_a_header_of_exactly_the_budget_and_one_trimmed_when_the_parts_undercount():
    alpha = [(A, "python", "alpha = 1\n")]
    assert header("x = alpha", alpha, budget=26) == "# path: ab.py\n# alpha = 1\n"   # 26 characters
    two = [(A, "python", "alpha = 1\n" + "\n" * 15 + "beta = 2\n")]
    squares = lambda s: len(s) ** 2 // 100  # noqa: E731  (parts 1 + 1 + 1 fit 6; the whole 37 characters count 13)
    assert header("alpha beta", two, budget=6, count=squares) == "# path: ab.py\n# alpha = 1\n"


def test_display_paths_of_different_depths():
    uris = ["file:///r/a/x.py", "file:///r/b/x.py", "file:///x.py", "file:///a/x.py/q"]
    assert list(display_paths(uris).values()) == ["a/x.py", "b/x.py", "x.py", "q"]


def test_paths_of_uris():
    assert _path("C:\\a\\x.py") == "C:/a/x.py"       # a one-letter scheme is a drive: the uri as it is
    assert _path("s3://b/a%20b.py") == "a b.py"         # a two-letter scheme is a scheme
    assert _path("file:///x/") == "x"
    assert _path("untitled:") == "untitled:"
    assert _path("file:///aX") == "aX"
