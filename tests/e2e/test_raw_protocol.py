"""Malformed traffic on the wire, from a raw JSON-RPC client: every request gets an answer, and the
server keeps serving. (A typed client cannot send these, which is the point.)"""

from __future__ import annotations

import sys

import pytest

from codestral_lsp.tools.lsp_client import LspProcess
from tests.e2e.test_server import MODEL


@pytest.fixture(scope="module")
def raw():
    client = LspProcess([sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL])
    init = client.initialize()
    assert "inlineCompletionProvider" in init["result"]["capabilities"]
    assert client.wait_status()["state"] == "ready"
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": "file:///raw.py", "languageId": "python", "version": 1, "text": "def f(x):\n    return x\n"}})
    yield client
    client.close()


def test_missing_position_gets_invalid_params(raw):
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw.py"},
                                                           "context": {"triggerKind": 1}})
    assert answer["error"]["code"] == -32602


def test_negative_line_gets_invalid_params(raw):
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw.py"},
                                                           "position": {"line": -1, "character": 0},
                                                           "context": {"triggerKind": 1}})
    assert answer["error"]["code"] == -32602


def test_unknown_method_gets_method_not_found(raw):
    answer = raw.request("codestral/noSuchThing", {})
    assert answer["error"]["code"] == -32601


def test_garbage_body_then_a_good_request(raw):
    raw.send(b"{this is not json")
    raw.send(b"\x00\xff\xfe binary junk")
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw.py"},
                                                           "position": {"line": 1, "character": 4},
                                                           "context": {"triggerKind": 1}})
    assert "result" in answer and isinstance(answer["result"]["items"], list)
    raw.notify("textDocument/didOpen", {"textDocument": {  # and it still completes
        "uri": "file:///raw-after.py", "languageId": "python", "version": 1, "text": "def add(a, b):\n    "}})
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw-after.py"},
                                                           "position": {"line": 1, "character": 4},
                                                           "context": {"triggerKind": 1}})
    (item,) = answer["result"]["items"]
    assert item["insertText"].strip() and item["range"]["start"] == {"line": 1, "character": 4}


def test_position_past_the_end_gets_an_empty_answer(raw):
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw.py"},
                                                           "position": {"line": 999, "character": 0},
                                                           "context": {"triggerKind": 1}})
    assert answer["result"]["items"] == []
