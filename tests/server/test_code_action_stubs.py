"""Stubs found with tree-sitter in every language with a grammar, and listing that only visits the
requested rows (so a 2 MB document costs what one function costs)."""

import time
from types import SimpleNamespace
from typing import NamedTuple

import pytest

from codestral_lsp.context import ParseCache, parse
from codestral_lsp.context.actions import (
    Points,
    block_stop,
    find_stubs,
    nodes_in_rows,
    stub_text,
)
from codestral_lsp.lsp.documents import TextDocument
from codestral_lsp.lsp.fim_edits import fill
from codestral_lsp.settings import Settings

CASES = {  # language: (source, [(name, the stub's text)]) — only the bodies listed are stubs
    "python": ("def f(x):\n    pass\n\n\ndef g():\n    '''Doc.'''\n    ...\n\n\ndef h():\n    return 1\n\n\n"
               "def k():\n    # TODO: write k\n    raise NotImplementedError\n",
               [("f", "    pass"), ("g", "    ..."), ("k", "    # TODO: write k\n    raise NotImplementedError")]),
    "go": ('package m\n\n// F doubles.\nfunc F(x int) int {\n\tpanic("TODO")\n}\n\nfunc (s *S) M() {}\n\n'
           "func G() int {\n\treturn 1\n}\n",
           [("F", '\tpanic("TODO")\n'), ("M", "")]),
    "rust": ("fn f(x: i32) -> i32 {\n    todo!()\n}\n\nimpl S {\n    fn m(&self) { unimplemented!() }\n}\n\n"
             "fn g() -> i32 {\n    1\n}\n",
             [("f", "    todo!()\n"), ("m", " unimplemented!() ")]),
    "typescript": ('function f(x: number): number {\n  throw new Error("not implemented");\n}\n\n'
                   "const g = (a: number) => {\n};\n\nclass C {\n  m(): void {\n    // TODO\n  }\n  n() { return 1; }\n}\n",
                   [("f", '  throw new Error("not implemented");\n'), ("g", "\n"), ("m", "    // TODO\n  ")]),
    "javascript": ("function f(x) {\n  // TODO: sum\n}\n\nfunction g() { return 2; }\n", [("f", "  // TODO: sum\n")]),
    "java": ("class A {\n  int f(int x) {\n    throw new UnsupportedOperationException();\n  }\n\n  A() {}\n\n"
             "  int g() { return 1; }\n}\n",
             [("f", "    throw new UnsupportedOperationException();\n  "), ("A", "")]),
    "c": ("int f(int x) {\n}\n\nstatic char *g(void) { /* TODO */ }\n\nint h(void) { return 0; }\n",
          [("f", "\n"), ("g", " /* TODO */ ")]),
    "cpp": ("int A::f(int x) {\n    // TODO\n}\n\nint B::g() { return 1; }\n", [("f", "    // TODO\n")]),
    "lua": ("local function f(x)\nend\n\nfunction M.g(a)\n  -- TODO\nend\n\nlocal function h()\n  return 1\nend\n",
            [("f", "\n"), ("M.g", "  -- TODO\n")]),
}


def stubs(text: str, language: str, first: int = 0, last: int = 10_000):
    return [s for s in find_stubs(parse(text, language), text, Points(text), first, last, language) if s.kind == "body"]


@pytest.mark.parametrize("language", sorted(CASES))
def test_stub_bodies_are_found_in_every_language(language):
    text, expected = CASES[language]
    found = stubs(text, language)
    assert [(s.name, text[s.start:s.end]) for s in found] == expected


@pytest.mark.parametrize("language", sorted(CASES))
def test_a_filled_stub_still_parses(language):
    text, _ = CASES[language]
    body = {"python": "return 0", "lua": "return 0"}.get(language, "return;" if language in ("java", "c", "cpp") else "")
    for stub in stubs(text, language):
        new = stub_text(stub, body or "x := 0" if language == "go" else body or "let y = 0;" if language == "rust"
                        else body or "return;")
        after = text[:stub.start] + new + text[stub.end:]
        assert not parse(after, language).root_node.has_error, after
        assert new.startswith(stub.lead + stub.indent) and stub.indent.strip() == ""


def test_python_docstrings_are_offered_where_missing():
    text = CASES["python"][0]
    docs = [s.name for s in find_stubs(parse(text, "python"), text, Points(text), 0, 100, "python")
            if s.kind == "docstring"]
    assert docs == ["f", "h", "k"]


def test_only_functions_on_the_requested_rows():
    text = CASES["go"][0]
    assert [s.name for s in stubs(text, "go", 7, 7)] == ["M"]
    assert [s.name for s in stubs(text, "go", 4, 4)] == ["F"]  # a row inside the body
    assert stubs(text, "go", 9, 11) == []
    assert stubs("x = 1\n", "plaintext") == [] if parse("x", "plaintext") else True


