"""Code actions: what any FIM model can do in any language with a grammar, and what an instruct
model can do on a selection.

Any model: the light bulb lists "Codestral: complete body of f" on a function whose body is empty,
only a placeholder (`pass`, `...`, `todo!()`, `panic("TODO")`, `throw new Error("not implemented")`,
...) or a TODO comment, found with tree-sitter (`context/actions.py`); the body is written by FIM with
the signature, its comments and the file around as context, stopped at the end of the block. Python
functions without a docstring also get "Codestral: write docstring for f".

Instruct models only (the checkpoint declares it, `engine.checkpoints.loading.is_instruct`), on a non-empty
selection: "explain" (the answer goes above the selection as line comments), "refactor" (the
selection is replaced by the answer's code) and "write tests" (the answer's code is appended to the
document).

Listing is cheap and off the event loop: the parse cache's tree, visited over the requested rows
only. The edit is generated on `codeAction/resolve`, on the inference worker, only for the action
the user picks; a newer request for the document supersedes it. Resolve data that is not what
listing sent is answered with InvalidParams.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path

from ...context import line_comment, profile
from ...context.actions import (
    Points, Stub, block_stop, commented, enclosing_statement, find_stubs, fix_prompt, functions_in_rows,
    longest_parsing, parses_after, statement_stop, stub_fallback, stub_text, files_of_tests, header_of_test, tests_module_end,
)
from ...context.indentation import detect_indentation
from ...pipeline import Document
from ..documents import PositionError, TextDocument
from ..scheduler import Superseded

if TYPE_CHECKING:
    from ...pipeline import Completer
    from ..server import CodestralServer


def points_of(doc: TextDocument) -> Points:
    """The document's line starts serve as row starts unless it has lone "\r" line breaks."""
    text = doc.text
    if text.count("\r") == text.count("\r\n"):
        return Points(text, doc.line_starts)
    return Points(text)


def prompt(completer: Completer, uri: str, language_id: str, prefix: str, suffix: str) -> tuple[str, str]:
    """The FIM prefix and suffix around a middle, cut to the completion's token budgets."""
    window = completer.window_for(Document(uri, language_id, prefix + suffix), len(prefix))
    return window.prefix, window.suffix


NOT_PARSING = " (as comments: the model's code does not parse)"


def fill(completer: Completer, text: str, stub: Stub, session: str, cancelled, language_id: str = "python",
         max_tokens: int = 256, tree=None) -> tuple[str, str]:
    """(text, title note) that replaces a stub, generated with FIM: the body up to the end of its block, or a docstring.

    The longest head of the body that keeps the document parsing; when none does, the model's text as
    comments above the placeholder (the log says so: `NOT_PARSING`)."""
    if stub.kind == "docstring":
        quote = profile(language_id).docstring or '"""'
        prefix, suffix = prompt(completer, session, language_id, text[: stub.start] + stub.indent + quote,
                                quote + "\n" + text[stub.start:])
        out = completer.fill(prefix, suffix, max_tokens=96, stop=[quote], session=session, cancelled=cancelled).text
        return (f"{stub.indent}{quote}{out.strip()}{quote}\n" if out.strip() else ""), ""
    prefix, suffix = prompt(completer, session, language_id, text[: stub.start] + stub.lead + stub.indent,
                            stub.trail + text[stub.end:])
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=block_stop(len(stub.indent), language_id),
                         session=session, cancelled=cancelled).text
    new = longest_parsing(text, stub.start, stub.end, lambda body: stub_text(stub, body), out, language_id, tree)
    if new:
        return new, ""
    return stub_fallback(stub, out, text[stub.start:stub.end], language_id), NOT_PARSING


# -- instruct actions: pure helpers ---------------------------------------------------------------

INSTRUCT_TITLES = {"explain": "Codestral: explain the selection", "refactor": "Codestral: refactor the selection",
                   "tests": "Codestral: write tests for the selection"}
