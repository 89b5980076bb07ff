"""Code actions a FIM model can do: complete a stub body, write a docstring.

The light bulb lists "Codestral: complete body of f" on a function whose body is only `pass`, `...`,
`raise NotImplementedError` or a TODO comment, and "Codestral: write docstring for f" on a Python
function without one. Listing is cheap (text scanning); the edit is generated on
`codeAction/resolve`, only for the action the user picks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsprotocol import types

from ..documents import PositionError
from ..scheduler import Superseded
from ..server import CodestralServer

DEF = re.compile(r"^(?P<indent>[ \t]*)(async\s+)?def\s+(?P<name>\w+)")
STUB = re.compile(r"^\s*(pass|\.\.\.|raise\s+NotImplementedError\b.*|#\s*TODO\b.*)\s*$")
TODO = re.compile(r"^\s*(//|#|--)\s*TODO\b")


@dataclass(frozen=True)
class Stub:
    """A region to fill: document offsets [start, end) replaced by the generated text."""
    kind: str  # "body" or "docstring"
    name: str
    start: int
    end: int
    indent: str


def python_stubs(text: str, lines: list[str], starts: list[int], first: int, last: int) -> list[Stub]:
    """Stubs of Python functions whose `def` line is within [first - 20, last]."""
    found = []
    for i in range(max(0, first - 20), min(last + 1, len(lines))):
        m = DEF.match(lines[i])
        if not m:
            continue
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith(":"):  # signature over several lines
            j += 1
        body = [k for k in range(j + 1, len(lines)) if lines[k].strip()]
        base = len(m.group("indent").expandtabs())
        block = []
        for k in body:
            if len(lines[k]) - len(lines[k].lstrip()) <= base:
                break
            block.append(k)
        if not block:
            continue
        indent = lines[block[0]][: len(lines[block[0]]) - len(lines[block[0]].lstrip())]
        has_doc = lines[block[0]].lstrip().startswith(('"""', "'''", 'r"""'))
        statements = [k for k in block if not lines[k].lstrip().startswith(('"""', "'''"))] if has_doc else block
        name = m.group("name")
        if statements and all(STUB.match(lines[k]) for k in statements) and len(statements) <= 2:
            found.append(Stub("body", name, starts[statements[0]], line_end(text, starts, statements[-1]), indent))
        if not has_doc and i <= last:
            found.append(Stub("docstring", name, starts[j + 1], starts[j + 1], indent))
    return found


def todo_stubs(text: str, lines: list[str], starts: list[int], first: int, last: int) -> list[Stub]:
    return [Stub("body", "TODO", starts[k], line_end(text, starts, k), lines[k][: len(lines[k]) - len(lines[k].lstrip())])
            for k in range(first, min(last + 1, len(lines))) if TODO.match(lines[k])]


def line_end(text: str, starts: list[int], k: int) -> int:
    """Offset of the end of line k, before its line break."""
    end = starts[k + 1] if k + 1 < len(starts) else len(text)
    while end > starts[k] and text[end - 1] in "\r\n":
        end -= 1
    return end


def fill(engine, text: str, stub: Stub, session: str, cancelled, max_tokens: int = 256) -> str:
    """Generate the text for a stub with FIM: the body up to the end of its block, or a docstring."""
    if stub.kind == "docstring":
        prefix = text[: stub.start] + stub.indent + '"""'
        out = engine.complete(prefix, '"""\n' + text[stub.start:], max_tokens=96, stop=['"""'],
                              session=session, cancelled=cancelled).text
        return f'{stub.indent}"""{out.strip()}"""\n' if out.strip() else ""
    prefix = text[: stub.start] + stub.indent
    suffix = text[stub.end:]
    depth = len(stub.indent.expandtabs())

    def block_end(generated: str) -> int | None:
        offset = 0
        for line in generated.splitlines(keepends=True):
            if offset and line.strip() and len(line) - len(line.lstrip()) < depth:
                return offset
            offset += len(line)
        return None

    out = engine.complete(prefix, suffix, max_tokens=max_tokens, stop_fn=block_end, session=session,
                          cancelled=cancelled).text
    return (stub.indent + out).rstrip() if out.strip() else ""


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True))
    def code_action(ls: CodestralServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None or ls.engine is None:
            return []
        starts = doc.line_starts
        lines = [doc.line_text(k) for k in range(len(starts))]
        first = min(params.range.start.line, len(lines) - 1)
        last = min(params.range.end.line, len(lines) - 1)
        stubs = todo_stubs(doc.text, lines, starts, first, last)
        if doc.language_id == "python":
            stubs = python_stubs(doc.text, lines, starts, first, last) + stubs
        actions = []
        for stub in stubs:
            title = (f"Codestral: write docstring for {stub.name}" if stub.kind == "docstring"
                     else f"Codestral: complete body of {stub.name}")
            data = {"uri": doc.uri, "version": doc.version, "kind": stub.kind, "name": stub.name,
                    "start": stub.start, "end": stub.end, "indent": stub.indent}
            actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite, data=data))
        return actions

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CodestralServer, action: types.CodeAction) -> types.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        doc = ls.documents.get(data.get("uri", ""))
        if doc is None or ls.engine is None or doc.version != data.get("version"):
            return action  # stale: no edit, the client shows nothing
        stub = Stub(data["kind"], data["name"], data["start"], data["end"], data["indent"])
        text, engine = doc.text, ls.engine
        try:
            new_text = await ls.scheduler.run(doc.uri, lambda cancelled: fill(engine, text, stub, doc.uri, cancelled))
        except (Superseded, PositionError):
            return action
        if new_text:
            enc = ls.position_encoding
            edit_range = types.Range(doc.position_at(stub.start, enc), doc.position_at(stub.end, enc))
            action.edit = types.WorkspaceEdit(changes={doc.uri: [types.TextEdit(range=edit_range, new_text=new_text)]})
        return action
