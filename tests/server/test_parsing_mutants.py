"""Tests written for mutmut's survivors in codestral_lsp/context/parsing.py (docs/DEVELOPMENT.md,
"Mutation testing"): byte arithmetic against plain oracles, the edit handed to tree-sitter, and
which tree the cache parses from."""

from __future__ import annotations

import random

import pytest

from codestral_lsp.context import parsing
from codestral_lsp.context.parsing import ParseCache, _edit, common_head, encode, parse, parse_source, point_at


def plain_head(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def plain_point(source: bytes, i: int) -> tuple[int, int]:
    lines = source[:i].split(b"\n")
    return len(lines) - 1, len(lines[-1])


def test_point_at_is_row_and_byte_column():
    for source in (b"ab\ncd\n\nxyz\n", b"\nx\n"):
        for i in range(len(source) + 1):
            assert point_at(source, i) == plain_point(source, i), (source, i)
    assert point_at(b"\xc3\xa9\nx", 3) == (1, 0) and point_at(b"\xc3\xa9x", 2) == (0, 2)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 1 << 16])
def test_common_head_against_a_byte_loop(block):
    rng = random.Random(block)
    pairs = [(b"", b""), (b"abc", b"abcd"), (b"abcd", b"abc"), (b"abc", b"abc"), (b"x", b"y"),
             (b"abcdef", b"abcdeX"), (b"abcdef", b"Xbcdef"), (b"ab", b"")]
    for _ in range(300):
        a = bytes(rng.choice(b"ab") for _ in range(rng.randrange(12)))
        b = a[: rng.randrange(len(a) + 1)] + bytes(rng.choice(b"ab") for _ in range(rng.randrange(4)))
        pairs.append((a, b))
    for a, b in pairs:
        assert common_head(a, b, block) == plain_head(a, b), (a, b, block)


class Recorder:
    def edit(self, **points):
        self.points = points


def test_edit_names_the_changed_bytes_and_their_points():
    tree = Recorder()
    _edit(tree, b"ab\n-cd", b"ab\nXYcd")
    assert tree.points == dict(start_byte=3, old_end_byte=4, new_end_byte=5, start_point=(1, 0),
                               old_end_point=(1, 1), new_end_point=(1, 2))
    _edit(tree, b"abc", b"abc\nd")  # appended: the common tail is empty
    assert tree.points == dict(start_byte=3, old_end_byte=3, new_end_byte=5, start_point=(0, 3),
                               old_end_point=(0, 3), new_end_point=(1, 1))
    _edit(tree, b"xa\nb", b"a\nb")  # a deleted head: the tail runs back to the start
    assert tree.points == dict(start_byte=0, old_end_byte=1, new_end_byte=0, start_point=(0, 0),
                               old_end_point=(0, 1), new_end_point=(0, 0))


def test_a_newer_version_is_parsed_from_the_old_tree_of_the_same_language(monkeypatch):
    olds = []
    real = parsing.parse_source

    def spy(parser, source, old=None):
        olds.append(old)
        return real(parser, source, old)

    monkeypatch.setattr(parsing, "parse_source", spy)
    cache = ParseCache()
    first = cache.get("file:///a.py", 1, "x = 1\n", "python")
    second = cache.get("file:///a.py", 2, "x = 12\ny = 2\n", "python")
    cache.get("file:///a.py", 3, "x = 12\n", "go")  # another language: a fresh parse
    assert olds[0] is None and olds[1] is not None and olds[2] is None
    assert first.root_node.text == b"x = 1\n"  # the cached tree was copied before the edit, not changed
    assert str(second.root_node) == str(parse("x = 12\ny = 2\n", "python").root_node)


def test_incremental_trees_equal_fresh_ones_over_random_edits():
    rng = random.Random(7)
    text, cache = "def f(a):\n    return a\n", ParseCache()
    for version in range(60):
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        text = text[:i] + rng.choice(["", "x", "\n", "(", ")", "  y = 2\n", "é"]) + text[j:]
        tree = cache.get("file:///r.py", version, text, "python")
        assert str(tree.root_node) == str(parse(text, "python").root_node), (version, text)


def test_the_cache_keeps_the_latest_size_documents():
    cache = ParseCache()
    trees = [cache.get(f"file:///{i}.py", 1, "x\n", "python") for i in range(8)]
    assert cache.get("file:///0.py", 1, "x\n", "python") is trees[0]  # 8 held, 0 is now the latest
    cache.get("file:///8.py", 1, "x\n", "python")  # the ninth drops the oldest, 1
    assert cache.get("file:///0.py", 1, "x\n", "python") is trees[0]
    assert cache.get("file:///2.py", 1, "x\n", "python") is trees[2]
    assert cache.get("file:///1.py", 1, "x\n", "python") is not trees[1]


def test_forget_drops_one_document():
    cache = ParseCache()
    tree = cache.get("file:///a.py", 1, "x\n", "python")
    kept = cache.get("file:///b.py", 1, "y\n", "python")
    cache.forget("file:///a.py")
    cache.forget("file:///never.py")  # unknown: nothing happens
    assert cache.get("file:///a.py", 1, "x\n", "python") is not tree
    assert cache.get("file:///b.py", 1, "y\n", "python") is kept


def test_lone_surrogates_pass_through_encoding():
    assert encode("a\ud800b") == b"a\xed\xa0\x80b"  # possible in a JSON string the client sent
    assert parse("x = '\ud800'\n", "python").root_node.type == "module"


class RecordingParser:
    def __init__(self):
        self.calls = []

    def parse(self, *args):
        self.calls.append(args)
        return "tree"


def test_parse_source_hands_over_the_old_tree_and_long_sources_in_chunks():
    short, long = b"x" * (4 * parsing.CHUNK), b"x" * (4 * parsing.CHUNK + 1)
    for old in (None, "old tree"):
        parser = RecordingParser()
        assert parse_source(parser, short, old) == "tree"
        assert parser.calls == [(short, old) if old else (short,)]
        parser = RecordingParser()
        parse_source(parser, long, old)
        [(read, *rest)] = parser.calls
        assert rest == ([old] if old else [])
        assert read(0, (0, 0)) == long[:parsing.CHUNK] and read(4 * parsing.CHUNK, (0, 0)) == b"x"


def test_long_sources_are_read_in_chunks_letting_others_run(monkeypatch):
    calls = []
    monkeypatch.setattr(parsing, "let_others_run", lambda: calls.append(1))
    text = "x = 1\n" * (4 * parsing.CHUNK // 6 + 10)
    tree = parse(text, "python")
    assert tree.root_node.end_byte == len(text) and not tree.root_node.has_error
    assert len(calls) >= 4
    calls.clear()
    parse("x" * (4 * parsing.CHUNK), "python")  # up to 4 chunks: handed over whole
    assert calls == []