MAX_SELECTION_CHARS = 12_000  # about 3k tokens: room for the question and the answer
FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:^```|\Z)", re.S | re.M)


def instruct_turns(kind: str, language: str, code: str) -> list[tuple[str, str]]:
    """The chat turns for an instruct action on `code` written in `language`."""
    block = f"```{language}\n{code.rstrip()}\n```"
    ask = {
        "explain": "Explain briefly, in plain sentences without code, what this code does:",
        "refactor": "Refactor this code to be clearer without changing what it does. Answer with the new "
                    "code only, in one fenced code block:",
        "tests": "Write unit tests for this code. Answer with the test code only, in one fenced code block:",
    }[kind]
    return [("user", f"{ask}\n\n{block}")]


def code_block(answer: str) -> str:
    """The first fenced code block of an answer, or the whole answer when it has none.

    >>> code_block("Here:\\n```python\\nx = 1\\n```\\nDone.")
    'x = 1'
    >>> code_block("x = 1\\n")
    'x = 1'
    """
    m = FENCE.search(answer)
    return (m.group(1) if m else answer).strip("\n")


def as_comment(text: str, language: str, indent: str, width: int = 88) -> str:
    """Wrap prose into line comments at `indent`, ending with a newline.

    >>> as_comment("Adds two numbers.", "python", "    ")
    '    # Adds two numbers.\\n'
    """
    prefix = f"{indent}{line_comment(language)} "
    out = []
    for paragraph in text.strip().splitlines():
        words, line = paragraph.split(), ""
        for word in words:
            if line and len(prefix) + len(line) + 1 + len(word) > width:
                out.append(prefix + line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append((prefix + line).rstrip())
    return "".join(line + "\n" for line in out)


def instruct_edit(completer: Completer, text: str, kind: str, start: int, end: int, language: str,
                  cancelled=None, max_tokens: int = 512) -> tuple[int, int, str] | None:
    """Ask the instruct model and turn its answer into (start, end, new text) for the document, or None.

    explain: comments inserted at the start of the selection's first line; refactor: the selection
    replaced (its trailing line break kept); tests: the code appended after the document's end.
    """
    code = text[start:end]
    answer = completer.chat(instruct_turns(kind, language, code), max_tokens=max_tokens, cancelled=cancelled).text
    if not answer.strip():
        return None
    if kind == "explain":
        line_start = text.rfind("\n", 0, start) + 1
        first = text[line_start:]
        indent = first[: len(first) - len(first.lstrip(" \t"))]
        return line_start, line_start, as_comment(answer, language, indent)
    new_code = code_block(answer)
    if not new_code.strip():
        return None
    if kind == "refactor":
        return start, end, new_code + ("\n" if code.endswith("\n") else "")
    sep = "" if text.endswith("\n") or not text else "\n"
    return len(text), len(text), f"{sep}\n\n{new_code}\n"


# -- FIM versions of fix, rewrite, explain and tests: run on the worker --------------------------

Edit = tuple[TextDocument, int, int, str, str]  # (document, start, end, new text, note for the log)
INDENT = re.compile(r"[ \t]*")


def regenerate(completer: Completer, doc: TextDocument, start: int, end: int, message: str, cancelled,
               max_tokens: int = 256) -> Edit | str:
    """text[start:end] written anew by FIM (with the diagnostic's message as a comment above, if any);
    the reason as a string when there is nothing to offer: the same text, or a text that does not parse."""
    text, language_id = doc.text, doc.language_id
    points = points_of(doc)
    original = text[start:end]
    prefix, suffix = fix_prompt(text, points, start, end, message, language_id)
    prefix, suffix = prompt(completer, doc.uri, language_id, prefix, suffix)
    depth = len(INDENT.match(text, points.line_start(start)).group())
    stop = statement_stop(original.rstrip("\n").count("\n") + 1, depth, language_id)
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=stop, session=doc.uri,
                         cancelled=cancelled).text.rstrip()
    new = out + ("\n" if original.endswith("\n") and out else "")
    if not out.strip():
        return "the model wrote nothing"
    if new.strip() == original.strip():
        return "the model wrote the same text"
    tree = completer.parses.get(doc.uri, doc.version, text, language_id)
    if not parses_after(text, start, end, new, language_id, tree):
        return "the model's text does not parse"
    return doc, start, end, new, ""


def explain_by_fim(completer: Completer, doc: TextDocument, start: int, cancelled) -> Edit | str:
    """Line comments written by FIM above the line where `start` is: what a base model can say about code."""
    text, language_id = doc.text, doc.language_id
    line_start = text.rfind("\n", 0, start) + 1
    indent = INDENT.match(text, line_start).group()
    marker = profile(language_id).line_comment
    prefix, suffix = prompt(completer, doc.uri, language_id, text[:line_start] + indent + marker + " ",
                            "\n" + text[line_start:])

    def stop(gen: str) -> int | None:
        lines = gen.split("\n")
        offset = len(lines[0])
        for n, line in enumerate(lines[1:], 1):
            if n >= 4 or not line.strip().startswith(marker):
                return offset
            offset += 1 + len(line)
        return None

    out = completer.fill(prefix, suffix, max_tokens=96, stop_fn=stop, session=doc.uri, cancelled=cancelled).text
    if not out.strip():
        return "the model wrote nothing"
    return doc, line_start, line_start, f"{indent}{marker} {out.strip()}\n", ""


def target_of_test(doc: TextDocument, tree, name_start: int, open_doc) -> tuple[TextDocument, int, str]:
    """(document, offset, indentation) where a test of the function at `name_start` goes:
    the in-file test module, the test file of this module by the language's convention (when it exists),
    right after the function (tests_beside), else the end of the document."""
    language = profile(doc.language_id)
    points = points_of(doc)
    unit = detect_indentation(doc.text)
    step = " " * unit.tab_size if unit.insert_spaces else "\t"
    end = tests_module_end(tree, points, doc.language_id) if tree is not None else None
    if end is not None:
        return doc, points.line_start(end), step
    for path in files_of_tests(to_fs_path(doc.uri) or "", doc.language_id) if doc.uri.startswith("file:") else []:
        uri = from_fs_path(path)
        target = open_doc(uri)
        if target is None and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                target = TextDocument(uri, doc.language_id, 0, f.read())
        if target is not None:
            return target, len(target.text), ""
    functions = functions_in_rows(tree, points.row(name_start), points.row(name_start), doc.language_id) \
        if tree is not None else []
    if language.tests_beside and functions:
        node = functions[-1].node
        at = points.offset(node.end_point)
        return doc, at, INDENT.match(doc.text, points.line_start(at)).group()
    return doc, len(doc.text), ""


def write_test(completer: Completer, doc: TextDocument, name: str, start: int, end: int, open_doc,
               cancelled, max_tokens: int = 256) -> Edit | str:
    """A test of the function text[start:end] written by FIM after the language's test header."""
    language_id = doc.language_id
    tree = completer.parses.get(doc.uri, doc.version, doc.text, language_id)
    target, at, indent = target_of_test(doc, tree, start, open_doc)
    header = header_of_test(name, language_id, indent)
    if header is None:
        return "no test header for this language"
    before, after = target.text[:at], target.text[at:]
    sep = "" if not before else "\n" * max(0, 2 - (len(before) - len(before.rstrip("\n"))))
    if not before.endswith("\n") and before:
        sep = "\n\n"
    unit = detect_indentation(doc.text)
    body_indent = indent + (" " * unit.tab_size if unit.insert_spaces else "\t")
    footer = "".join(indent + line for line in profile(language_id).test_footer.splitlines(keepends=True))
    context = ""
    if target is not doc:  # the function under test, as comments: the test file does not show it
        context = commented(doc.text[start:end], "", language_id) + "\n\n"
    prefix, suffix = prompt(completer, target.uri, language_id, context + before + sep + header + body_indent,
                            "\n" + footer + after)
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=block_stop(len(body_indent), language_id),
                         session=target.uri, cancelled=cancelled).text
    if not out.strip():
        return "the model wrote nothing"

    def make(body: str) -> str:
        return f"{sep}{header}{body_indent}{body.rstrip()}\n{footer}" if body.strip() else ""

    new = longest_parsing(target.text, at, at, make, out, language_id, tree if target is doc else None)
    if new:
        return target, at, at, new, ""
    whole = commented(f"{header}{body_indent}{out.rstrip()}\n{footer}", indent, language_id)
    return target, at, at, f"{sep}{whole}\n", NOT_PARSING


# -- listing and resolving ------------------------------------------------------------------------

FIELDS: dict[str, type] = {"uri": str, "version": int, "kind": str, "start": int, "end": int}
KIND_FIELDS: dict[str, dict[str, type]] = {
    "body": {"name": str, "indent": str, "lead": str, "trail": str}, "docstring": {"name": str, "indent": str},
    "fix": {"message": str}, "rewrite": {}, "comment": {}, "test": {"name": str},
    **{kind: {} for kind in INSTRUCT_TITLES},
}
MAX_FIX_LINES = 40  # a "statement" longer than this (a whole function around a diagnostic) is not offered


def checked(data: Any) -> dict:
    """Resolve data as listing sent it, or InvalidParams."""
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams("codeAction/resolve: data must be an object")
    fields = dict(FIELDS, **KIND_FIELDS.get(data.get("kind"), {})) if data.get("kind") in KIND_FIELDS else None
    if fields is None:
        raise JsonRpcInvalidParams(f"codeAction/resolve: unknown kind {data.get('kind')!r}")
    wrong = [k for k, t in fields.items() if not isinstance(data.get(k), t) or isinstance(data.get(k), bool)]
    if wrong or not 0 <= data["start"] <= data["end"]:
        raise JsonRpcInvalidParams(f"codeAction/resolve: bad data fields {wrong or ['start', 'end']}")
    return data


def action(doc: TextDocument, title: str, kind: str, action_kind: types.CodeActionKind, start: int, end: int,
           diagnostics: list[types.Diagnostic] | None = None, **fields) -> types.CodeAction:
    data = {"uri": doc.uri, "version": doc.version, "kind": kind, "start": start, "end": end, **fields}
    return types.CodeAction(title=title, kind=action_kind, data=data, diagnostics=diagnostics)


def stub_actions(doc: TextDocument, tree, first: int, last: int) -> list[types.CodeAction]:
    actions = []
    for stub in find_stubs(tree, doc.text, points_of(doc), first, last, doc.language_id):
        title = (f"Codestral: write docstring for {stub.name}" if stub.kind == "docstring"
                 else f"Codestral: complete body of {stub.name}")
        fields = {"name": stub.name, "indent": stub.indent}
        if stub.kind == "body":
            fields.update(lead=stub.lead, trail=stub.trail)
        actions.append(action(doc, title, stub.kind, types.CodeActionKind.RefactorRewrite, stub.start, stub.end,
                              **fields))
    return actions


def test_actions(doc: TextDocument, tree, first: int, last: int) -> list[types.CodeAction]:
    """"Write a test for f" on the innermost functions of the rows, for languages with a test header."""
    if profile(doc.language_id).test_header is None:
        return []
    points = points_of(doc)
    functions = functions_in_rows(tree, first, last, doc.language_id)
    inner = [f for f in functions if not any(g is not f and f.node.start_byte <= g.node.start_byte
                                             and g.node.end_byte <= f.node.end_byte for g in functions)]
    return [action(doc, f"Codestral: write a test for {f.name}", "test", types.CodeActionKind.RefactorRewrite,
                   points.offset(f.node.start_point), points.offset(f.node.end_point), name=f.name) for f in inner]


def fix_actions(doc: TextDocument, tree, diagnostics: list[types.Diagnostic], encoding: str) -> list[types.CodeAction]:
    """"Fix line N" for each diagnostic: its smallest enclosing statement (whole lines without a grammar)."""
    points, seen, actions = points_of(doc), set(), []
    for diagnostic in diagnostics:
        try:
            start, end = doc.offset_at(diagnostic.range.start, encoding), doc.offset_at(diagnostic.range.end, encoding)
        except PositionError:
            continue
        found = enclosing_statement(tree, points, start, end, doc.language_id) if tree is not None else None
        if found is None:
            found = points.line_start(start), doc.offset_at(types.Position(diagnostic.range.end.line, 10**6), encoding)
        a, b = found
        if found in seen or not doc.text[a:b].strip() or doc.text.count("\n", a, b) >= MAX_FIX_LINES:
            continue
        seen.add(found)
        actions.append(action(doc, f"Codestral: fix line {points.row(a) + 1}", "fix", types.CodeActionKind.QuickFix,
                              a, b, [diagnostic], message=diagnostic.message))
    return actions


def selection_actions(doc: TextDocument, start: int, end: int) -> list[types.CodeAction]:
    """A base model's versions of refactor and explain: the selection written anew, comments above it."""
    text = doc.text[start:end]
    if not text.strip() or end - start > MAX_SELECTION_CHARS:
        return []
    first = doc.text.count("\n", 0, start) + 1
    lines = f"{first}" if "\n" not in text.rstrip("\n") else f"{first}-{first + text.rstrip(chr(10)).count(chr(10))}"
    return [action(doc, f"Codestral: rewrite lines {lines}", "rewrite", types.CodeActionKind.RefactorRewrite,
                   start, end),
            action(doc, f"Codestral: explain lines {lines}", "comment", types.CodeActionKind.RefactorRewrite,
                   start, end)]


def instruct_actions(doc: TextDocument, start: int, end: int) -> list[types.CodeAction]:
    if not doc.text[start:end].strip() or end - start > MAX_SELECTION_CHARS:
        return []
    return [action(doc, title, kind, types.CodeActionKind.RefactorRewrite, start, end)
            for kind, title in INSTRUCT_TITLES.items()]


def wanted(actions: list[types.CodeAction], only: list[str] | None) -> list[types.CodeAction]:
    """The actions of the kinds the client asked for (`context.only`: a kind and its sub-kinds)."""
    if not only:
        return actions
    return [a for a in actions if any(a.kind == k or str(a.kind).startswith(f"{k}.") for k in only)]


def list_actions(completer: Completer, doc: TextDocument, params: types.CodeActionParams,
                 encoding: str) -> list[types.CodeAction]:
    """Every action for the request's range: runs off the event loop (a first parse may take a while)."""
    last_line = len(doc.line_starts) - 1
    first, last = min(params.range.start.line, last_line), min(params.range.end.line, last_line)
    tree = completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
    actions = fix_actions(doc, tree, params.context.diagnostics or [], encoding)
    if tree is not None:
        actions += stub_actions(doc, tree, first, last) + test_actions(doc, tree, first, last)
    if params.range.start != params.range.end:
        try:
            start, end = doc.offset_at(params.range.start, encoding), doc.offset_at(params.range.end, encoding)
        except PositionError:
            return wanted(actions, params.context.only)
        actions += instruct_actions(doc, start, end) if completer.instruct else selection_actions(doc, start, end)
    return wanted(actions, params.context.only)


def work_for(completer: Completer, doc: TextDocument, data: dict, open_doc):
    """The function the worker runs for an action: an Edit, a reason for no edit (str), or None."""
    text, kind, start, end = doc.text, data["kind"], data["start"], data["end"]
    if kind in INSTRUCT_TITLES:
        def ask(cancelled):
            edit = instruct_edit(completer, text, kind, start, end, doc.language_id, cancelled)
            return (doc, *edit, "") if edit else None
        return ask
    if kind in ("fix", "rewrite"):
        return lambda cancelled: regenerate(completer, doc, start, end, data.get("message", ""), cancelled)
    if kind == "comment":
        return lambda cancelled: explain_by_fim(completer, doc, start, cancelled)
    if kind == "test":
        return lambda cancelled: write_test(completer, doc, data["name"], start, end, open_doc, cancelled)
    stub = Stub(kind, data["name"], start, end, data["indent"], data.get("lead", ""), data.get("trail", ""))

    def work(cancelled):
        tree = completer.parses.get(doc.uri, doc.version, text, doc.language_id)
        new_text, note = fill(completer, text, stub, doc.uri, cancelled, doc.language_id, tree=tree)
        if note and not parses_after(text, start, end, new_text, doc.language_id, tree):
            return None  # neither the body nor the comments parse (a stub inside broken code)
        return (doc, stub.start, stub.end, new_text, note) if new_text else None
    return work


def register(server: CodestralServer) -> None:
    latest: dict[str, int] = {}  # uri -> the ticket of its newest listing request
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite],
        resolve_provider=True))
    async def code_action(ls: CodestralServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None or ls.completer is None:
            return []
        completer, encoding, uri = ls.completer, ls.position_encoding, doc.uri
        ticket = latest[uri] = latest.get(uri, 0) + 1

        def listing() -> list[types.CodeAction]:
            return list_actions(completer, doc, params, encoding) if latest.get(uri) == ticket else []

        actions = await asyncio.get_running_loop().run_in_executor(None, listing)
        return actions if latest.get(uri) == ticket else []  # a newer request for the document supersedes

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CodestralServer, action: types.CodeAction) -> types.CodeAction:
        data = checked(action.data)
        doc = ls.documents.get(data["uri"])
        if doc is None or ls.completer is None or doc.version != data["version"]:
            return action  # stale: no edit, the client shows nothing
        if data["end"] > len(doc.text):
            raise JsonRpcInvalidParams(f"codeAction/resolve: range {data['start']}-{data['end']} is outside the document")
        try:
            edit = await ls.scheduler.run(doc.uri, work_for(ls.completer, doc, data, ls.documents.get))
        except (Superseded, PositionError):
            return action
        except ValueError as exc:  # e.g. a selection too long for the model's context
            ls.log_message(f"codestral: {action.title}: {exc}", types.MessageType.Warning)
            return action
        if isinstance(edit, str):  # nothing to offer, and why
            ls.log_message(f"codestral: {action.title}: no edit, {edit}")
            action.title += f" (no edit: {edit})"
        elif edit is not None:
            target, start, end, new_text, note = edit
            if note:
                ls.log_message(f"codestral: {action.title}{note}")
            enc = ls.position_encoding
            edit_range = types.Range(target.position_at(start, enc), target.position_at(end, enc))
            action.edit = types.WorkspaceEdit(changes={target.uri: [types.TextEdit(range=edit_range,
                                                                                   new_text=new_text)]})
        return action
