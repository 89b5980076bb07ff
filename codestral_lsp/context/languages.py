"""Everything the server knows about a language, one `Profile` each, looked up by LSP languageId.

The rest of the server reads profiles and never names a language. A languageId without a profile
gets `UNKNOWN`, whose fields are the defaults of `Profile`: "#" comments, no grammar (line-based
context), a block opens after ":" or an open bracket.

    >>> language_id_for_path("file:///src/app/Main.TSX")
    'typescriptreact'
    >>> profile("lua").line_comment, profile("cobol") is UNKNOWN, get_language("cobol") is None
    ('--', True, True)

Adding a language: one `Profile` in PROFILES and its tests; with a grammar, also the grammar's
package in the dependencies and the id in the Neovim plugin's default filetypes and help file.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import unquote, urlsplit

from tree_sitter import Language

log = logging.getLogger(__name__)


def _imports(pattern: str) -> re.Pattern:
    """An import statement starts in column 0 with `pattern`."""
    return re.compile(rf"^(?:{pattern})", re.MULTILINE)


def _containers(names: str) -> frozenset[str]:
    """Node types whose named children are statements; ERROR too, so that statements swallowed by
    error recovery stay cut points."""
    return frozenset(names.split()) | {"ERROR"}


def _unfinished_char_literal(gen: str, closer: int) -> bool:
    """A closer that ends the text right after "'" may be the inside of a char literal '}' still being written."""
    return closer == len(gen) - 1 and gen[closer - 1:closer] == "'"


# Block openers: searched in a line's code (comment removed, right-stripped).
COLON_BLOCKS = re.compile(r"[{(\[:]$")
BRACE_BLOCKS = re.compile(r"[{(\[]$|=>$|^\s*(?:case\b.*|default\s*):$")
LUA_BLOCKS = re.compile(r"[{(\[:]$|\b(?:then|do|else|repeat)$|\bfunction\b.*\)$")

# Languages without a profile: the continuations of all of them (and "when" of Ruby and Kotlin).
EVERY_CONTINUATION = frozenset("else elif except finally catch end until elseif case default when".split())


@dataclass(frozen=True)
class Profile:
    """One language. Every default is what a language without a profile gets."""
    id: str                                          # LSP languageId, also the Neovim filetype
    extensions: tuple[str, ...] = ()                 # file name suffixes, lower case
    grammar: tuple[str, str] | None = None           # tree-sitter (module, function returning the language)
    family: str = ""                                 # languages of a family lend each other snippets; "" = alone
    line_comment: str = "#"
    block_opener: re.Pattern = COLON_BLOCKS          # a line of code after which a block body starts
    containers: frozenset[str] = _containers("")     # grammar node types whose named children are statements
    brackets: str = "()[]{}"                         # opener, closer pairs
    quotes: str = "\"'`"                             # characters that open and close a string within a line
    char_literal: re.Pattern | None = None           # where "'" is no quote but starts a char literal ('x', '\n')
    import_start: re.Pattern | None = None           # the start of an import statement, in column 0
    continuations: frozenset[str] = EVERY_CONTINUATION  # first words that continue a statement (else, catch)
    stop_hook: Callable[[str, int], bool] | None = None  # (generated text, index of its first unmatched closer):
    #                                                      True to wait for more text before stopping there
    definition: frozenset[str] | None = None         # grammar node types of a function definition (code
    #                                                  actions: stubs to fill, tests to write)
    stub_body: re.Pattern | None = None              # with `definition`: a statement (fullmatch of its text)
    #                                                  that only stands in for a body; empty bodies and TODO
    #                                                  comments are stubs too
    docstring: str | None = None                     # the quote of a docstring below the signature ('"""')
    test_header: str | None = None                   # how a test of {name} ({Name}: capitalized) starts, up to
    #                                                  its body's first line; FIM writes the rest
    test_footer: str = ""                            # what closes that test after its body
    test_files: tuple[str, ...] = ()                 # where the tests of {stem}{ext} live, relative to its folder
    test_module: tuple[str, str] | None = None       # (node type, name) of an in-file test module (Rust)
    tests_beside: bool = False                       # a test goes right after its function (Java: in the class)
    openers: str = field(init=False, repr=False)
    closers: str = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "openers", self.brackets[0::2])
        object.__setattr__(self, "closers", self.brackets[1::2])