def test_non_ascii_text_gives_string_offsets():
    text = 'fn é() -> &\'static str {\n    todo!("ünïcode")\n}\n'
    (stub,) = stubs(text, "rust")
    assert text[stub.start:stub.end] == '    todo!("ünïcode")\n'


def test_block_stop_ends_at_the_block():
    assert block_stop(4, "python")("return 1\n    x\ny = 2\n") == 15
    assert block_stop(1, "go")("return x\n}\n") == 9
    assert block_stop(0, "rust")("x }") == 2
    assert block_stop(4, "python")("return 1") is None


def big_go(n_functions: int = 40_000) -> str:
    parts = ["package big\n\n"]
    for i in range(n_functions):
        body = '\tpanic("TODO")' if i % 7 == 0 else f"\tx := {i}\n\treturn x * 2"
        parts.append(f"// F{i} does {i}.\nfunc F{i}(a int) int {{\n{body}\n}}\n\n")
    return "".join(parts)


def test_listing_a_range_of_a_2mb_file_visits_only_that_range():
    text = big_go()
    assert len(text) > 2_000_000
    tree = parse(text, "go")
    points = Points(text)
    row = points.row(len(text) // 2)
    visited = sum(1 for _ in nodes_in_rows(tree.root_node, row, row + 10))
    assert visited < 200, visited
    cpu = time.thread_time()
    for k in range(20):
        find_stubs(tree, text, points, row + k, row + k + 10, "go")
    per_listing = (time.thread_time() - cpu) / 20
    assert per_listing < 0.05, f"{per_listing * 1000:.1f} ms of CPU per listing"
    found = find_stubs(tree, text, points, 0, 60, "go")
    assert [s.name for s in found] == ["F0", "F7"]


class FakeCompleter:
    """Answers every FIM request with `answer`, cut by the stop rule as a backend does; records prompts."""

    def __init__(self, answer: str):
        self.answer, self.prompts, self.options = answer, [], []
        self.parses = ParseCache()
        self.settings = Settings()

    def window_for(self, doc, offset, others=(), tree=None):
        return Window(doc.text[:offset], doc.text[offset:], 0, len(doc.text))

    def count_tokens(self, text):
        return len(text.split())

    def fill(self, prefix, suffix, stop_fn=None, **options):
        self.prompts.append((prefix, suffix))
        self.options.append(options)
        cut = stop_fn(self.answer) if stop_fn else None
        return SimpleNamespace(text=self.answer if cut is None else self.answer[:cut])


class Window(NamedTuple):
    prefix: str
    suffix: str
    prefix_start: int
    suffix_end: int


def test_fill_keeps_the_longest_head_that_parses():
    text = CASES["go"][0]
    stub = stubs(text, "go")[0]
    completer = FakeCompleter("return x * 2\n}\n\nfunc Other() {")
    new, note = fill(completer, TextDocument("file:///m.go", "go", 1, text), stub, lambda: False)
    assert (new, note) == ("\treturn x * 2\n", "")
    prefix, suffix = completer.prompts[0]
    assert prefix.endswith("// F doubles.\nfunc F(x int) int {\n\t") and suffix.startswith("\n}\n\nfunc (s *S) M()")
    after = text[:stub.start] + new + text[stub.end:]
    assert not parse(after, "go").root_node.has_error


def test_fill_that_does_not_parse_comes_back_as_comments_above_the_placeholder():
    text = CASES["rust"][0]
    stub = stubs(text, "rust")[0]
    new, note = fill(FakeCompleter('"oops\n    #:'), TextDocument("file:///m.rs", "rust", 1, text), stub, lambda: False)
    assert note and new == '    // "oops\n    //     #:\n    todo!()\n'
    assert not parse(text[:stub.start] + new + text[stub.end:], "rust").root_node.has_error


def test_a_long_document_is_parsed_in_chunks_that_let_the_event_loop_run(monkeypatch):
    from codestral_lsp.context import parsing

    calls = []
    monkeypatch.setattr(parsing, "let_others_run", lambda: calls.append(1))
    text = big_go(5_000)
    tree = parsing.ParseCache().get("file:///big.go", 1, text, "go")
    assert not tree.root_node.has_error and tree.root_node.end_byte == len(text.encode())
    assert len(calls) >= len(text) // parsing.CHUNK


def test_parses_after_an_edit_incrementally_as_from_scratch():
    from codestral_lsp.context.actions import parses_after

    text = CASES["go"][0]
    tree = parse(text, "go")
    start = text.index('panic("TODO")')
    for new, ok in [("return x * 2", True), ("return (x *", False), ("é := \"ü\"; return 1", True)]:
        assert parses_after(text, start, start + 13, new, "go", tree) is ok
        assert parses_after(text, start, start + 13, new, "go") is ok
    broken = text + "func Broken( {\n"  # a document with errors: the edited part must be free of them
    assert parses_after(broken, start, start + 13, "return 1", "go", parse(broken, "go"))
    assert not parses_after(broken, start, start + 13, "return (", "go", parse(broken, "go"))
