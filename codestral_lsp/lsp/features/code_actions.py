"""Code actions: what a FIM model can do, and what an instruct model can do on a selection.

Any model: the light bulb lists "Codestral: complete body of f" on a function whose body is only
`pass`, `...`, `raise NotImplementedError` or a TODO comment, and "Codestral: write docstring for f"
on a Python function without one.

Instruct models only (the checkpoint declares it, `engine.checkpoints.loading.is_instruct`), on a non-empty
selection: "explain" (the answer goes above the selection as line comments), "refactor" (the
selection is replaced by the answer's code) and "write tests" (the answer's code is appended to the
document). They are hidden for FIM-only models such as the embedded one, which cannot follow
instructions.

Listing is cheap (text scanning); the edit is generated on `codeAction/resolve`, only for the
action the user picks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ...context import Profile, line_comment, profile
from ..documents import PositionError
from ..scheduler import Superseded

if TYPE_CHECKING:
    from ...pipeline import Completer
    from ..server import CodestralServer

TODO = re.compile(r"^\s*(//|#|--)\s*TODO\b")


@dataclass(frozen=True)
class Stub:
    """A region to fill: document offsets [start, end) replaced by the generated text."""
    kind: str  # "body" or "docstring"
    name: str
    start: int
    end: int
    indent: str


def definition_stubs(text: str, lines: list[str], starts: list[int], first: int, last: int,
                     language: Profile) -> list[Stub]:
    """Stubs of functions (`language.definition` lines) whose definition line is within [first - 20, last]."""
    found = []
    for i in range(max(0, first - 20), min(last + 1, len(lines))):
        m = language.definition.match(lines[i])
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
        if statements and all(language.stub_body.match(lines[k]) for k in statements) and len(statements) <= 2:
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


def fill(completer: Completer, text: str, stub: Stub, session: str, cancelled, max_tokens: int = 256) -> str:
    """Generate the text for a stub with FIM: the body up to the end of its block, or a docstring."""
    if stub.kind == "docstring":
        prefix = text[: stub.start] + stub.indent + '"""'
        out = completer.fill(prefix, '"""\n' + text[stub.start:], max_tokens=96, stop=['"""'],
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

    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=block_end, session=session,
                         cancelled=cancelled).text
    return (stub.indent + out).rstrip() if out.strip() else ""


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


def checked_data(data: Any) -> dict:
    """The data `code_action` put in an action, or InvalidParams: the client sends it back, maybe crafted."""
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams("codeAction/resolve: the action carries no data")
    fields = {"uri": str, "version": int, "kind": str, "start": int, "end": int}
    if data.get("kind") not in INSTRUCT_TITLES:
        fields.update(name=str, indent=str)
    bad = [key for key, kind in fields.items() if type(data.get(key)) is not kind]
    if not bad and not 0 <= data["start"] <= data["end"]:
        bad = ["start", "end"]
    if bad:
        raise JsonRpcInvalidParams(f"codeAction/resolve: invalid data ({', '.join(bad)})")
    return data


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True))
    def code_action(ls: CodestralServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None or ls.completer is None:
            return []
        starts = doc.line_starts
        lines = [doc.line_text(k) for k in range(len(starts))]
        first = min(params.range.start.line, len(lines) - 1)
        last = min(params.range.end.line, len(lines) - 1)
        stubs = todo_stubs(doc.text, lines, starts, first, last)
        language = profile(doc.language_id)
        if language.definition is not None:
            stubs = definition_stubs(doc.text, lines, starts, first, last, language) + stubs
        actions = []
        for stub in stubs:
            title = (f"Codestral: write docstring for {stub.name}" if stub.kind == "docstring"
                     else f"Codestral: complete body of {stub.name}")
            data = {"uri": doc.uri, "version": doc.version, "kind": stub.kind, "name": stub.name,
                    "start": stub.start, "end": stub.end, "indent": stub.indent}
            actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite, data=data))
        if ls.completer.instruct and params.range.start != params.range.end:
            try:
                start = doc.offset_at(params.range.start, ls.position_encoding)
                end = doc.offset_at(params.range.end, ls.position_encoding)
            except PositionError:
                return actions
            if doc.text[start:end].strip() and end - start <= MAX_SELECTION_CHARS:
                for kind, title in INSTRUCT_TITLES.items():
                    data = {"uri": doc.uri, "version": doc.version, "kind": kind, "start": start, "end": end}
                    actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite,
                                                    data=data))
        return actions

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CodestralServer, action: types.CodeAction) -> types.CodeAction:
        data = checked_data(action.data)
        doc = ls.documents.get(data["uri"])
        if doc is None or ls.completer is None or doc.version != data["version"]:
            return action  # stale: no edit, the client shows nothing
        if data["end"] > len(doc.text):
            raise JsonRpcInvalidParams(f"codeAction/resolve: end {data['end']} is past the document's end")
        text, completer = doc.text, ls.completer
        if data.get("kind") in INSTRUCT_TITLES:
            kind, language = data["kind"], doc.language_id

            def work(cancelled):
                return instruct_edit(completer, text, kind, data["start"], data["end"], language, cancelled)
        else:
            stub = Stub(data["kind"], data["name"], data["start"], data["end"], data["indent"])

            def work(cancelled):
                new_text = fill(completer, text, stub, doc.uri, cancelled)
                return (stub.start, stub.end, new_text) if new_text else None
        try:
            edit = await ls.scheduler.run(doc.uri, work)
        except (Superseded, PositionError):
            return action
        except ValueError as exc:  # e.g. a selection too long for the model's context
            ls.log_message(f"codestral: {action.title}: {exc}", types.MessageType.Warning)
            return action
        if edit is not None:
            start, end, new_text = edit
            enc = ls.position_encoding
            edit_range = types.Range(doc.position_at(start, enc), doc.position_at(end, enc))
            action.edit = types.WorkspaceEdit(changes={doc.uri: [types.TextEdit(range=edit_range, new_text=new_text)]})
        return action
