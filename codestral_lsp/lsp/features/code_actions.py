"""Code actions (`textDocument/codeAction`, `codeAction/resolve`): what any FIM model can do in any
language with a grammar, and what an instruct model can do on a selection.

Any model, found with tree-sitter (`context/actions.py`), written by FIM (`lsp/fim_edits.py`):
- "complete body of f" on a function whose body is empty, only a placeholder (`pass`, `...`,
  `todo!()`, `panic("TODO")`, `throw new Error("not implemented")`, ...) or a TODO comment; Python
  functions without a docstring also get "write docstring for f";
- "fix line N" (quickfix) for each diagnostic the request carries: its smallest enclosing statement
  written anew, the message as a comment in the prompt;
- "write a test for f", from the language's test header, where the language's conventions put tests;
- on a selection, "rewrite lines a-b" and "explain lines a-b".

Instruct models (the checkpoint declares it, `engine.checkpoints.loading.is_instruct`) get, on a
non-empty selection, "explain" (the answer goes above the selection as line comments), "refactor"
(the selection is replaced by the answer's code) and "write tests" (appended to the document)
through chat, instead of the FIM rewrite and explain.

Listing is cheap and off the event loop: the parse cache's tree, visited over the requested rows
only; a newer listing for the document supersedes an older one. The edit is generated on
`codeAction/resolve`, on the inference worker, only for the action the user picks; a newer request
for the document supersedes it. Resolve data that is not what listing sent is answered with
InvalidParams (-32602).
"""
from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ...context import line_comment, profile
from ...context.actions import Stub, enclosing_statement, find_stubs, functions_in_rows, parses_after
from ..documents import PositionError, TextDocument
from ..fim_edits import explain_by_fim, fill, points_of, regenerate, write_test
from ..scheduler import Superseded

if TYPE_CHECKING:
    from ...pipeline import Completer
    from ..server import CodestralServer


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


def unit_test_actions(doc: TextDocument, tree, first: int, last: int) -> list[types.CodeAction]:
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
    asked = [getattr(k, "value", k) for k in only]

    def kind(a: types.CodeAction) -> str:
        return getattr(a.kind, "value", a.kind) or ""
    return [a for a in actions if any(kind(a) == k or kind(a).startswith(f"{k}.") for k in asked)]


def list_actions(completer: Completer, doc: TextDocument, params: types.CodeActionParams,
                 encoding: str) -> list[types.CodeAction]:
    """Every action for the request's range: runs off the event loop (a first parse may take a while)."""
    last_line = len(doc.line_starts) - 1
    first, last = min(params.range.start.line, last_line), min(params.range.end.line, last_line)
    tree = completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
    actions = fix_actions(doc, tree, params.context.diagnostics or [], encoding)
    if tree is not None:
        actions += stub_actions(doc, tree, first, last) + unit_test_actions(doc, tree, first, last)
    if params.range.start != params.range.end:
        try:
            start, end = doc.offset_at(params.range.start, encoding), doc.offset_at(params.range.end, encoding)
        except PositionError:
            return wanted(actions, params.context.only)
        actions += instruct_actions(doc, start, end) if completer.instruct else selection_actions(doc, start, end)
    return wanted(actions, params.context.only)


def work_for(completer: Completer, doc: TextDocument, data: dict, open_doc, others=()):
    """The function the worker runs for an action: an Edit, a reason for no edit (str), or None (also
    when cancelled). `others`: the other open documents, which lend snippets as to inline completion."""
    text, kind, start, end = doc.text, data["kind"], data["start"], data["end"]
    if kind in INSTRUCT_TITLES:
        def ask(cancelled):
            edit = instruct_edit(completer, text, kind, start, end, doc.language_id, cancelled)
            return (doc, *edit, "") if edit else None
        return ask
    if kind in ("fix", "rewrite"):
        return lambda cancelled: regenerate(completer, doc, start, end, data.get("message", ""), cancelled,
                                            whole_lines=kind == "rewrite", others=others)
    if kind == "comment":
        return lambda cancelled: explain_by_fim(completer, doc, start, cancelled)
    if kind == "test":
        return lambda cancelled: write_test(completer, doc, data["name"], start, end, open_doc, cancelled)
    stub = Stub(kind, data["name"], start, end, data["indent"], data.get("lead", ""), data.get("trail", ""))

    def work(cancelled):
        tree = completer.parses.get(doc.uri, doc.version, text, doc.language_id)
        new_text, note = fill(completer, doc, stub, cancelled, tree=tree, others=others)
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
            snapshot = TextDocument(doc.uri, doc.language_id, doc.version, doc.text)  # typing changes `doc`
            work = work_for(ls.completer, snapshot, data, ls.documents.get, ls.other_documents(doc.uri))
            edit = await ls.scheduler.run(doc.uri, work)
        except (Superseded, PositionError):
            return action
        except ValueError as exc:  # e.g. a selection too long for the model's context
            ls.log_message(f"codestral: {action.title}: {exc}", types.MessageType.Warning)
            return action
        if ls.documents.get(data["uri"]) is not doc or doc.version != data["version"]:
            return action  # typed in (or closed) meanwhile: the edit would land on other text
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