def _stub(statement: str) -> re.Pattern:
    """A statement that only stands in for a body, or a comment saying TODO."""
    return re.compile(rf"(?:{statement}|(?://|#|--|/\*)\s*TODO\b.*)", re.S)


_JS = Profile(
    "javascript", (".js", ".mjs", ".cjs"), ("tree_sitter_javascript", "language"), family="js", line_comment="//",
    block_opener=BRACE_BLOCKS, import_start=_imports(r"import[\s{*'\"]"),
    containers=_containers("program statement_block class_body switch_body switch_case switch_default"),
    continuations=frozenset("else catch finally case default".split()),
    definition=frozenset("function_declaration function_expression arrow_function method_definition "
                         "generator_function_declaration".split()),
    stub_body=_stub(r"throw\s+new\s+Error\(\s*([\"'`])(not implemented|TODO)\b.*\);?"),
    test_header='test("{name}", () => {{\n', test_footer="});\n", test_files=("{stem}.test{ext}", "{stem}.spec{ext}"))
_TS = replace(_JS, id="typescript", extensions=(".ts", ".mts", ".cts"),
              grammar=("tree_sitter_typescript", "language_typescript"),
              containers=_JS.containers | _containers("module interface_body enum_body object_type"))
_C = Profile(
    "c", (".c", ".h"), ("tree_sitter_c", "language"), family="c", line_comment="//", block_opener=BRACE_BLOCKS,
    import_start=_imports(r"#[ \t]*include\b"),
    containers=_containers("translation_unit compound_statement case_statement declaration_list "
                           "field_declaration_list preproc_if preproc_ifdef preproc_else preproc_elif"),
    continuations=frozenset("else case default".split()),
    definition=frozenset({"function_definition"}), stub_body=_stub(r"abort\(\);|assert\(0\);"),
    test_header="static void test_{name}(void) {{\n", test_footer="}\n")


def _comments_only(marker: str, *ids: str) -> list[Profile]:
    """Languages without a grammar, known for their comments (what "explain" writes)."""
    return [Profile(i, line_comment=marker) for i in ids]


