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
import re
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ...context import line_comment, profile
from ...context.actions import (
    Points,
    Stub,
    block_stop,
    find_stubs,
    longest_parsing,
    parses_after,
    stub_fallback,
    stub_text,
)
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
         max_tokens: int = 256) -> tuple[str, str]:
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
    new = longest_parsing(text, stub.start, stub.end, lambda body: stub_text(stub, body), out, language_id)
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


# -- listing and resolving ------------------------------------------------------------------------

FIELDS: dict[str, type] = {"uri": str, "version": int, "kind": str, "start": int, "end": int}
KIND_FIELDS: dict[str, dict[str, type]] = {
    "body": {"name": str, "indent": str, "lead": str, "trail": str}, "docstring": {"name": str, "indent": str},
    **{kind: {} for kind in INSTRUCT_TITLES},
}


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


def stub_actions(doc: TextDocument, tree, first: int, last: int) -> list[types.CodeAction]:
    actions = []
    for stub in find_stubs(tree, doc.text, points_of(doc), first, last, doc.language_id):
        title = (f"Codestral: write docstring for {stub.name}" if stub.kind == "docstring"
                 else f"Codestral: complete body of {stub.name}")
        data = {"uri": doc.uri, "version": doc.version, "kind": stub.kind, "name": stub.name, "start": stub.start,
                "end": stub.end, "indent": stub.indent, "lead": stub.lead, "trail": stub.trail}
        actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite, data=data))
    return actions


def instruct_actions(doc: TextDocument, start: int, end: int) -> list[types.CodeAction]:
    if not doc.text[start:end].strip() or end - start > MAX_SELECTION_CHARS:
        return []
    return [types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite,
                             data={"uri": doc.uri, "version": doc.version, "kind": kind, "start": start, "end": end})
            for kind, title in INSTRUCT_TITLES.items()]


def list_actions(completer: Completer, doc: TextDocument, params: types.CodeActionParams,
                 encoding: str) -> list[types.CodeAction]:
    """Every action for the request's range: runs off the event loop (a first parse may take a while)."""
    last_line = len(doc.line_starts) - 1
    first, last = min(params.range.start.line, last_line), min(params.range.end.line, last_line)
    tree = completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
    actions = stub_actions(doc, tree, first, last) if tree is not None else []
    if completer.instruct and params.range.start != params.range.end:
        try:
            start, end = doc.offset_at(params.range.start, encoding), doc.offset_at(params.range.end, encoding)
        except PositionError:
            return actions
        actions += instruct_actions(doc, start, end)
    return actions


def work_for(completer: Completer, doc: TextDocument, data: dict):
    """The function the worker runs for an action: (start, end, new text) or None."""
    text, kind, start, end = doc.text, data["kind"], data["start"], data["end"]
    if kind in INSTRUCT_TITLES:
        def ask(cancelled):
            edit = instruct_edit(completer, text, kind, start, end, doc.language_id, cancelled)
            return (*edit, "") if edit else None
        return ask
    stub = Stub(kind, data["name"], start, end, data["indent"], data.get("lead", ""), data.get("trail", ""))

    def work(cancelled):
        new_text, note = fill(completer, text, stub, doc.uri, cancelled, doc.language_id)
        if note and not parses_after(text, start, end, new_text, doc.language_id):
            return None  # neither the body nor the comments parse (a stub inside broken code)
        return (stub.start, stub.end, new_text, note) if new_text else None
    return work


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True))
    async def code_action(ls: CodestralServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None or ls.completer is None:
            return []
        completer, encoding = ls.completer, ls.position_encoding
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: list_actions(completer, doc, params, encoding))

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CodestralServer, action: types.CodeAction) -> types.CodeAction:
        data = checked(action.data)
        doc = ls.documents.get(data["uri"])
        if doc is None or ls.completer is None or doc.version != data["version"]:
            return action  # stale: no edit, the client shows nothing
        if data["end"] > len(doc.text):
            raise JsonRpcInvalidParams(f"codeAction/resolve: range {data['start']}-{data['end']} is outside the document")
        try:
            edit = await ls.scheduler.run(doc.uri, work_for(ls.completer, doc, data))
        except (Superseded, PositionError):
            return action
        except ValueError as exc:  # e.g. a selection too long for the model's context
            ls.log_message(f"codestral: {action.title}: {exc}", types.MessageType.Warning)
            return action
        if edit is not None:
            start, end, new_text, note = edit
            if note:
                ls.log_message(f"codestral: {action.title}{note}")
            enc = ls.position_encoding
            edit_range = types.Range(doc.position_at(start, enc), doc.position_at(end, enc))
            action.edit = types.WorkspaceEdit(changes={doc.uri: [types.TextEdit(range=edit_range, new_text=new_text)]})
        return action
