"""The JSON-RPC side of the server: what pygls' protocol does differently for us."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol


class CodestralProtocol(LanguageServerProtocol):
    """Answers requests whose params fail validation with InvalidParams (-32602).

    pygls reports such a request with a window/showMessage and never answers it, so the editor
    would wait forever; we send the error response ourselves and drop the message.
    """

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as exc:
            if "id" in data and "method" in data:
                self._send_response(data["id"], error=types.ResponseError(
                    code=JsonRpcInvalidParams.CODE, message=f"invalid params for {data['method']}: {exc}"))
            return _Dropped()

    # Document sync is ours (features/documents.py): pygls's copy splits lines with str.splitlines,
    # which also breaks at \x0c and \u2028 and so drifts from the editor's text. Plain methods
    # without `method_name` are not registered as built-in features.
    def lsp_text_document__did_open(self, params):
        return None

    def lsp_text_document__did_change(self, params):
        return None

    def lsp_text_document__did_close(self, params):
        return None


class _Dropped:
    jsonrpc = "dropped"  # handle_message ignores messages whose version is not 2.0
