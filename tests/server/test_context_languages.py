"""Language registry and the parse cache (incremental parses equal fresh ones)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codestral_lsp.context import ParseCache, get_language, language_id_for_path, line_comment, parse
from codestral_lsp.context.languages import GRAMMARS
from codestral_lsp.context.parsing import common_head

SNIPPETS = {
    "python": "def f(x):\n    return x\n",
    "javascript": "function f(x) {\n  return x;\n}\n",
    "javascriptreact": "const A = () => <div>{x}</div>;\n",
    "typescript": "function f(x: number): number {\n  return x;\n}\n",
    "typescriptreact": "const A = (p: P) => <div>{p.x}</div>;\n",
    "rust": "fn f(x: i32) -> i32 {\n    x\n}\n",
    "go": "package main\n\nfunc f(x int) int {\n\treturn x\n}\n",
    "java": "class A {\n    int f(int x) {\n        return x;\n    }\n}\n",
    "c": "int f(int x) {\n    return x;\n}\n",
    "cpp": "template <typename T> T f(T x) {\n    return x;\n}\n",
    "lua": "local function f(x)\n  return x\nend\n",
}


@pytest.mark.parametrize("language", sorted(GRAMMARS))
def test_every_language_parses_its_snippet_without_errors(language):
    tree = parse(SNIPPETS[language], language)
    assert tree is not None and not tree.root_node.has_error
    assert get_language(language) is get_language(language)  # loaded once


def test_unknown_languages_give_none():
    assert get_language("cobol") is None and parse("x", "plaintext") is None
    assert ParseCache().get("file:///a.txt", 1, "x", "plaintext") is None


@pytest.mark.parametrize("name, expected", [
    ("file:///src/app/Main.TSX", "typescriptreact"), ("/a/b.py", "python"), ("C:\\x\\y.rs", "rust"),
    ("file:///a/b%20c.go", "go"), ("x.hpp", "cpp"), ("x.h", "c"), ("x.mjs", "javascript"),
    ("x.jsx", "javascriptreact"), ("README.md", None), ("Makefile", None), ("untitled:Untitled-1", None),
])
def test_language_from_file_name(name, expected):
    assert language_id_for_path(name) == expected


def test_line_comment_markers():
    languages = ("python", "lua", "rust", "cpp", "go", "plaintext")
    assert [line_comment(x) for x in languages] == ["#", "--", "//", "//", "//", "#"]


def test_same_version_is_not_parsed_again():
    cache = ParseCache()
    tree = cache.get("file:///a.py", 1, "x = 1\n", "python")
    assert cache.get("file:///a.py", 1, "x = 1\n", "python") is tree
    assert cache.get("file:///a.py", 2, "x = 12\n", "python") is not tree


def test_lru_keeps_the_latest_documents():
    cache = ParseCache(size=2)
    first = cache.get("file:///a.py", 1, "a = 1\n", "python")
    cache.get("file:///b.py", 1, "b = 1\n", "python")
    assert cache.get("file:///a.py", 1, "a = 1\n", "python") is first  # a is now the most recent
    cache.get("file:///c.py", 1, "c = 1\n", "python")                    # evicts b
    assert cache.get("file:///a.py", 1, "a = 1\n", "python") is first
    assert set(cache._entries) == {"file:///a.py", "file:///c.py"}
    cache.forget("file:///a.py")
    assert set(cache._entries) == {"file:///c.py"}


def test_incremental_parse_leaves_the_previous_tree_alone():
    cache = ParseCache()
    old = cache.get("file:///a.py", 1, "x = 1\n", "python")
    cache.get("file:///a.py", 2, "y = [x,\n     2]\nx = 1\n", "python")
    assert str(old.root_node) == str(parse("x = 1\n", "python").root_node)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), language=st.sampled_from(["python", "rust", "typescriptreact", "lua"]))
def test_incremental_parses_equal_fresh_parses(data, language):
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    text = SNIPPETS[language] * 3
    cache = ParseCache()
    cache.get("file:///x", 0, text, language)
    for version in range(1, 6):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randrange(4))
        text = text[:i] + data.draw(st.text(alphabet="(){}\n \"x1é😀:", max_size=4)) + text[j:]
        tree = cache.get("file:///x", version, text, language)
        fresh = parse(text, language).root_node
        # Error recovery may place ERROR nodes differently after an incremental edit; well-formed
        # text must parse the same, and broken text must still cover the whole document.
        if fresh.has_error:
            assert tree.root_node.has_error and tree.root_node.end_byte == fresh.end_byte
        else:
            assert str(tree.root_node) == str(fresh)


@given(a=st.binary(max_size=300), b=st.binary(max_size=300))
def test_common_head(a, b):
    n = common_head(a, b, block=8)
    assert a[:n] == b[:n] and (n == min(len(a), len(b)) or a[n] != b[n])
