"""neighbour_header: similar chunks of other open documents as comments, within budgets, stable."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from codestral_lsp.context import neighbour_header
from codestral_lsp.context.neighbours import CHUNK_LINES, chunks, display_paths


def count(s: str) -> int:
    return len(s) // 3 + 1


GEOMETRY = """import math


def area(w, h):
    return w * h


def perimeter(w, h):
    return 2 * (w + h)
"""
CIRCLE = """import math


def circle_area(r):
    return math.pi * r * r
"""
TS_UTIL = """export function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
"""
OTHERS = [
    ("file:///proj/pkg/geometry.py", "python", GEOMETRY),
    ("file:///proj/pkg/circle.py", "python", CIRCLE),
    ("file:///proj/web/util.ts", "typescript", TS_UTIL),
]


def test_python_header_has_the_most_similar_file():
    header = neighbour_header("python", "w, h = 3, 4\nprint(area(w, h))\n", OTHERS, 1, 256, count)
    assert header == (
        "# path: geometry.py\n"
        "# import math\n#\n#\n"
        "# def area(w, h):\n#     return w * h\n#\n#\n"
        "# def perimeter(w, h):\n#     return 2 * (w + h)\n")


def test_files_are_listed_by_path_whatever_their_scores():
    header = neighbour_header("python", "r = 2\nprint(circle_area(r), area(w, h), math.pi)\n", OTHERS, 3, 512, count)
    assert header.index("# path: circle.py") < header.index("# path: geometry.py")
    assert "util.ts" not in header  # another language family


def test_typescript_uses_slash_comments_and_lends_to_javascript():
    header = neighbour_header("javascriptreact", "const y = clamp(x, 0, 10);\n", OTHERS, 2, 256, count)
    assert header == ("// path: util.ts\n"
                      "// export function clamp(x: number, lo: number, hi: number): number {\n"
                      "//   return Math.min(hi, Math.max(lo, x));\n// }\n")


def test_lua_comments():
    lua = [("file:///a/util.lua", "lua", "local function clamp(x, lo, hi)\n  return x\nend\n")]
    assert neighbour_header("lua", "y = clamp(1, 2, 3)\n", lua, 1, 100, count).startswith("-- path: util.lua\n-- local")


def test_nothing_similar_or_no_budget_gives_nothing():
    assert neighbour_header("python", "zzz = qqq\n", OTHERS, 3, 256, count) == ""
    assert neighbour_header("python", "print(area(w, h))\n", OTHERS, 0, 256, count) == ""
    assert neighbour_header("python", "print(area(w, h))\n", OTHERS, 3, 0, count) == ""
    assert neighbour_header("python", "print(area(w, h))\n", OTHERS, 3, 5, count) == ""  # no chunk fits
    assert neighbour_header("python", "", OTHERS, 3, 256, count) == ""


def test_identical_chunks_are_shown_once():
    copy = [("file:///a/one.py", "python", GEOMETRY), ("file:///b/two.py", "python", GEOMETRY)]
    header = neighbour_header("python", "print(area(w, h))\n", copy, 2, 512, count)
    assert header.count("def area") == 1 and header.startswith("# path: one.py\n")


def test_chunks_and_gaps():
    text = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(20))  # 40 lines: chunks at 0, 16, 32
    assert [c.line for c in chunks(text)] == [0, CHUNK_LINES, 2 * CHUNK_LINES]
    anchor = "f0(1) + f19(2)\n"  # the first and the last chunk, not the middle one
    header = neighbour_header("python", anchor, [("file:///m.py", "python", text)], 1, 1000, count)
    assert "# ...\n# def f16(x):" in header and "def f8(" not in header


def test_anchor_is_the_last_lines_only():
    far = "area(w, h)\n" + "x = 1\n" * CHUNK_LINES
    assert neighbour_header("python", far, OTHERS, 3, 256, count) == ""


def test_display_paths():
    assert display_paths(["file:///a/x.py", "file:///b/x.py", "file:///b/y.py", "untitled:Untitled-1"]) == {
        "file:///a/x.py": "a/x.py", "file:///b/x.py": "b/x.py", "file:///b/y.py": "y.py",
        "untitled:Untitled-1": "Untitled-1"}


def test_five_megabyte_neighbour_is_fast_once_chunked():
    big = GEOMETRY * (5_000_000 // len(GEOMETRY))
    others = [("file:///big.py", "python", big)]
    neighbour_header("python", "print(area(w, h))\n", others, 1, 256, count)  # chunks it once
    started = time.thread_time()  # CPU time of this thread: what the code costs, however busy the machine
    header = neighbour_header("python", "print(perimeter(w, h))\n", others, 1, 256, count)
    assert time.thread_time() - started < 1.0 and "def perimeter" in header


@settings(max_examples=100, deadline=None)
@given(anchor=st.text(max_size=200), texts=st.lists(st.text(max_size=400), max_size=4),
       max_files=st.integers(0, 3), budget=st.integers(0, 200))
def test_header_respects_its_budgets(anchor, texts, max_files, budget):
    others = [(f"file:///d{i}.py", "python", t) for i, t in enumerate(texts)]
    header = neighbour_header("python", anchor, others, max_files, budget, count)
    assert header == "" or (count(header) <= budget and header.endswith("\n"))
    assert header.count("# path: ") <= max_files
