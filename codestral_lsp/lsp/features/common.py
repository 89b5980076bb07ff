"""What inline completion and completion share: find the document, convert the cursor, ask the worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types

from ...context import Suggestion
from ...pipeline import Document
from ..documents import PositionError, TextDocument
from ..scheduler import Superseded

if TYPE_CHECKING:
    from ..server import CodestralServer


@dataclass
class Answer:
    doc: TextDocument
    offset: int
    suggestion: Suggestion

    def replace_range(self, encoding: str) -> types.Range:
        return types.Range(self.doc.position_at(self.offset, encoding),
                           self.doc.position_at(self.suggestion.replace_end, encoding))


async def suggest(ls: CodestralServer, uri: str, position: types.Position,
                  options: types.FormattingOptions | None = None, invoked: bool = False) -> Answer | None:
    """The suggestion at a position, or None (not ready, unknown document, superseded, nothing useful).
    An `invoked` request (the user asked, not typed) waits for a model still loading, within the
    completion timeout; a typed one is answered empty at once, as the next keystroke asks again."""
    if ls.completer is None and invoked:
        await ls.wait_settled(ls.settings.completion.timeout_ms / 1000)
    if ls.completer is None or not ls.settings.completion.enabled:
        return None
    doc = ls.documents.get(uri)
    if doc is None:
        ls.log_message(f"codestral: completion asked for a document that is not open: {uri}",
                       types.MessageType.Warning)
        return None
    try:
        offset = doc.offset_at(position, ls.position_encoding)
    except PositionError as exc:
        ls.log_message(f"codestral: {exc}", types.MessageType.Warning)
        return None
    snapshot = Document(uri, doc.language_id, doc.text, doc.version)
    others = ls.other_documents(uri)
    completer = ls.completer
    tab_size = options.tab_size if options else None  # None: as the document is indented
    insert_spaces = options.insert_spaces if options else None

    cascade = ls.cascade
    kept = cascade.answer_for(uri, doc.version, offset) if cascade is not None else None
    if kept is not None:  # the remote's answer that the cascade told the client to ask for
        completer.recent.put(snapshot.text, offset, kept.suggestion)
        ls.record_latency(ls.last_latency_ms or 0.0, kept.backend)
        return Answer(doc, offset, kept.suggestion)
    hit = completer.recent.lookup(snapshot.text, offset)
    if hit is not None and not (invoked and cascade is not None):  # the user asks for the remote: go past it
        return Answer(doc, offset, hit)

    def work(cancelled):
        return completer.complete(snapshot, offset, others, cancelled, tab_size, insert_spaces, use_recent=False)

    try:
        result = await ls.scheduler.run(uri, work, ls.settings.completion.debounce_ms / 1000)
    except Superseded:
        return None
    ls.record_latency(result.latency_ms, result.backend if result.suggestion is not None else None)
    if cascade is not None and doc.version == snapshot.version:  # decided after this answer goes out
        ls.consider_escalating(result, invoked, doc, snapshot, offset, others, tab_size, insert_spaces)
    if result.suggestion is None or doc.text != snapshot.text:
        return None
    return Answer(doc, offset, result.suggestion)
