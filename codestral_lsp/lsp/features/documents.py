"""Open, edited and closed documents (textDocument/didOpen, didChange, didClose).

Incremental sync: each change replaces a range given in the negotiated position encoding. A
notification's changes apply all or none: one that does not fit the document (the editor and server
disagree) is logged and the document keeps its text and version; the next full sync or reopen
repairs it, and the server keeps serving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from ...context import language_from_uri
from ..documents import PositionError

if TYPE_CHECKING:
    from ..server import CodestralServer


def register(server: CodestralServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodestralServer, params: types.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        ls.documents.open(d.uri, d.language_id or language_from_uri(d.uri), d.version, d.text)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodestralServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            ls.log_message(f"codestral: change to unknown document {params.text_document.uri}",
                           types.MessageType.Warning)
            return
        changes = [(change.text, getattr(change, "range", None)) for change in params.content_changes]
        try:
            doc.apply_changes(changes, params.text_document.version, ls.position_encoding)
        except PositionError as exc:
            ls.log_message(f"codestral: ignored version {params.text_document.version} of {doc.uri} "
                           f"(it stays at version {doc.version}): {exc}", types.MessageType.Warning)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodestralServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.close(params.text_document.uri)
        if ls.completer is not None:
            ls.completer.forget(params.text_document.uri)
        if ls.cascade is not None:
            ls.cascade.forget(params.text_document.uri)
