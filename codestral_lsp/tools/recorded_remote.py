"""A stand-in remote for benchmarks: an OpenAI-compatible server on loopback that streams a fixed answer
after a delay (a remote's latency) and records the completion requests it gets (`bodies`). Not a model: it lets
`bench typing --lsp --cascade` measure what the cascade costs the local suggestion, offline, and the
cascade's tests stall it on purpose (`hold` set: each request waits until `release` is set), and the
guardrails' tests read what left the server (`sent`)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordedRemote:
    def __init__(self, answer: str = "pass", delay_s: float = 0.3):
        self.answer, self.delay_s = answer, delay_s
        self.bodies: list[dict] = []  # each completion request's JSON body, in order
        self.hold, self.release = threading.Event(), threading.Event()
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # /v1/models
                self._send("application/json", json.dumps({"data": [{"id": "recorded", "object": "model"}]}))

            def do_POST(self):  # /v1/completions, streamed
                remote.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                if remote.hold.is_set():
                    remote.release.wait(30)
                time.sleep(remote.delay_s)
                events = [{"choices": [{"index": 0, "text": remote.answer}]},
                          {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}]
                self._send("text/event-stream", "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")

            def _send(self, kind: str, text: str) -> None:
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def sent(self) -> str:
        """Every prompt and suffix received, as one string."""
        return "\n".join(f"{b.get('prompt', '')}\n{b.get('suffix', '')}" for b in self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
