"""Quick fixes and rewrites: the smallest enclosing statement found with tree-sitter in each language,
the prompt that carries the diagnostic's message, and what resolve refuses (same text, no parse)."""

from types import SimpleNamespace

import pytest

from codestral_lsp.context import parse
from codestral_lsp.context.actions import Points, enclosing_statement, files_of_tests, fix_note, header_of_test
from codestral_lsp.lsp.documents import TextDocument
from codestral_lsp.lsp.fim_edits import regenerate, write_test

from test_code_action_stubs import FakeCompleter  # tests/server is on sys.path (rootdir import mode)

CASES = {  # language: (source, the text the diagnostic points at, the statement expected around it)
    "python": ("def f(x):\n    y = g(x, 1)\n    return y\n", "g(x", "y = g(x, 1)"),
    "go": ("package m\n\nfunc F() int {\n\tx := undefinedName + 1\n\treturn x\n}\n", "undefinedName",
           "x := undefinedName + 1"),
    "rust": ("fn f() -> i32 {\n    let x: i32 = \"a\";\n    x\n}\n", '"a"', 'let x: i32 = "a";'),
    "typescript": ("function f(): number {\n  const x: number = 'a';\n  return x;\n}\n", "'a'",
                   "const x: number = 'a';"),
    "javascript": ("if (a) {\n  call(b);\n}\n", "b", "call(b);"),
    "java": ("class A {\n  int f() {\n    int x = \"a\";\n    return x;\n  }\n}\n", '"a"', 'int x = "a";'),
    "c": ("int f(void) {\n  int x = y;\n  return x;\n}\n", "y;", "int x = y;"),
    "cpp": ("int f() {\n  auto x = y;\n  return x;\n}\n", "y;", "auto x = y;"),
    "lua": ("local function f()\n  local x = y + 1\n  return x\nend\n", "y", "local x = y + 1"),
}


@pytest.mark.parametrize("language", sorted(CASES))
def test_the_smallest_statement_around_a_diagnostic(language):
    text, at, expected = CASES[language]
    start = text.index(at)
    a, b = enclosing_statement(parse(text, language), Points(text), start, start + len(at), language)
    assert text[a:b] == expected


def test_the_message_is_a_comment_above_the_statement():
    text, at, expected = CASES["go"]
    start = text.index(expected)
    completer = FakeCompleter("x := 1\n")
    regenerate(completer, doc("go", text), start, start + len(expected), "undefined: undefinedName", lambda: False)
    prefix, suffix = completer.prompts[0]
    assert prefix.endswith("{  // FIX: undefined: undefinedName\n\t") and suffix.startswith("\n\treturn x")
    assert fix_note(text, Points(text), start, "oops", "plaintext")[1] == ""  # no comment marker known
    text = "package m\n\nfunc F() int {\n\t// Sum.\r\n\tx := y\r\n}\n"  # above: a comment, so a line of its own
    start = text.index("x :=")
    assert fix_note(text, Points(text), start, "undefined: y", "go") == (text.index("\tx"), "\t// FIX: undefined: y\n")


def doc(language: str, text: str) -> TextDocument:
    return TextDocument(f"file:///m.{language}", language, 1, text)


def test_regenerate_offers_a_different_statement_that_parses():
    text, _, statement = CASES["go"]
    start = text.index(statement)
    completer = FakeCompleter("x := 41 + 1\n\treturn x\n}")
    edit = regenerate(completer, doc("go", text), start, start + len(statement), "undefined: undefinedName",
                      lambda: False)
    assert edit[1:] == (start, start + len(statement), "x := 41 + 1", "")
    assert "{  // FIX: undefined: undefinedName\n" in completer.prompts[0][0]


@pytest.mark.parametrize("answer, reason", [("x := undefinedName + 1", "the same text"),
                                            ("x := (1 +", "does not parse"), ("", "nothing")])
def test_regenerate_refuses_what_is_no_fix(answer, reason):
    text, _, statement = CASES["go"]
    start = text.index(statement)
    out = regenerate(FakeCompleter(answer), doc("go", text), start, start + len(statement), "m", lambda: False)
    assert isinstance(out, str) and reason in out


@pytest.mark.parametrize("language, name, header", [
    ("python", "area", "def test_area():\n"), ("go", "area", "func TestArea(t *testing.T) {\n"),
    ("rust", "area", "#[test]\nfn test_area() {\n"), ("typescript", "area", 'test("area", () => {\n')])
def test_test_headers_are_the_languages(language, name, header):
    assert header_of_test(name, language) == header


def test_test_files_by_convention():
    assert files_of_tests("/p/pkg/shapes.py", "python")[0] == "/p/pkg/tests/test_shapes.py"
    assert files_of_tests("/p/src/shapes.ts", "typescript") == ["/p/src/shapes.test.ts", "/p/src/shapes.spec.ts"]
    assert files_of_tests("/p/src/lib.rs", "rust") == []  # Rust: the in-file `mod tests`


def test_a_rust_test_goes_into_the_test_module():
    text = "fn area(w: i64) -> i64 {\n    w * w\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"
    completer = FakeCompleter("assert_eq!(area(2), 4);\n    }\n}\n")
    completer.parses = SimpleNamespace(get=lambda uri, version, text, language: parse(text, language))
    target, at, end, new, note = write_test(completer, doc("rust", text), "area", 0, text.index("\n}") + 2,
                                            lambda uri: None, lambda: False)
    after = text[:at] + new + text[end:]
    assert note == "" and "    #[test]\n    fn test_area() {\n        assert_eq!(area(2), 4);\n    }\n}\n" in after
    assert not parse(after, "rust").root_node.has_error


