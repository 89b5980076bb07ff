"""didChange that does not fit: the server's copy keeps its text and version, and says why."""

from __future__ import annotations

import json

import pytest
from lsprotocol.types import Position, Range

from codestral_lsp.lsp.documents import PositionError, TextDocument
from codestral_lsp.lsp.protocol import dispatch
from codestral_lsp.lsp.server import create_server

URI = "file:///a.py"
TEXT = "def f(x):\n    return x\n"


class Wire:
    def __init__(self):
        self.sent: list[dict] = []

    def write(self, data: bytes) -> None:
        self.sent.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))

    def close(self) -> None:
        pass


@pytest.fixture
def server():
    server = create_server()
    server.protocol.set_writer(Wire())
    dispatch(server.protocol, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}})
    dispatch(server.protocol, {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": URI, "languageId": "python", "version": 1, "text": TEXT}}})
    return server


def change(server, *changes, version: int = 2) -> None:
    dispatch(server.protocol, {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": URI, "version": version}, "contentChanges": list(changes)}})


def edit(line: int, start: int, end: int, text: str) -> dict:
    return {"range": {"start": {"line": line, "character": start}, "end": {"line": line, "character": end}},
            "text": text}


@pytest.mark.parametrize("text", [None, 5, ["x"], {"a": 1}])
def test_change_text_that_is_not_a_string_leaves_the_document(server, text):
    change(server, {"text": text})
    change(server, edit(0, 4, 5, "g"), {"range": edit(0, 0, 0, "")["range"], "text": text}, version=3)
    doc = server.documents.get(URI)
    assert (doc.text, doc.version) == (TEXT, 1)
    assert any(m.get("method") == "window/logMessage" for m in server.protocol.writer.sent)


def test_a_change_out_of_bounds_applies_none_of_them(server):
    change(server, edit(0, 4, 5, "g"), edit(99, 0, 0, "oops"))
    doc = server.documents.get(URI)
    assert (doc.text, doc.version) == (TEXT, 1)
    assert "stays at version 1" in json.dumps(server.protocol.writer.sent)
    change(server, edit(0, 4, 5, "g"), edit(1, 11, 12, "y"), version=3)
    assert (doc.text, doc.version) == ("def g(x):\n    return y\n", 3)


def test_apply_changes_is_all_or_nothing():
    doc = TextDocument(URI, "python", 1, TEXT)
    with pytest.raises(PositionError):
        doc.apply_changes([("g", Range(Position(0, 4), Position(0, 5))), ("z", Range(Position(7, 0), Position(7, 0)))], 2)
    assert (doc.text, doc.version, doc.line_starts) == (TEXT, 1, [0, 10, 23])
