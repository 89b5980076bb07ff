"""A minimal synchronous LSP client over a server process's stdio, for `bench typing --lsp` and tests.

It writes raw JSON-RPC frames, so it can also send what typed clients cannot (missing parameters,
garbage bodies), and it answers the server's own requests (progress tokens, configuration) with null.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


class LspProcess:
    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.next_id = 0
        self.notifications: list[dict] = []

    def send(self, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def read(self) -> dict:
        length = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("the server closed its output")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line in (b"\r\n", b"\n") and length is not None:
                return json.loads(self.proc.stdout.read(length))

    def _dispatch(self, msg: dict) -> None:
        if "method" in msg and "id" in msg:  # a request from the server
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        elif "method" in msg:
            self.notifications.append(msg)

    def request(self, method: str, params, timeout: float = 120.0) -> dict:
        """Send a request and return the whole response message (with "result" or "error")."""
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read()
            if msg.get("id") == self.next_id and "method" not in msg:
                return msg
            self._dispatch(msg)
        raise TimeoutError(f"no answer to {method} in {timeout}s")

    def initialize(self, options: dict | None = None, capabilities: dict | None = None) -> dict:
        result = self.request("initialize", {"processId": None, "rootUri": None, "capabilities": capabilities or {},
                                             "initializationOptions": options or {}})
        self.notify("initialized", {})
        return result

    def wait_status(self, states=("ready", "error", "disabled"), timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for note in self.notifications:
                if note["method"] == "codestral/status" and note["params"]["state"] in states:
                    return note["params"]
            self._dispatch(self.read())
        raise TimeoutError("the server never reported a state in " + ", ".join(states))

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except (OSError, EOFError, TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def merged(base: dict, over: dict) -> dict:
    """base with over's keys, nested groups merged rather than replaced.

    >>> merged({"completion": {"debounceMs": 0}}, {"completion": {"timeoutMs": 9}, "model": {}})
    {'completion': {'debounceMs': 0, 'timeoutMs': 9}, 'model': {}}
    """
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def start_ready_server(model: str | None = None, settings: dict | None = None) -> LspProcess:
    """`codestral-lsp serve` as a subprocess, initialized and ready, for measuring what a user waits for:
    the server's debounce is 0 unless `settings` say otherwise (debounce is a choice, not a cost).
    Raises RuntimeError when the model does not load."""
    command = [sys.executable, "-m", "codestral_lsp", "serve"] + (["--model", model] if model else [])
    server = LspProcess(command)
    try:
        server.initialize(merged({"completion": {"debounceMs": 0}}, settings or {}))
        status = server.wait_status()
        if status["state"] != "ready":
            raise RuntimeError(f"the server did not become ready: {status['message']}")
    except BaseException:
        server.close()
        raise
    return server

