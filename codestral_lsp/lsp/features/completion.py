"""`textDocument/completion` for clients without inline completion: the suggestion as one item.

The item's textEdit inserts at the cursor (and replaces what the suggestion overlaps); its label is
the suggestion's first line, and the filter text is the word before the cursor plus the suggestion,
so the client's fuzzy filter keeps it while the user types into it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from .common import suggest

if TYPE_CHECKING:
    from ..server import CodestralServer

WORD_BEFORE = re.compile(r"\w*$")


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
    async def completion(ls: CodestralServer, params: types.CompletionParams) -> types.CompletionList:
        context = params.context
        invoked = context is not None and context.trigger_kind == types.CompletionTriggerKind.Invoked
        answer = await suggest(ls, params.text_document.uri, params.position, invoked=invoked)
        if answer is None:
            return types.CompletionList(is_incomplete=True, items=[])
        text = answer.suggestion.text
        word = WORD_BEFORE.search(answer.doc.text[max(0, answer.offset - 100): answer.offset]).group()
        first_line = text.strip().splitlines()[0] if text.strip() else text
        edit_range = answer.replace_range(ls.position_encoding)
        edit_range.start = ls_position_before(answer, len(word), ls.position_encoding)
        item = types.CompletionItem(
            label=first_line[:80], kind=types.CompletionItemKind.Snippet, detail="codestral",
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=f"```\n{text}\n```"),
            filter_text=word + text, sort_text="0", preselect=True,
            text_edit=types.TextEdit(range=edit_range, new_text=word + text),
            insert_text_format=types.InsertTextFormat.PlainText)
        return types.CompletionList(is_incomplete=True, items=[item])


def ls_position_before(answer, chars: int, encoding: str) -> types.Position:
    return answer.doc.position_at(answer.offset - chars, encoding)