def test_a_go_test_goes_into_the_test_file(tmp_path):
    (tmp_path / "shapes_test.go").write_text("package shapes\n\nimport \"testing\"\n")
    text = "package shapes\n\nfunc Area(w int) int {\n\treturn w * w\n}\n"
    source = TextDocument((tmp_path / "shapes.go").as_uri(), "go", 1, text)
    completer = FakeCompleter("if Area(2) != 4 {\n\t\tt.Fatal(Area(2))\n\t}\n}\n")
    completer.parses = SimpleNamespace(get=lambda uri, version, text, language: parse(text, language))
    target, at, end, new, note = write_test(completer, source, "Area", 16, len(text), lambda uri: None, lambda: False)
    assert target.uri.endswith("shapes_test.go") and at == end == len(target.text)
    after = target.text + new
    assert "func TestArea(t *testing.T) {\n\tif Area(2) != 4 {" in after and not parse(after, "go").root_node.has_error
    assert "// func Area(w int) int {" in completer.prompts[0][0]  # the function under test, as context


def test_a_java_test_goes_beside_its_method_in_the_class():
    text = "class Shapes {\n  int area(int w) {\n    return w * w;\n  }\n}\n"
    completer = FakeCompleter("assertEquals(4, area(2));\n  }\n}\n")
    completer.parses = SimpleNamespace(get=lambda uri, version, text, language: parse(text, language))
    start = text.index("int area")
    target, at, end, new, note = write_test(completer, doc("java", text), "area", start, text.index("  }\n}") + 3,
                                            lambda uri: None, lambda: False)
    after = text[:at] + new + text[end:]
    assert note == "" and "  @Test\n  void testArea() {\n    assertEquals(4, area(2));\n  }\n" in after
    assert not parse(after, "java").root_node.has_error and after.rstrip().endswith("}")


def test_a_python_test_goes_into_tests_test_module(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_shapes.py").write_text("from shapes import area\n")
    text = "def area(w):\n    return w * w\n"
    source = TextDocument((tmp_path / "shapes.py").as_uri(), "python", 1, text)
    completer = FakeCompleter("assert area(2) == 4\n\n\ndef test_other():")
    completer.parses = SimpleNamespace(get=lambda uri, version, text, language: parse(text, language))
    target, at, end, new, note = write_test(completer, source, "area", 0, len(text), lambda uri: None, lambda: False)
    assert target.uri.endswith("tests/test_shapes.py")
    assert target.text + new == "from shapes import area\n\ndef test_area():\n    assert area(2) == 4\n"


def test_only_the_kinds_the_client_asked_for():
    from lsprotocol import types

    from codestral_lsp.lsp.features.code_actions import wanted

    actions = [types.CodeAction(title="a", kind=types.CodeActionKind.QuickFix),
               types.CodeAction(title="b", kind=types.CodeActionKind.RefactorRewrite)]
    assert [a.title for a in wanted(actions, [types.CodeActionKind.QuickFix])] == ["a"]
    assert [a.title for a in wanted(actions, ["refactor"])] == ["b"]
    assert [a.title for a in wanted(actions, None)] == ["a", "b"]
    assert wanted(actions, [types.CodeActionKind.Source]) == []


def test_a_fix_is_bounded_by_the_text_it_replaces_and_the_time_budget():
    import time

    text, _, statement = CASES["go"]
    start = text.index(statement)
    completer = FakeCompleter("x := 41 + 1\n")
    completer.settings.completion.timeout_ms = 1234
    before = time.monotonic()
    regenerate(completer, doc("go", text), start, start + len(statement), "undefined: undefinedName", lambda: False)
    options = completer.options[0]
    assert options["max_tokens"] == 2 * completer.count_tokens(statement) + 16
    assert before + 1.234 <= options["deadline"] <= time.monotonic() + 1.234


@pytest.mark.parametrize("answer, expected", [
    ("x := 1 + 1\n\treturn x\n", "x := 1 + 1"),     # one line: at its line break
    ("// the note's echo\n\tx := 1\n", None),        # a first comment line ends the fix, offered as nothing
    ("if x := f(); x > 0 {\n\t\treturn x\n\t}\n\treturn 0\n", "if x := f(); x > 0 {\n\t\treturn x\n\t}")])
def test_a_fix_stops_where_its_statement_ends(answer, expected):
    text, _, statement = CASES["go"]
    start = text.index(statement)
    out = regenerate(FakeCompleter(answer), doc("go", text), start, start + len(statement), "m", lambda: False)
    assert (out[3] if isinstance(out, tuple) else None) == expected, out


def test_a_selection_rewrite_counts_its_comment_lines():
    from codestral_lsp.context.actions import statement_stop

    gen = "# total\nx = 1\ny = x + 1\nz = 3\n"
    assert gen[:statement_stop(0, "python", lines=3)(gen)] == "# total\nx = 1\ny = x + 1"
    assert gen[:statement_stop(0, "python")(gen)] == "# total"  # one statement: a comment first ends it
