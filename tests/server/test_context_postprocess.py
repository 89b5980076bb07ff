"""completion_mode, stop_rule and postprocess on real snippets of each language."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codestral_lsp.context import Suggestion, completion_mode, parse, postprocess, stop_rule
from codestral_lsp.context.postprocess import bracket_scan


def at_cursor(src: str) -> tuple[str, int]:
    return src.replace("<C>", ""), src.index("<C>")


def stream(rule, gen: str) -> str:
    """Feed `gen` to the stop rule as an engine would (one piece at a time); return what is kept."""
    for n in range(1, len(gen) + 1):
        keep = rule(gen[:n])
        if keep is not None:
            assert 0 <= keep <= n
            return gen[:keep]
    return gen


def complete(language: str, src: str, gen: str, **kw) -> tuple[str, Suggestion | None]:
    text, offset = at_cursor(src)
    mode = completion_mode(text, offset, language, tree=parse(text, language))
    kept = stream(stop_rule(mode, text, offset, language), gen)
    return mode, postprocess(kept, text, offset, language, mode, **kw)


# -- completion_mode -----------------------------------------------------------------------------------

EMPTY_BODIES = {
    "python": "def area(w, h):\n    <C>\n\n\ndef main():\n    pass\n",
    "javascript": "function area(w, h) {\n  <C>\n}\n",
    "typescript": "const area = (w: number, h: number): number => {\n  <C>\n};\n",
    "typescriptreact": "export function App() {\n  <C>\n}\n",
    "rust": "impl Shape {\n    fn area(&self) -> f64 {\n        <C>\n    }\n}\n",
    "go": "func area(w, h int) int {\n\t<C>\n}\n",
    "java": "class Shape {\n    int area(int w, int h) {\n        <C>\n    }\n}\n",
    "c": "int area(int w, int h) {\n    <C>\n}\n",
    "cpp": "namespace geo {\nint area(int w, int h) {\n    <C>\n}\n}  // namespace geo\n",
    "lua": "local function area(w, h)\n  <C>\nend\n",
    "plaintext": "groceries:\n  <C>\ntasks:\n",
}


@pytest.mark.parametrize("language", sorted(EMPTY_BODIES))
def test_multi_line_at_an_empty_block_body(language):
    text, offset = at_cursor(EMPTY_BODIES[language])
    assert completion_mode(text, offset, language, tree=parse(text, language)) == "multi"
    assert completion_mode(text, offset, language) == "multi"
    assert completion_mode(text, offset, language, setting="never") == "single"


@pytest.mark.parametrize("language, src", [
    ("python", "def area(w, h):\n    <C>\n    return w * h\n"),            # the body is not empty
    ("python", "x = area(<C>)\n"),                                          # text after the cursor
    ("python", "total = w *<C>\n"),                                         # in the middle of an expression
    ("python", 'def f():\n    """Args:\n    <C>\n    """\n'),              # in a docstring (needs the tree)
    ("javascript", "function f() {\n  const x = 1;\n  <C>\n  return x;\n}\n"),
    ("rust", "fn main() {\n    let v = vec![1, 2];<C>\n}\n"),
    ("go", "x := 1\n<C>\n"),                                                # the line above opens nothing
    ("lua", "local t = {}\n<C>\n"),
    ("c", "int main(void) { <C>}\n"),
])
def test_single_line_elsewhere(language, src):
    text, offset = at_cursor(src)
    assert completion_mode(text, offset, language, tree=parse(text, language)) == "single"
    assert completion_mode(text, offset, language, setting="always") == "multi"


@pytest.mark.parametrize("src", [
    "if ready:\n    <C>\n", "items = [\n    <C>\n]\n", "def f(\n    a,\n):\n    <C>\n", "for x in y:  # each\n    <C>",
    "class A:\n    def f(self):\n        <C>\n\n    def g(self):\n        pass\n",
])
def test_python_block_openers(src):
    text, offset = at_cursor(src)
    assert completion_mode(text, offset, "python") == "multi"


@pytest.mark.parametrize("language, line", [
    ("lua", "if x then"), ("lua", "for i = 1, 3 do"), ("lua", "local f = function(a, b)"), ("lua", "else"),
    ("go", "case 1:"), ("c", "default:"), ("javascript", "items.map((x) =>"), ("rust", "let v = vec!["),
])
def test_other_block_openers(language, line):
    text = f"{line}\n    \n"
    assert completion_mode(text, len(line) + 5, language) == "multi"


# -- stop rules -------------------------------------------------------------------------------------------

def test_single_line_stops_at_the_first_newline():
    text, offset = at_cursor("total = <C>\n")
    rule = stop_rule("single", text, offset, "python")
    assert rule("w * ") is None and rule("w * h") is None
    assert rule("w * h\n") == 5 and rule("w * h\nreturn") == 5
    assert rule("\nw") == 0  # the model ended the line: nothing to show


def test_single_line_on_a_blank_line_skips_leading_blank_lines():
    text, offset = at_cursor("def f():\n    <C>\n")
    rule = stop_rule("single", text, offset, "python")
    assert rule("\n") is None and rule("\n    return 1") is None
    assert rule("\n    return 1\n") == len("\n    return 1")
    assert rule("\n\n\n\n") == 0
    assert postprocess("\n    return 1", text, offset, "python", "single") == Suggestion("return 1", offset)


def test_python_multi_line_stops_at_the_dedent():
    mode, s = complete("python", EMPTY_BODIES["python"], "return w * h\n\n\ndef volume(w, h, d):\n    pass")
    assert mode == "multi" and s.text == "return w * h"


def test_python_multi_line_keeps_nested_blocks_and_else():
    gen = "if w < 0:\n        raise ValueError(w)\n    else:\n        w = abs(w)\n    return w * h\n\ndef g():"
    _, s = complete("python", EMPTY_BODIES["python"], gen)
    assert s.text == gen[:gen.index("\n\ndef")]


def test_top_level_multi_line_stops_after_one_definition():
    text, offset = at_cursor("import math\n\n\n<C>\n")
    rule = stop_rule("multi", text, offset, "python")
    gen = "def area(r):\n    return math.pi * r * r\n\n\ndef volume(r):\n"
    assert stream(rule, gen) == "def area(r):\n    return math.pi * r * r\n\n"
    assert stream(rule, "x = 1\n\ny = 2\n") == "x = 1\n\ny = 2\n"  # no definition was finished


@pytest.mark.parametrize("language", ["javascript", "c", "java", "go"])
def test_braces_multi_line_stops_before_the_closer_the_document_has(language):
    text, offset = at_cursor(EMPTY_BODIES[language])
    indent = text[text.rfind("\n", 0, offset) + 1:offset]  # the cursor's line, blank up to the cursor
    body = f"if (w < 0) {{\n{indent}  return 0;\n{indent}}}\n{indent}return w * h;"
    _, s = complete(language, EMPTY_BODIES[language], body + "\n}\n\nint other() {", insert_spaces=language != "go")
    assert s == Suggestion(body, offset)


def test_braces_multi_line_keeps_a_closer_the_document_lacks():
    text, offset = at_cursor("int area(int w, int h) {\n    <C>")
    rule = stop_rule("multi", text, offset, "c")
    assert stream(rule, "return w * h;\n}\n\nint main(void) {") == "return w * h;\n}"


def test_rust_lifetimes_and_char_literals_are_not_quotes():
    text, offset = at_cursor(EMPTY_BODIES["rust"])
    rule = stop_rule("multi", text, offset, "rust")
    gen = "let c: &'static str = if x == '}' { \"a\" } else { \"b\" };\n        c.len() as f64\n    }\n}"
    assert stream(rule, gen) == gen[:gen.index("\n    }")]


def test_lua_multi_line_stops_before_end():
    gen = "if w < 0 then\n    return 0\n  end\n  return w * h\nend\n\nlocal function g()"
    _, s = complete("lua", EMPTY_BODIES["lua"], gen)
    assert s.text == "if w < 0 then\n    return 0\n  end\n  return w * h"


def test_multi_line_stops_when_it_repeats_the_next_line():
    text, offset = at_cursor("def f(xs):\n    total = 0\n    <C>\n    return total\n")
    rule = stop_rule("multi", text, offset, "python")
    gen = "for x in xs:\n        total += x\n    return total\n    "
    assert stream(rule, gen) == "for x in xs:\n        total += x"


def test_unknown_language_uses_indentation():
    _, s = complete("plaintext", EMPTY_BODIES["plaintext"], "eggs\n  milk\ntasks:\n  call")
    assert s.text == "eggs\n  milk"


# -- postprocess -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src, completion, expected", [
    ("print(<C>)\n", "x)", Suggestion("x)", 7)),                                # auto-closed paren reused
    ("print(<C>)\n", "len(x)", Suggestion("len(x)", 6)),                        # its own paren: not reused
    ('f("<C>")\n', 'hi")', Suggestion('hi")', 5)),                              # quote and paren
    ("x = [<C>];\n", "1, 2];", Suggestion("1, 2];", 7)),
    ("foo(<C>a, b)\n", "x, a, b)", Suggestion("x, a, b)", 9)),                  # the model rewrote the rest
    ("y = <C>b\n", "a + ", Suggestion("a + ", 4)),                              # trailing space before text
    ("y = <C>\n", "a + b   ", Suggestion("a + b", 4)),                          # trailing space at the end
    ("y = <C>\n", "   \n  ", None),
    ("print(<C>)\n", ")", None),                                                # only retypes the paren
])
def test_overlap_and_whitespace(src, completion, expected):
    text, offset = at_cursor(src)
    assert postprocess(completion, text, offset, "python", "single") == expected


def test_trailing_lines_that_repeat_the_document_are_dropped():
    text, offset = at_cursor("int f(int x) {\n    <C>\n}\n")
    s = postprocess("x += 1;\n    return x;\n}", text, offset, "c", "multi")
    assert s == Suggestion("x += 1;\n    return x;", offset)
    own = "if (x) {\n        x++;\n    }"  # this "}" closes the completion's own block
    text2, offset2 = at_cursor("int f(int x) {\n    <C>\n    }\n}\n")
    assert postprocess(own, text2, offset2, "c", "multi").text == own


def test_a_completion_that_only_repeats_the_next_line_is_dropped():
    text, offset = at_cursor("def f(x):\n    <C>\n    return x\n")
    assert postprocess("return x", text, offset, "python", "single") is None


@pytest.mark.parametrize("insert_spaces, tab_size, expected", [
    (True, 4, "if x:\n        y()\n    z()"),
    (False, 4, "if x:\n\t\ty()\n\tz()"),
    (False, 8, "if x:\n\ty()\n    z()"),
])
def test_indentation_follows_the_editor(insert_spaces, tab_size, expected):
    text, offset = at_cursor("def f():\n    <C>\n")
    s = postprocess("if x:\n\ty()\n    z()".replace("\ty", "        y"), text, offset, "python", "multi",
                    tab_size=tab_size, insert_spaces=insert_spaces)
    assert s.text == expected


def test_go_tabs_stay_tabs():
    text, offset = at_cursor(EMPTY_BODIES["go"])
    s = postprocess("if w < 0 {\n\t\treturn 0\n\t}\n\treturn w * h", text, offset, "go", "multi", insert_spaces=False)
    assert s == Suggestion("if w < 0 {\n\t\treturn 0\n\t}\n\treturn w * h", offset)


def test_single_mode_keeps_one_line_and_non_ascii_offsets():
    text, offset = at_cursor("naïve = '😀'; x = <C>\n")
    assert offset == len("naïve = '😀'; x = ")
    assert postprocess("f(naïve)\ny = 2", text, offset, "python", "single") == Suggestion("f(naïve)", offset)


def test_bracket_scan_skips_strings_and_comments():
    assert bracket_scan('f(")") # )\n)', "python") == ([11], [(1, 5)])
    assert bracket_scan("x = '}' // }\n}", "c") == ([13], [])
    assert bracket_scan("a -- )\n)", "lua") == ([7], [])


def test_five_megabyte_document_is_fast():
    text = "def f(x):\n    return g(x, [1, 2])\n\n" * 150_000
    offset = len(text) // 2 + 4
    started = time.thread_time()  # CPU time of this thread: what the code costs, however busy the machine
    mode = completion_mode(text, offset, "python")
    keep = stop_rule(mode, text, offset, "python")("x(1)\n    y = 2\n")
    postprocess("x(1)", text, offset, "python", mode)
    one_line = "a" * 5_000_000
    postprocess("b)", one_line + ")", 5_000_000, "python", completion_mode(one_line + ")", 5_000_000, "python"))
    assert time.thread_time() - started < 1.0 and keep is not None


# -- properties ---------------------------------------------------------------------------------------------

TEXTS = st.one_of(st.text(max_size=300), st.text(alphabet=" \t\n(){}[]:;,\"'`#-/\\abcé😀", max_size=300))
LANGUAGES = st.sampled_from(["python", "javascript", "rust", "go", "c", "lua", "plaintext"])


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, where=st.integers(-5, 320), gen=TEXTS, language=LANGUAGES, mode=st.sampled_from(["single", "multi"]),
       insert_spaces=st.booleans(), tab_size=st.integers(0, 8))
def test_never_raises_and_stays_in_range(text, where, gen, language, mode, insert_spaces, tab_size):
    assert completion_mode(text, where, language, tree=parse(text, language)) in ("single", "multi")
    rule = stop_rule(mode, text, where, language)
    for n in (0, len(gen) // 2, len(gen)):
        keep = rule(gen[:n])
        assert keep is None or 0 <= keep <= n
    s = postprocess(gen, text, where, language, mode, tab_size=tab_size, insert_spaces=insert_spaces)
    offset = min(max(where, 0), len(text))
    if s is not None:
        assert s.text.strip() and offset <= s.replace_end <= len(text)
        assert "\n" not in text[offset:s.replace_end]
        # single: one line; when the cursor starts a line that has text after it, a whole new line
        opens_line = not text[text.rfind("\n", 0, offset) + 1:offset].strip() and text[offset:].split("\n", 1)[0].strip()
        assert mode == "multi" or "\n" not in (s.text[:-1] if opens_line else s.text)


def test_a_first_line_repeating_the_next_line_stops_at_once():
    text, offset = at_cursor("def f(x):\n    <C>\n    return x + 1\n")
    assert stop_rule("multi", text, offset, "python")("return x + 1\n") == 0


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_stop_rules_end_degenerate_loops(mode):
    """A model stuck repeating itself is stopped after the first copy, in both modes."""
    text = "class A:\n    def f(self):\n        \n"
    offset = text.index("        \n") + 8
    rule = stop_rule(mode, text, offset, "python")
    looping = "return g(self.size, self.size, self.size, "
    assert looping[:rule(looping)] == "return g(self.size, "
    assert rule("return g(self.size, self.size") is None  # two copies are not yet a loop
