"""Malformed traffic on the wire, from a raw JSON-RPC client: every request gets an answer, and the
server keeps serving. (A typed client cannot send these, which is the point.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.e2e.test_server import MODEL


class RawClient:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0

    def send(self, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def read(self) -> dict:
        length = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("server closed its output")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line in (b"\r\n", b"\n") and length is not None:
                return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params, timeout: float = 60.0) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read()
            if msg.get("id") == self.next_id and "method" not in msg:
                return msg
        raise TimeoutError(method)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read()
            if msg.get("method") == "codestral/status" and msg["params"]["state"] in ("ready", "error"):
                assert msg["params"]["state"] == "ready", msg
                return
            if msg.get("method") == "window/workDoneProgress/create":
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        raise TimeoutError("model never became ready")


@pytest.fixture(scope="module")
def raw():
    client = RawClient()
    init = client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert "inlineCompletionProvider" in init["result"]["capabilities"]
    client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    client.wait_ready()
    client.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": "file:///raw.py", "languageId": "python", "version": 1, "text": "def f(x):\n    return x\n"}}})
    yield client
    client.proc.kill()
    client.proc.wait()


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


def test_position_past_the_end_gets_an_empty_answer(raw):
    answer = raw.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///raw.py"},
                                                           "position": {"line": 999, "character": 0},
                                                           "context": {"triggerKind": 1}})
    assert answer["result"]["items"] == []