PROFILES: tuple[Profile, ...] = (
    Profile("python", (".py", ".pyi", ".pyw"), ("tree_sitter_python", "language"),
            import_start=_imports(r"(?:import|from)\s"), containers=_containers("module block"),
            definition=frozenset({"function_definition"}), docstring='"""',
            stub_body=_stub(r"pass|\.\.\.|raise\s+NotImplementedError\b.*"),
            test_header="def test_{name}():\n",
            test_files=("tests/test_{stem}{ext}", "../tests/test_{stem}{ext}", "../../tests/test_{stem}{ext}",
                        "test_{stem}{ext}"),
            continuations=frozenset("else elif except finally case".split())),
    _JS,
    replace(_JS, id="javascriptreact", extensions=(".jsx",)),  # the JavaScript grammar parses JSX
    _TS,
    replace(_TS, id="typescriptreact", extensions=(".tsx",), grammar=("tree_sitter_typescript", "language_tsx")),
    Profile("rust", (".rs",), ("tree_sitter_rust", "language"), line_comment="//", block_opener=BRACE_BLOCKS,
            quotes="\"`", char_literal=re.compile(r"'(\\.[^']*|[^\\'])'"), stop_hook=_unfinished_char_literal,
            import_start=_imports(r"(?:pub(?:\([^)\n]*\))?\s+)?use\s|extern\s+crate\s"),
            containers=_containers("source_file block declaration_list field_declaration_list enum_variant_list"),
            continuations=frozenset({"else"}), definition=frozenset({"function_item"}),
            stub_body=_stub(r"(todo|unimplemented)!\(.*\);?"), test_header="#[test]\nfn test_{name}() {{\n",
            test_footer="}\n", test_module=("mod_item", "tests")),
    Profile("go", (".go",), ("tree_sitter_go", "language"), line_comment="//", block_opener=BRACE_BLOCKS,
            import_start=_imports(r"(?:package|import)[\s(]"),
            containers=_containers("source_file block statement_list field_declaration_list expression_case "
                                   "default_case type_case communication_case"),
            continuations=frozenset("else case default".split()),
            definition=frozenset({"function_declaration", "method_declaration"}),
            stub_body=_stub(r'panic\("(TODO|not implemented)\b[^"]*"\)'),
            test_header="func Test{Name}(t *testing.T) {{\n", test_footer="}\n", test_files=("{stem}_test{ext}",)),
    Profile("java", (".java",), ("tree_sitter_java", "language"), line_comment="//", block_opener=BRACE_BLOCKS,
            import_start=_imports(r"(?:package|import)\s"),
            containers=_containers("program block class_body interface_body enum_body constructor_body "
                                   "switch_block switch_block_statement_group"),
            continuations=frozenset("else catch finally case default".split()),
            definition=frozenset({"method_declaration", "constructor_declaration"}),
            stub_body=_stub(r"throw\s+new\s+UnsupportedOperationException\(.*\);"),
            test_header="@Test\nvoid test{Name}() {{\n", test_footer="}\n", tests_beside=True),
    _C,
    replace(_C, id="cpp", extensions=(".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx"),
            grammar=("tree_sitter_cpp", "language"), continuations=_C.continuations | {"catch"}),
    Profile("lua", (".lua",), ("tree_sitter_lua", "language"), line_comment="--", block_opener=LUA_BLOCKS,
            import_start=_imports(r"(?:local\s+)?[\w.,\t ]+=[ \t]*require\b|require\b"),
            containers=_containers("chunk block"), continuations=frozenset("else elseif end until".split()),
            definition=frozenset({"function_declaration", "function_definition"}),
            stub_body=_stub(r"error\(\s*([\"'])(not implemented|TODO)\b.*\)"),
            test_header='it("{name}", function()\n', test_footer="end)\n"),
    *_comments_only("#", "ruby", "shellscript", "yaml", "toml", "r", "perl"),
    *_comments_only("--", "sql", "haskell"),
    *_comments_only("//", "csharp", "kotlin", "swift", "scala", "php", "dart"),
)

UNKNOWN = Profile("")
BY_ID: dict[str, Profile] = {p.id: p for p in PROFILES}
BY_EXTENSION: dict[str, Profile] = {ext: p for p in PROFILES for ext in p.extensions}
GRAMMARS: dict[str, tuple[str, str]] = {p.id: p.grammar for p in PROFILES if p.grammar}


def profile(language_id: str) -> Profile:
    return BY_ID.get(language_id, UNKNOWN)


def line_comment(language_id: str) -> str:
    return profile(language_id).line_comment


def family(language_id: str) -> str:
    return profile(language_id).family or language_id


def get_language(language_id: str) -> Language | None:
    spec = profile(language_id).grammar
    return _load(*spec) if spec else None


@cache
def _load(module: str, function: str) -> Language | None:
    try:
        return Language(getattr(importlib.import_module(module), function)())
    except (ImportError, AttributeError, ValueError) as exc:
        log.warning("tree-sitter grammar %s.%s is unavailable (%s); using line-based context", module, function, exc)
        return None


def language_id_for_path(path_or_uri: str) -> str | None:
    """languageId from a file name or URI by its extension; None when unknown."""
    parts = urlsplit(path_or_uri)
    path = unquote(parts.path) if len(parts.scheme) > 1 else path_or_uri  # not a Windows drive letter
    found = BY_EXTENSION.get(PurePosixPath(path.replace("\\", "/")).suffix.lower())
    return found.id if found else None


def language_from_uri(uri: str) -> str:
    """languageId for a document the client opened without one: by extension, else "plaintext"."""
    return language_id_for_path(uri) or "plaintext"
