"""What the code actions find and how their FIM prompts are cut: pure functions over tree-sitter trees.

Only the rows a request asks about are visited (`nodes_in_rows` steps over the siblings before the
first row with `goto_first_child_for_point`), so listing the actions of a line in a 2 MB file costs
what the line's ancestors cost, not what the file costs.

Offsets: trees count (row, UTF-8 byte column) with rows split at "\\n"; `Points` turns such a point
into an index of the document's string.

    >>> text = "fn f() {\\n    todo!()\\n}\\n"
    >>> [(s.name, text[s.start:s.end]) for s in find_stubs(parse(text, "rust"), text, Points(text), 0, 2, "rust")]
    [('f', '    todo!()\\n')]
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tree_sitter import Node, Parser, Tree

from .indentation import detect_indentation
from .languages import Profile, get_language, profile
from .parsing import encode, parse, parse_source, point_at
from .postprocess import _code, _first_word, brackets_of, unmatched_closers

TODO = re.compile(r"\bTODO\b")


class Points:
    """(row, byte column) of a tree <-> index into the text it was parsed from."""

    def __init__(self, text: str, row_starts: list[int] | None = None):
        self.text = text
        self.starts = row_starts if row_starts is not None else [0] + [m.end() for m in re.finditer("\n", text)]

    def offset(self, point: tuple[int, int]) -> int:
        row, col = point
        start = self.starts[min(row, len(self.starts) - 1)]
        head = self.text[start: start + col]
        if head.isascii():
            return start + col
        return start + len(encode(head)[:col].decode("utf-8", "surrogatepass"))

    def point(self, offset: int) -> tuple[int, int]:
        row = self.row(offset)
        head = self.text[self.starts[row]: offset]
        return row, len(head) if head.isascii() else len(encode(head))

    def row(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def line_start(self, offset: int) -> int:
        return self.starts[self.row(offset)]


@dataclass(frozen=True)
class Stub:
    """A region to fill: text [start, end) becomes lead + indent + generated body + trail."""
    kind: str  # "body" or "docstring"
    name: str
    start: int
    end: int
    indent: str
    lead: str = ""
    trail: str = ""


@dataclass(frozen=True)
class Function:
    name: str
    node: Node


# -- walking only the requested rows -------------------------------------------------------------


def nodes_in_rows(node: Node, first: int, last: int) -> Iterator[Node]:
    """`node` and its descendants that overlap rows [first, last], parents before children."""
    yield node
    cursor = node.walk()
    if cursor.goto_first_child_for_point((first, 0)) is None:  # the index of the child, or None
        return
    while True:
        child = cursor.node
        if child.start_point[0] > last:
            return
        if child.end_point[0] >= first:
            yield from nodes_in_rows(child, first, last)
        if not cursor.goto_next_sibling():
            return


def functions_in_rows(tree: Tree, first: int, last: int, language_id: str) -> list[Function]:
    """Function definitions that overlap rows [first, last], outermost first."""
    kinds = profile(language_id).definition or frozenset()
    return [Function(function_name(n), n) for n in nodes_in_rows(tree.root_node, first, last) if n.type in kinds]


def function_name(node: Node) -> str:
    """The name a definition declares: its `name` field, a C declarator's identifier, or the variable
    an anonymous function is assigned to."""
    name = node.child_by_field_name("name")
    declarator = node.child_by_field_name("declarator")
    while name is None and declarator is not None:
        name = declarator.child_by_field_name("name") if declarator.type == "qualified_identifier" else None
        inner = declarator.child_by_field_name("declarator")
        if inner is None and name is None:
            name = declarator if declarator.type.endswith("identifier") else None
            break
        declarator = inner
    if name is None and node.parent is not None:
        name = node.parent.child_by_field_name("name") or node.parent.child_by_field_name("key")
    return name.text.decode("utf-8", "replace") if name is not None else "function"


# -- stubs ---------------------------------------------------------------------------------------


def find_stubs(tree: Tree, text: str, points: Points, first: int, last: int, language_id: str) -> list[Stub]:
    """Bodies to fill (empty, or only a `stub_body` statement and TODO comments) of the functions that
    overlap rows [first, last], and docstrings to write where the language has them."""
    language = profile(language_id)
    if language.definition is None:
        return []
    found = []
    for function in functions_in_rows(tree, first, last, language_id):
        body = _body(function.node)
        if body is None:
            continue
        opened, closed, statements = body
        doc = _docstring(statements) if language.docstring else None
        rest = statements[1:] if doc is not None else statements
        if all(_stands_in(s, language) for s in rest) and (rest or doc is not None or not language.docstring):
            found.append(_body_stub(function, text, points, opened if doc is None else doc.end_point,
                                    closed, rest, doc))
        if language.docstring and doc is None and statements:
            indent = _indent_of(text, points, points.offset(statements[0].start_point))
            at = points.line_start(points.offset(statements[0].start_point))
            if at > points.offset(function.node.start_point):
                found.append(Stub("docstring", function.name, at, at, indent))
    return found


def _body(node: Node) -> tuple[tuple[int, int], tuple[int, int], list[Node]] | None:
    """(point after the body's opener, point of its closer or end, its statements), or None for a
    function without a block body (an arrow function's expression, a declaration)."""
    body = node.child_by_field_name("body")
    last = node.children[-1] if node.children else None
    keyword_end = last is not None and not last.is_named and last.type.isalpha()  # Lua's `end`
    if body is not None and body.text[:1] == b"{":
        if body.text[-1:] != b"}":
            return None
        return ((body.start_point[0], body.start_point[1] + 1), (body.end_point[0], body.end_point[1] - 1),
                _statements(body))
    if body is not None and body.type in _BLOCKS or body is None and keyword_end:  # Python, Lua
        closer = body if body is not None else last
        before = [c for c in node.children if c.end_byte <= closer.start_byte]
        heads = [c for c in before if "comment" not in c.type]
        if not heads or heads[-1] is closer:
            return None
        comments = [c for c in before if "comment" in c.type and c.start_byte >= heads[-1].end_byte]
        closed = last.start_point if keyword_end and last is not body else body.end_point
        return heads[-1].end_point, closed, comments + (_statements(body) if body is not None else [])
    return None


_BLOCKS = frozenset({"block"})  # bodies without braces (Python, Lua): grammar node types


def _statements(body: Node) -> list[Node]:
    """Named children, with Go's statement_list flattened."""
    out = []
    for child in body.named_children:
        out.extend(_statements(child) if child.type == "statement_list" else [child])
    return out


def _docstring(statements: list[Node]) -> Node | None:
    first = statements[0] if statements else None
    if first is not None and first.type == "expression_statement" and first.named_child_count == 1 \
            and first.named_children[0].type == "string":
        return first
    return None


def _stands_in(statement: Node, language: Profile) -> bool:
    text = statement.text.decode("utf-8", "replace").strip()
    if "comment" in statement.type:
        return bool(TODO.search(text))
    return bool(language.stub_body and language.stub_body.fullmatch(text))


def _body_stub(function: Function, text: str, points: Points, opened, closed, statements: list[Node],
               doc: Node | None) -> Stub:
    start, end = points.offset(opened), points.offset(closed)
    outer = _indent_of(text, points, points.offset(function.node.start_point))
    closer_follows = end < len(text) and not text[end].isspace() and end > 0  # a "}" or `end`
    trail = "\n" + outer if closer_follows else ""
    if statements:
        first = points.offset(statements[0].start_point)
        own_line = not text[points.line_start(first): first].strip()
        if own_line and points.line_start(first) > start:
            return Stub("body", function.name, points.line_start(first), end if closer_follows else
                        points.offset(statements[-1].end_point), _indent_of(text, points, first), "", trail)
    if doc is not None:
        indent = _indent_of(text, points, points.offset(doc.start_point))
    else:
        unit = detect_indentation(text)
        indent = outer + (" " * unit.tab_size if unit.insert_spaces else "\t")
    return Stub("body", function.name, start, end, indent, "\n", trail)


def _indent_of(text: str, points: Points, offset: int) -> str:
    line = text[points.line_start(offset): offset + 1]
    return line[: len(line) - len(line.lstrip(" \t"))]


# -- generation helpers ----------------------------------------------------------------------------


def block_stop(depth: int, language_id: str) -> Callable[[str], int | None]:
    """A stop rule for text generated at indentation `depth` (characters): stop before the first
    later line indented less, or before the line of a bracket that closes what the text did not open.

    >>> block_stop(4, "go")("return x\\n}\\nfunc g() {")
    9
    """
    def stop(gen: str) -> int | None:
        offset = 0
        for line in gen.splitlines(keepends=True):
            if offset and line.strip() and len(line) - len(line.lstrip(" \t")) < depth:
                return offset
            offset += len(line)
        closers = unmatched_closers(gen, language_id)
        if closers:
            cut = gen.rfind("\n", 0, closers[0]) + 1
            return cut or closers[0]
        return None
    return stop


def stub_text(stub: Stub, generated: str) -> str:
    """The text that replaces the stub's region, or "" when nothing was generated."""
    body = generated.rstrip()
    return f"{stub.lead}{stub.indent}{body}{stub.trail}" if body.strip() else ""


def parses_after(text: str, start: int, end: int, new: str, language_id: str, tree: Tree | None = None) -> bool:
    """Whether text with [start, end) replaced by `new` parses without errors, or, for a text that
    already had errors, without errors in the replaced part. True for languages without a grammar.
    With `tree`, the tree of `text`, the new text is parsed incrementally from it (a 2 MB document
    costs what the edit costs, not a whole parse)."""
    language = get_language(language_id)
    if language is None:
        return True
    head, old_source = encode(text[:start]), encode(text)
    a, b, c = len(head), len(head) + len(encode(text[start:end])), len(head) + len(encode(new))
    source = old_source[:a] + encode(new) + old_source[b:]
    edited = None
    if tree is not None:
        edited = tree.copy()
        edited.edit(start_byte=a, old_end_byte=b, new_end_byte=c, start_point=point_at(old_source, a),
                    old_end_point=point_at(old_source, b), new_end_point=point_at(source, c))
    new_tree = parse_source(Parser(language), source, edited)
    if not new_tree.root_node.has_error:
        return True
    old = tree or parse(text, language_id)
    if not old.root_node.has_error:
        return False
    return not new_tree.root_node.descendant_for_byte_range(a, max(a, c - 1)).has_error


def longest_parsing(text: str, start: int, end: int, make: Callable[[str], str], generated: str,
                    language_id: str, tree: Tree | None = None, tries: int = 6) -> str:
    """The longest head of `generated` (whole lines, longest first, at most `tries`) whose edit
    `make(head)` keeps the document parsing; "" when none does."""
    lines = generated.rstrip().splitlines(keepends=True)
    for n in range(len(lines), max(0, len(lines) - tries), -1):
        new = make("".join(lines[:n]))
        if new and parses_after(text, start, end, new, language_id, tree):
            return new
    return ""


def commented(generated: str, indent: str, language_id: str) -> str:
    """Generated code that does not parse, as line comments at `indent` (one line each, no newline at the end).

    >>> commented("x :=\\n  y", "\\t", "go")
    '\\t// x :=\\n\\t//   y'
    """
    marker = profile(language_id).line_comment
    return "\n".join(f"{indent}{marker} {line}".rstrip() for line in generated.rstrip().splitlines())


def stub_fallback(stub: Stub, generated: str, original: str, language_id: str) -> str:
    """A body that did not parse: the model's text as comments above the placeholder, which stays."""
    notes = commented(generated.strip("\n"), stub.indent, language_id)
    if not notes.strip():
        return ""
    if not original.strip():
        return f"{stub.lead}{notes}{stub.trail}"
    return f"{notes}\n{original}" if not stub.lead else f"{stub.lead}{notes}\n{stub.indent}{original.strip()}{stub.trail}"


# -- quick fixes and rewrites: statements --------------------------------------------------------


def enclosing_statement(tree: Tree, points: Points, start: int, end: int, language_id: str) -> tuple[int, int] | None:
    """Offsets of the smallest statement around [start, end): the ancestor whose parent is one of the
    language's containers (a block, a module). None where the language has no grammar or the range
    is no statement's (between two).

    >>> text = "def f(x):\\n    y = g(x +)\\n    return y\\n"
    >>> a, b = enclosing_statement(parse(text, "python"), Points(text), 20, 21, "python")
    >>> text[a:b]
    'y = g(x +)'
    """
    containers = profile(language_id).containers
    node = tree.root_node.named_descendant_for_point_range(points.point(start), points.point(max(start, end)))
    while node is not None and node.parent is not None and (node.parent.type not in containers
                                                             or node.type in containers):
        node = node.parent
    if node is None or node.parent is None:
        return None
    return points.offset(node.start_point), points.offset(node.end_point)


def statement_stop(depth: int, language_id: str, lines: int = 1) -> Callable[[str], int | None]:
    """Stop a statement (or `lines` lines of them) written anew at indentation `depth` where its shape
    ends: at the first line break after at least `lines` lines of code with every bracket closed, unless
    that line opens a block (`:`, `{`); after a block's body, at the line break before the first line of
    code back at `depth` that does not continue the statement (`else`, `except`, a closer). For one
    statement, a first line of comment only ends it at once (the caller drops it) and later ones do not
    count; for a selection of `lines` lines, they count as lines. It also stops
    wherever `block_stop` would.

    >>> statement_stop(0, "go")("x := f(1,\\n  2)\\ny := 3\\n")
    14
    >>> gen = "for x in y:\\n    # each\\n    f(x)\\nz = 1\\n"
    >>> gen[:statement_stop(0, "python")(gen)]
    'for x in y:\\n    # each\\n    f(x)'
    >>> statement_stop(0, "python")("# note\\nx = 1\\n")
    6
    """
    block, language = block_stop(depth, language_id), profile(language_id)

    def stop(gen: str) -> int | None:
        cut = block(gen)
        text = gen if cut is None else gen[:cut]
        return _statement_end(text, list(brackets_of(text, language_id)), depth, language, lines, cut)
    return stop


def _statement_end(text: str, brackets: list[tuple[int, str]], depth: int, language: Profile, lines: int,
                   cut: int | None) -> int | None:
    """The line break where the statement in `text` ends (see statement_stop), else `cut`."""
    written, in_body, pending, start, open_, k = 0, False, None, 0, 0, 0
    for line in text.split("\n")[:-1]:  # whole lines only
        end = start + len(line)
        while k < len(brackets) and brackets[k][0] < end:
            open_ += 1 if brackets[k][1] in language.openers else -1
            k += 1
        code = _code(line, language.line_comment)
        if lines == 1 and not written and not code.strip() and line.strip():
            return end  # a comment first: what follows is more comment, seldom the statement
        if code.strip() or lines > 1 and line.strip():  # a selection's comment lines count as its lines
            indent = len(line) - len(line.lstrip(" \t"))
            if pending is not None:
                if _back_at(line, depth, language):
                    return pending
                pending = None
            in_body = in_body or (written > 0 and indent > depth)
            written += 1
            if open_ <= 0 and written >= lines and not language.block_opener.search(code.rstrip()):
                if not in_body:
                    return end
                pending = end  # a body's last line, if the next line of code is back at `depth`
        start = end + 1
    last = text[start:]  # the line being written
    return pending if pending is not None and last.strip() and _back_at(last, depth, language) else cut


def _back_at(line: str, depth: int, language: Profile) -> bool:
    """Whether a line of code is back at `depth` and starts a new statement (no `else`, no closer)."""
    word, first = _first_word(line.strip()), line.strip()[0]
    return len(line) - len(line.lstrip(" \t")) <= depth and word not in language.continuations \
        and first not in language.closers


def fix_note(text: str, points: Points, start: int, message: str, language_id: str) -> tuple[int, str]:
    """(where, comment): the diagnostic's message as a comment to insert in the prompt of the statement
    at `start`, where the language is known (its comment marker is); (start's line start, "") otherwise.

    At the end of the line above when that line has code: a note on a line of its own leads a small
    model to write more comment lines instead of the statement. Else on a line of its own above.

    >>> text = "def f():\\n    y = z\\n"
    >>> fix_note(text, Points(text), 13, "undefined name 'z'", "python")
    (8, "  # FIX: undefined name 'z'")
    >>> fix_note("y = z\\n", Points("y = z\\n"), 0, "undefined name 'z'", "python")
    (0, "# FIX: undefined name 'z'\\n")
    """
    language, line_start = profile(language_id), points.line_start(start)
    if not language.id or not message.strip():
        return line_start, ""
    comment = f"{language.line_comment} FIX: {' '.join(message.split())[:200]}"
    end_above = line_start - (2 if text[line_start - 2: line_start] == "\r\n" else 1)
    above = text[points.line_start(max(0, end_above)): end_above] if line_start > 0 else ""
    if above.strip() and not above.strip().startswith(language.line_comment):
        return end_above, f"  {comment}"
    return line_start, f"{_indent_of(text, points, start)}{comment}\n"


# -- tests ----------------------------------------------------------------------------------------


def header_of_test(name: str, language_id: str, indent: str = "") -> str | None:
    """The start of a test of `name` up to its body, indented by `indent`.

    >>> header_of_test("area", "go")
    'func TestArea(t *testing.T) {\\n'
    """
    header = profile(language_id).test_header
    if header is None:
        return None
    text = header.format(name=name, Name=name[:1].upper() + name[1:])
    return "".join(indent + line for line in text.splitlines(keepends=True))


def files_of_tests(path: str, language_id: str) -> list[str]:
    """Where, by the language's convention, the tests of the module at `path` would be (POSIX paths).

    >>> files_of_tests("/p/src/shapes.go", "go")
    ['/p/src/shapes_test.go']
    """
    import posixpath

    folder, file = posixpath.split(path)
    stem, ext = posixpath.splitext(file)
    return [posixpath.normpath(posixpath.join(folder, t.format(stem=stem, ext=ext)))
            for t in profile(language_id).test_files]


def tests_module_end(tree: Tree, points: Points, language_id: str) -> int | None:
    """Offset of the closing "}" of the document's in-file test module (Rust's `mod tests { ... }`), or None.

    >>> text = "fn f() {}\\n\\n#[cfg(test)]\\nmod tests {\\n    use super::*;\\n}\\n"
    >>> tests_module_end(parse(text, "rust"), Points(text), "rust") == text.rindex("}")
    True
    """
    spec = profile(language_id).test_module
    if spec is None:
        return None
    for node in tree.root_node.named_children:
        name, body = node.child_by_field_name("name"), node.child_by_field_name("body")
        if node.type == spec[0] and name is not None and name.text.decode() == spec[1] \
                and body is not None and body.text[-1:] == b"}":
            return points.offset(body.end_point) - 1
    return None
