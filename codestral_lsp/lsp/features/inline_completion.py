"""Ghost text: `textDocument/inlineCompletion` (LSP 3.18).

The user sees grey text after the cursor as they type; Tab (in the editor) accepts it. The item's
range starts at the cursor and may extend over text the suggestion replaces, such as an auto-closed
bracket, so accepting never leaves a duplicate behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from .common import suggest

if TYPE_CHECKING:
    from ..server import CodestralServer


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CodestralServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        answer = await suggest(ls, params.text_document.uri, params.position, invoked=invoked)
        if answer is None:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(insert_text=answer.suggestion.text,
                                          range=answer.replace_range(ls.position_encoding))
        return types.InlineCompletionList(items=[item])
