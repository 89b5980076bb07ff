"""`codestral-lsp bench fuzz`: drive a real server with the traffic of an editor gone wrong.

A seeded generator mixes well-formed LSP traffic (documents opened, edited and closed; completions,
code actions and their resolution at any position) with what a broken client sends: parameters of
the wrong type or out of range, unknown methods, JSON-RPC envelopes that are not JSON-RPC 2.0, bodies
that are not JSON, and frames whose Content-Length is wrong (counted in characters, or absurd).

It reports, as one JSON object:

    {"messages": N, "requests": R, "answered": A, "unanswered": U, "errors": {code: count},
     "popups": P, "crashed": bool, "alive_after": bool, "seconds": S, "seed": SEED, "kinds": {KIND: count}}

`unanswered` counts requests sent in well-formed frames with an id that got no response by the end
(a request swallowed by a frame declared too long on purpose is not sent with an id). `popups`
counts `window/showMessage` notifications: malformed traffic should be logged, not shown.
`alive_after` is whether the server still answers a plain completion after all of it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from .lsp_client import LspProcess

SNIPPETS = [
    "def add(a, b):\n    return a + b\n\n",
    "for i in range(10):\n    print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n",
    "func main() {\n\tfmt.Println(\"hi\")\n}\n",
    "const f = (x) => {\n  return x * 2;\n};\n",
    "fn main() {\n    let v = vec![1, 2];\n}\n",
    "def stub():\n    pass\n",
    "# ünïcödé ✓ 😀 \U0001f680\n",
    "x = '\ud800'\n",  # a lone surrogate: legal in LSP's JSON, not in UTF-8
    "\t\t\r\n\x0c\u2028 \x00",
]
LANGUAGES = [("python", ".py"), ("go", ".go"), ("javascript", ".js"), ("rust", ".rs"), ("plaintext", ".txt")]


class ThreadedClient(LspProcess):
    """An LspProcess whose output is read on a thread, so the fuzzer can write without waiting."""

    def __init__(self, command: list[str]):
        super().__init__(command)
        self.responses: dict = {}
        self.lock = threading.Condition()  # notified when a response arrives
        self.write_lock = threading.Lock()  # the reader thread answers the server's requests too
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        while True:
            try:
                msg = LspProcess.read(self)
            except (EOFError, OSError, ValueError):
                return
            if "method" in msg:
                with self.lock:
                    self._dispatch(msg)
            elif isinstance(msg, dict):
                with self.lock:
                    self.responses[msg.get("id")] = msg
                    self.lock.notify_all()

    def send(self, payload: dict | bytes) -> None:
        with self.write_lock:
            super().send(payload)

    def send_raw(self, data: bytes) -> None:
        with self.write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def wait_for(self, ids: set, timeout: float) -> set:
        """The ids of `ids` still unanswered after waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while (left := ids - self.responses.keys()) and self.proc.poll() is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.lock.wait(min(remaining, 0.5))  # wakes on each response; polls for an exit
            return left

    def request(self, method: str, params, timeout: float = 120.0) -> dict:
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if self.wait_for({rid}, timeout):
            raise TimeoutError(f"no answer to {method} in {timeout}s")
        return self.responses[rid]

    def wait_status(self, states=("ready", "error", "disabled"), timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for note in self.notifications:
                    if note["method"] == "codestral/status" and note["params"]["state"] in states:
                        return note["params"]
            if self.proc.poll() is not None:
                raise EOFError("the server exited")
            time.sleep(0.05)
        raise TimeoutError("the server never reported a state in " + ", ".join(states))


class Traffic:
    """The seeded message generator. Each call to `next()` returns (kind, payload) where payload is a
    dict (sent as a well-formed frame), or bytes (sent as they are)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.docs: dict[str, list] = {}  # uri -> [version, text]
        self.n = 0

    def position(self, uri: str | None) -> dict:
        r = self.rng
        if uri in self.docs and r.random() < 0.8:
            lines = self.docs[uri][1].split("\n")
            line = r.randrange(len(lines))
            return {"line": line, "character": r.randrange(len(lines[line]) + 1)}
        return {"line": r.choice([0, 1, 5, 10**6, -1, 2**31]), "character": r.choice([0, 3, 10**6, -5])}

    def uri(self) -> str:
        if self.docs and self.rng.random() < 0.85:
            return self.rng.choice(sorted(self.docs))
        ext = self.rng.choice(LANGUAGES)[1]
        return f"file:///fuzz/doc{self.rng.randrange(6)}{ext}"

    def text(self) -> str:
        return "".join(self.rng.choice(SNIPPETS) for _ in range(self.rng.randrange(1, 6)))

    def next(self) -> tuple[str, dict | bytes]:
        self.n += 1
        kinds = [(self.open, 8), (self.change, 20), (self.complete, 22), (self.code_action, 8), (self.resolve, 4),
                 (self.close, 2), (self.bad_params, 12), (self.unknown, 4), (self.bad_envelope, 8),
                 (self.bad_json, 4), (self.bad_frame, 4), (self.settings, 2), (self.cancel, 2)]
        make = self.rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        return make.__name__, make()

    def open(self) -> dict:
        language, ext = self.rng.choice(LANGUAGES)
        uri = f"file:///fuzz/doc{self.rng.randrange(6)}{ext}"
        text = self.text()
        self.docs[uri] = [1, text]
        return note("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1,
                                                              "text": text}})

    def change(self) -> dict:
        uri = self.uri()
        if uri not in self.docs:
            return note("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                   "contentChanges": [{"text": "x"}]})
        doc = self.docs[uri]
        doc[0] += 1
        if self.rng.random() < 0.1:  # a whole-text change
            doc[1] = self.text()
            return note("textDocument/didChange", {"textDocument": {"uri": uri, "version": doc[0]},
                                                   "contentChanges": [{"text": doc[1]}]})
        if self.rng.random() < 0.1:  # a change the server must refuse without losing the document
            bad = self.rng.choice([None, 7, ["a"], {"x": 1}])
            return note("textDocument/didChange", {"textDocument": {"uri": uri, "version": doc[0]},
                                                   "contentChanges": [{"range": rng(self.position(None)), "text": bad}]})
        at = self.position(uri)
        insert = self.rng.choice(["a", "\n", "    ", "(", ")", "é", "😀", "\t", "def f():\n"])
        lines = doc[1].split("\n")
        offset = sum(len(line) + 1 for line in lines[:at["line"]]) + at["character"]
        doc[1] = doc[1][:offset] + insert + doc[1][offset:]
        # positions are UTF-16: only ASCII-free lines would differ; the server checks what it gets
        return note("textDocument/didChange", {"textDocument": {"uri": uri, "version": doc[0]},
                                               "contentChanges": [{"range": rng(at), "text": insert}]})

    def complete(self) -> dict:
        uri = self.uri()
        if self.rng.random() < 0.7:
            return req("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": self.position(uri),
                                                         "context": {"triggerKind": self.rng.choice([1, 2])}})
        return req("textDocument/completion", {"textDocument": {"uri": uri}, "position": self.position(uri)})

    def code_action(self) -> dict:
        uri = self.uri()
        a, b = self.position(uri), self.position(uri)
        return req("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": {"start": a, "end": b},
                                               "context": {"diagnostics": []}})

    def resolve(self) -> dict:
        data = self.rng.choice([None, {}, {"uri": self.uri()}, {"uri": 5, "kind": "body", "start": -1, "end": 10**9},
                                {"uri": self.uri(), "kind": "nonsense", "start": 0, "end": 0, "version": "x"}, [1, 2]])
        return req("codeAction/resolve", {"title": "Codestral: fuzz", "data": data})

    def close(self) -> dict:
        uri = self.uri()
        self.docs.pop(uri, None)
        return note("textDocument/didClose", {"textDocument": {"uri": uri}})

    def bad_params(self) -> dict:
        method = self.rng.choice(["textDocument/inlineCompletion", "textDocument/completion",
                                  "textDocument/codeAction", "textDocument/didChange", "textDocument/didOpen"])
        params = self.rng.choice([None, {}, [], 5, "x", {"textDocument": None},
                                  {"textDocument": {"uri": self.uri()}, "position": {"line": "a", "character": None}},
                                  {"textDocument": {"uri": 7}, "position": {"line": -1, "character": -1}}])
        return req(method, params) if "did" not in method else note(method, params)

    def unknown(self) -> dict:
        return req(self.rng.choice(["codestral/nothing", "textDocument/hover", "$/weird", "x"]), {})

    def bad_envelope(self) -> dict:
        rid = 10_000_000 + self.n  # ids the server must still answer, with an error
        return self.rng.choice([
            {"id": rid, "method": "textDocument/completion", "params": {}},                    # no jsonrpc
            {"jsonrpc": "1.0", "id": rid, "method": "textDocument/completion", "params": {}},
            {"jsonrpc": "2.0", "id": rid, "method": 42, "params": {}},
            {"jsonrpc": "2.0", "id": rid, "method": None},
            {"jsonrpc": "2.0", "id": rid},
        ])

    def bad_json(self) -> bytes:
        body = self.rng.choice([b"{", b"not json", b"[1, 2", b'{"jsonrpc": "2.0", "id": 1,,}', b"\xff\xfe", b"null"])
        return frame(body)

    def bad_frame(self) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
            "textDocument": {"uri": "file:///fuzz/frame.py", "languageId": "python", "version": 1,
                             "text": "é😀" * self.rng.randrange(1, 20)}}}, ensure_ascii=False)
        choice = self.rng.randrange(4)
        if choice == 0:  # characters counted instead of UTF-8 bytes: the frame is short
            return b"Content-Length: %d\r\n\r\n" % len(body) + body.encode()
        if choice == 1:  # an absurd length, then the next header
            return b"Content-Length: 99999999999999\r\n\r\n"
        if choice == 2:  # no length at all
            return b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body.encode()
        return b"garbage line\r\n"

    def settings(self) -> dict:
        return note("workspace/didChangeConfiguration", {"settings": {"codestral": {
            "completion": {"maxTokens": self.rng.choice([8, 16]), "debounceMs": 0}}}})

    def cancel(self) -> dict:
        return note("$/cancelRequest", {"id": self.rng.randrange(1, self.n + 1)})


def note(method: str, params) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def req(method: str, params) -> dict:
    return {"jsonrpc": "2.0", "id": None, "method": method, "params": params}  # the id is given when sent


def rng(at: dict) -> dict:
    return {"start": at, "end": at}


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def fuzz_lsp(command: list[str], messages: int = 1000, seed: int = 0, drain_s: float = 60.0,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Send `messages` fuzzed messages to a server started with `command`; see the module docstring."""
    client = ThreadedClient(command)
    started = time.monotonic()
    sent: set = set()
    try:
        client.initialize({"completion": {"debounceMs": 0, "maxTokens": 16}})
        client.wait_status()
        traffic, kinds = Traffic(seed), Counter()
        for n in range(1, messages + 1):
            kind, payload = traffic.next()
            kinds[kind] += 1
            if isinstance(payload, bytes):
                client.send_raw(payload)
            else:
                if "id" in payload and payload["id"] is None:
                    client.next_id += 1
                    payload["id"] = client.next_id
                if "id" in payload:
                    sent.add(payload["id"])
                client.send(payload)
            if client.proc.poll() is not None:
                break
            if progress and n % 100 == 0:
                progress(n, messages)
        left = client.wait_for(sent, drain_s)
        crashed = client.proc.poll() is not None
        alive = False
        if not crashed:
            client.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///fuzz/after.py", "languageId":
                                                                    "python", "version": 1, "text": "def f(x):\n    "}})
            answer = client.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": "file:///fuzz/after.py"}, "position": {"line": 1, "character": 4},
                "context": {"triggerKind": 1}}, timeout=drain_s)
            alive = "result" in answer
        with client.lock:
            answers = [client.responses[i] for i in sent if i in client.responses]
            popups = sum(1 for m in client.notifications if m["method"] == "window/showMessage")
        errors: dict[str, int] = {}
        for a in answers:
            if "error" in a:
                code = str(a["error"].get("code"))
                errors[code] = errors.get(code, 0) + 1
        return {"messages": messages, "requests": len(sent), "answered": len(answers), "unanswered": len(left),
                "errors": errors, "popups": popups, "crashed": crashed, "alive_after": alive,
                "seconds": round(time.monotonic() - started, 1), "seed": seed, "kinds": dict(kinds)}
    finally:
        client.close()


def server_command(model: str | None) -> list[str]:
    import sys

    return [sys.executable, "-m", "codestral_lsp", "serve"] + (["--model", model] if model else [])

