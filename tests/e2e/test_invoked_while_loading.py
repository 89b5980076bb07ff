"""A completion the user asks for while the model is still loading waits for it (within the
completion timeout) instead of answering empty: the keypress is not lost."""

from __future__ import annotations

import sys

from codestral_lsp.tools.lsp_client import LspProcess
from tests.e2e.test_server import MODEL


def test_an_invoked_completion_during_the_load_is_answered_after_it():
    client = LspProcess([sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL])
    try:
        client.initialize({"completion": {"debounceMs": 0, "timeoutMs": 60000}})
        client.notify("textDocument/didOpen", {"textDocument": {
            "uri": "file:///w.py", "languageId": "python", "version": 1, "text": "def add(a, b):\n    return "}})
        answer = client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": "file:///w.py"}, "position": {"line": 1, "character": 11},
            "context": {"triggerKind": 1}})  # Invoked, sent before the server reported "ready"
        statuses = [n["params"]["state"] for n in client.notifications if n["method"] == "codestral/status"]
        assert "ready" not in statuses[:1], statuses  # it was asked while loading
        assert answer["result"]["items"], answer
        assert answer["result"]["items"][0]["insertText"].strip(), answer
    finally:
        client.close()
