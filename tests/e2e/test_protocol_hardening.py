"""Hostile framing and malformed JSON-RPC on the wire: the server survives each, answers what can be
answered with a JSON-RPC error, logs the rest, and keeps serving the next good message."""

from __future__ import annotations

import json
import sys
import threading

import pytest

from codestral_lsp.tools.lsp_client import LspProcess
from tests.e2e.test_server import MODEL

INLINE = {"textDocument": {"uri": "file:///hard.py"}, "position": {"line": 1, "character": 4},
          "context": {"triggerKind": 1}}


@pytest.fixture(scope="module")
def raw():
    client = LspProcess([sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL])
    client.initialize()
    assert client.wait_status()["state"] == "ready"
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": "file:///hard.py", "languageId": "python", "version": 1, "text": "def f(x):\n    return x\n"}})
    yield client
    client.close()


def within(seconds: float, call):
    """call() in a thread; fails the test (instead of hanging it) when no answer comes in time."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(value=call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "value" in box, f"no answer in {seconds}s"
    return box["value"]


def write(client: LspProcess, data: bytes) -> None:
    client.proc.stdin.write(data)
    client.proc.stdin.flush()


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def still_serving(client: LspProcess) -> None:
    answer = within(30, lambda: client.request("textDocument/inlineCompletion", INLINE))
    assert isinstance(answer["result"]["items"], list)


def answer_to(client: LspProcess, msg_id) -> dict:
    """The next response with this id (None: a parse error's), dispatching whatever comes before it."""
    def read():
        while True:
            msg = client.read()
            if "method" not in msg and msg.get("id", "absent") == msg_id:
                return msg
            client._dispatch(msg)
    return within(30, read)


# -- defects 1 and 2: framing ------------------------------------------------------------------------

def test_huge_content_length_is_skipped(raw):
    write(raw, b"Content-Length: 99999999999999\r\n\r\n{}")
    assert raw.proc.poll() is None
    still_serving(raw)


def test_content_length_the_client_never_fills_is_skipped(raw):
    write(raw, b"Content-Length: 3000000000\r\n\r\n" + b"x" * 1000)
    still_serving(raw)


def test_character_counted_length_still_answers(raw):
    body = json.dumps({"jsonrpc": "2.0", "id": "chars", "method": "codestral/noSuchThing",
                       "params": {"text": "é€ — ünïcödé"}}, ensure_ascii=False).encode()
    write(raw, frame(body, len(body.decode())))
    assert answer_to(raw, "chars")["error"]["code"] == -32601
    still_serving(raw)


def test_short_length_drops_one_message_not_the_stream(raw):
    body = json.dumps({"jsonrpc": "2.0", "method": "codestral/noSuchNotification", "params": {}}).encode()
    write(raw, frame(body, 10))
    still_serving(raw)


def test_long_length_ends_at_the_next_header(raw):
    body = json.dumps({"jsonrpc": "2.0", "method": "codestral/noSuchNotification", "params": {}}).encode()
    write(raw, frame(body, len(body) + 40))
    still_serving(raw)


def test_missing_header_drops_one_message_not_the_stream(raw):
    write(raw, json.dumps({"jsonrpc": "2.0", "method": "codestral/noSuchNotification"}).encode())
    still_serving(raw)


def test_framer_reads_byte_by_byte_and_resynchronises():
    from codestral_lsp.lsp.protocol import Framer

    good = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "m"}).encode()
    stream = frame(b"{oops", 40) + b"junk\r\n" + frame(good) + b"Content-Length: 999999999\r\n\r\n" + frame(good)
    framer, out = Framer(max_bytes=1 << 20), []
    for i in range(len(stream)):
        out += framer.feed(stream[i:i + 1])
    assert [m for m in out if isinstance(m, dict)] == [json.loads(good)] * 2


# -- defect 6: malformed JSON-RPC --------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    {"id": "v0", "method": "shutdown"},
    {"jsonrpc": "1.0", "id": "v1", "method": "shutdown"},
    {"jsonrpc": "2.0", "id": "v2", "method": 42},
])
def test_invalid_request_gets_invalid_request(raw, message):
    write(raw, frame(json.dumps(message).encode()))
    assert answer_to(raw, message["id"])["error"]["code"] == -32600
    still_serving(raw)


def test_bad_json_gets_parse_error(raw):
    write(raw, frame(b'{"jsonrpc": "2.0", "id": 7, "method": '))
    assert answer_to(raw, None)["error"]["code"] == -32700
    still_serving(raw)


def test_malformed_messages_are_logged_not_shown(raw):
    raw.notifications.clear()
    for body in (b"{nope", b'{"method": 1}', b"[]", b'{"jsonrpc": "2.0", "method": "x", "params": 3}'):
        write(raw, frame(body))
    still_serving(raw)
    assert [n for n in raw.notifications if n["method"] == "window/showMessage"] == []


@pytest.mark.parametrize("data", [
    {"uri": "file:///hard.py", "version": 1, "kind": "body"},
    {"uri": "file:///hard.py", "version": 1, "kind": "body", "name": "f", "indent": "", "start": "0", "end": 5},
    {"uri": "file:///hard.py", "version": 1, "kind": "explain", "start": 5, "end": 10 ** 9},
    {"uri": ["file:///hard.py"], "version": 1, "kind": "explain", "start": 0, "end": 1},
    "not an object",
])
def test_crafted_resolve_data_gets_invalid_params(raw, data):
    action = {"title": "Codestral: complete body of f", "kind": "refactor.rewrite", "data": data}
    answer = within(30, lambda: raw.request("codeAction/resolve", action))
    assert answer["error"]["code"] == -32602


# -- defect 3: text that is not UTF-8 ----------------------------------------------------------------

def test_lone_surrogate_in_a_document_still_completes(raw):
    raw.notify("textDocument/didOpen", {"textDocument": {
        "uri": "file:///surrogate.py", "languageId": "python", "version": 1, "text": "s = '\ud800'\ndef g(y):\n    "}})
    answer = within(60, lambda: raw.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": "file:///surrogate.py"}, "position": {"line": 2, "character": 4},
        "context": {"triggerKind": 1}}))
    assert isinstance(answer["result"]["items"], list), answer
    still_serving(raw)  # hard.py borrows snippets from the open surrogate.py


def test_framer_gives_every_message_of_one_read_a_json_null_included():
    # A body of `null` is a message (an invalid one, answered -32600): it must not read as "no message
    # yet", or the frames after it in the same read wait for the next bytes from the client.
    from codestral_lsp.lsp.protocol import Framer

    good = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "m"}).encode()
    assert Framer().feed(frame(b"null") + frame(good)) == [None, json.loads(good)]
