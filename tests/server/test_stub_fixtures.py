"""Stub detection on hand-labelled files (`fixtures/stubs/`, written for these tests): each function carries
a label on the line above it, `expect stub: NAME` or `expect body: NAME`. Detection must find exactly the
labelled stubs among exactly the labelled functions, and each stub's edit range must be exactly its body,
checked by a text oracle that does not use tree-sitter: for braces, everything between the body's "{"
and its matching "}"; for Python, the lines indented under the `def` after any docstring."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codestral_lsp.context import parse
from codestral_lsp.context.actions import Points, find_stubs, functions_in_rows, stub_text

FIXTURES = Path(__file__).parent / "fixtures" / "stubs"
FILES = {"inventory.py": "python", "queue.go": "go", "ledger.rs": "rust", "cart.js": "javascript",
         "router.ts": "typescript", "Library.java": "java", "ringbuf.c": "c"}
LABEL = re.compile(r"^\s*(?:#|//|/\*)\s*expect (stub|body): (\S+?)(?:\s*\*/)?\s*$", re.M)
FILLER = {"python": "return None", "go": "return", "rust": "unimplemented!()"}  # else "return;"


def labels(text: str) -> list[tuple[str, str, int]]:
    """(kind, name, offset of the label) in document order."""
    return [(m.group(1), m.group(2), m.start()) for m in LABEL.finditer(text)]


def read(name: str) -> tuple[str, str]:
    return (FIXTURES / name).read_text(encoding="utf-8"), FILES[name]


def body_stubs(text: str, language: str):
    found = find_stubs(parse(text, language), text, Points(text), 0, text.count("\n") + 1, language)
    return [s for s in found if s.kind == "body"]


def test_every_language_has_a_fixture_with_stubs_and_bodies():
    assert set(FILES.values()) == {"python", "go", "rust", "javascript", "typescript", "java", "c"}
    for name in FILES:
        kinds = [kind for kind, _, _ in labels(read(name)[0])]
        assert kinds.count("stub") >= 4 and kinds.count("body") >= 4, (name, kinds)


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_fixture_parses(name):
    text, language = read(name)
    assert not parse(text, language).root_node.has_error


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_labelled_function_is_found_and_nothing_else(name):
    """Named functions; anonymous ones (callbacks, named "function") carry no label and are no stubs here."""
    text, language = read(name)
    found = [f.name for f in functions_in_rows(parse(text, language), 0, text.count("\n") + 1, language)]
    assert sorted(n for n in found if n != "function") == sorted(n for _, n, _ in labels(text))


@pytest.mark.parametrize("name", sorted(FILES))
def test_exactly_the_labelled_stubs_are_found(name):
    text, language = read(name)
    assert [s.name for s in body_stubs(text, language)] == [n for kind, n, _ in labels(text) if kind == "stub"]


def brace_body(text: str, after: int) -> tuple[int, int]:
    """(index just after the first "{" at or after `after`, index of its matching "}")."""
    opened = text.index("{", after)
    depth = 0
    for k in range(opened, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return opened + 1, k
    raise AssertionError(f"no closing brace for the one at {opened}")


def python_body(text: str, after: int) -> tuple[int, int]:
    """(start, end) of the lines indented under the first `def` line at or after `after`, after a docstring."""
    match = re.compile(r"^([ \t]*)(?:async\s+)?def\s.*:[ \t]*\n", re.M).search(text, after)
    start, indent = match.end(), len(match.group(1))
    end = start
    for line in text[start:].splitlines(keepends=True):
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        end += len(line)
    stripped = text[start:end].lstrip()
    if stripped.startswith('"""'):
        doc_start = end - len(text[start:end].lstrip())
        start = text.index('"""', doc_start + 3) + 3
    return start, len(text[:end].rstrip())


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_stub_range_is_exactly_its_body(name):
    text, language = read(name)
    stubs = body_stubs(text, language)
    marks = [offset for kind, _, offset in labels(text) if kind == "stub"]
    assert len(stubs) == len(marks)
    for stub, mark in zip(stubs, marks):
        start, end = python_body(text, mark) if language == "python" else brace_body(text, text.index("\n", mark))
        assert start <= stub.start <= stub.end <= end, (stub.name, start, end, stub)
        assert not text[start:stub.start].strip() and not text[stub.end:end].strip(), \
            (stub.name, text[start:stub.start], text[stub.end:end])


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_filled_body_keeps_each_fixture_parsing(name):
    text, language = read(name)
    for stub in body_stubs(text, language):
        new = text[:stub.start] + stub_text(stub, FILLER.get(language, "return;")) + text[stub.end:]
        assert not parse(new, language).root_node.has_error, (stub.name, new)


def test_stub_counts_agree_with_the_labels():
    from codestral_lsp.tools.stub_counts import count

    for name, language in FILES.items():
        text = read(name)[0]
        counted = count(language, [str(FIXTURES / name)])
        named = [n for _, n, _ in labels(text)]
        assert counted["files"] == 1 and counted["stubs"] == [k for k, _, _ in labels(text)].count("stub"), name
        assert counted["functions"] >= len(named) and sum(counted["placeholders"].values()) == counted["stubs"]


def test_stub_counts_read_the_installed_python_packages():
    from codestral_lsp.tools.stub_counts import count_stubs

    result = count_stubs(("python",), limit=20)["python"]
    assert result["files"] == 20 and result["functions"] > result["stubs"] >= 0
