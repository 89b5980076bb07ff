"""The remote engine (codestral_lsp/backends/remote.py) against scripted HTTP servers on loopback: retries and
backoff, stop rules and cancellation closing the stream, deadlines, error messages, wire formats.

The fake server is the standard library's http.server: each request gets the next scripted reply, and
a stream notices that the client went away when a write fails."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codestral_lsp.backends.remote import RemoteBackend as RemoteEngine
from codestral_lsp.backends.remote import RemoteConfig, default_tokenizer
from codestral_lsp.backends.remote_stream import RemoteError, backoff, parse_sse
from codestral_lsp.lsp.scheduler import Scheduler
from codestral_lsp.settings import parse_settings


@dataclass
class Reply:
    status: int = 200
    chunks: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds before each chunk
    shape: str = "openai"  # "openai": choices[0].text; "mistral": choices[0].delta.content
    headers: dict = field(default_factory=dict)
    error: str = "bad request"
    silent: float = 0.0  # after the headers, send nothing for this long


class Fake:
    """Scripted replies, in order (the last one repeats); records requests and disconnects."""

    def __init__(self, *replies: Reply):
        self.replies = list(replies) or [Reply()]
        self.requests: list[dict] = []
        self.sent: list[int] = []  # chunks written per streamed reply
        self.disconnected = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
                reply = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
                if reply.status != 200:
                    self._json(reply.status, {"error": {"message": reply.error}}, reply.headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.flush()
                time.sleep(reply.silent)
                sent = 0
                try:
                    for piece in reply.chunks:
                        time.sleep(reply.delay)
                        choice = {"index": 0, "text": piece} if reply.shape == "openai" else \
                            {"index": 0, "delta": {"content": piece}}
                        self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                        self.wfile.flush()
                        sent += 1
                    done = {"index": 0, "finish_reason": "length"}
                    self.wfile.write(f"data: {json.dumps({'choices': [done]})}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.disconnected.set()
                finally:
                    fake.sent.append(sent)

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


@pytest.fixture
def fake(request):
    servers = []

    def make(*replies):
        servers.append(Fake(*replies))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def engine(tokenizer, url, backend="openai", retries=2, timeout_ms=2000, env=None, reports=None, **model):
    settings, problems = parse_settings({"model": {"backend": backend, "endpoint": url, "retries": retries,
                                                   "requestTimeoutMs": timeout_ms, **model}})
    assert problems == []
    config = RemoteConfig.from_settings(settings.model, env if env is not None else {"MISTRAL_API_KEY": "k-123"})
    config.backoff_s = 0.05
    return RemoteEngine(config, tokenizer, report=reports.append if reports is not None else None)


def run(gen):
    pieces = list(gen)
    return pieces, gen.text, gen.stats


# -- retries and backoff ---------------------------------------------------------------------------

def test_retries_5xx_and_429_with_exponential_backoff_then_succeeds(tokenizer, fake):
    server = fake(Reply(503), Reply(429), Reply(chunks=["a", "b"]))
    eng = engine(tokenizer, server.url, retries=2)
    start = time.monotonic()
    _, text, stats = run(eng.stream("x = ", "\n"))
    elapsed = time.monotonic() - start
    assert text == "ab" and stats["stop_reason"] == "max_tokens"
    assert len(server.posts) == 3
    assert elapsed >= 0.05 + 0.1  # 0.05 s, then 0.1 s
    assert [backoff(0.05, a) for a in range(3)] == [0.05, 0.1, 0.2]
    assert backoff(0.05, 0, retry_after=2.0) == 2.0 and backoff(1.0, 8) == 10.0


def test_gives_up_after_the_configured_retries(tokenizer, fake):
    server = fake(Reply(500, error="boom"))
    reports = []
    eng = engine(tokenizer, server.url, retries=1, reports=reports)
    _, text, stats = run(eng.stream("x = ", ""))
    assert len(server.posts) == 2
    assert stats["stop_reason"] == "error" and text == ""
    assert "500 Internal Server Error" in stats["error"] and "boom" in stats["error"]
    assert reports == [stats["error"]]


def test_4xx_is_not_retried_and_the_server_message_is_kept(tokenizer, fake):
    server = fake(Reply(400, error="suffix is not currently supported"))
    eng = engine(tokenizer, server.url, retries=3)
    _, _, stats = run(eng.stream("x = ", "y"))
    assert len(server.posts) == 1
    assert "400 Bad Request" in stats["error"] and "suffix is not currently supported" in stats["error"]
    assert 'model.fimPrompt to "tokens"' in stats["error"]


def test_401_names_the_key_variable(tokenizer, fake):
    server = fake(Reply(401, error="Unauthorized"))
    eng = engine(tokenizer, server.url, backend="mistral", retries=3)
    _, _, stats = run(eng.stream("x = ", ""))
    assert len(server.posts) == 1
    assert stats["error"] == "mistral backend: 401 Unauthorized — is MISTRAL_API_KEY set to a valid key?"
    assert "k-123" not in stats["error"]


def test_connection_refused_is_retried_then_reported(tokenizer):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    eng = engine(tokenizer, f"http://127.0.0.1:{port}", retries=2)
    gen = eng.stream("x = ", "", deadline=time.monotonic() + 5)
    _, _, stats = run(gen)
    assert gen.requests == 3  # every retry was made, and the connection error (not the deadline) ended it
    assert stats["stop_reason"] == "error" and "cannot connect to http://127.0.0.1" in stats["error"]
    assert "no answer" not in stats["error"]
    with pytest.raises(RemoteError, match="is the server running"):
        eng.check()


def test_no_retry_that_would_end_after_the_deadline(tokenizer, fake):
    server = fake(Reply(503))
    eng = engine(tokenizer, server.url, retries=5)
    eng.config.backoff_s = 1.0
    gen = eng.stream("x = ", "", deadline=time.monotonic() + 0.5)
    _, _, stats = run(gen)
    assert len(server.posts) == 1 and gen.requests == 1
    # The 503 ended it at once: had it waited for the retry, the deadline would have ended it first,
    # reported as "no answer ... within".
    assert stats["stop_reason"] == "error" and "503" in stats["error"] and "no answer" not in stats["error"]


# -- stop rules, cancellation, deadlines: the stream is closed --------------------------------------

def test_stop_callback_cuts_and_closes_the_stream(tokenizer, fake):
    server = fake(Reply(chunks=["ab"] * 200, delay=0.01))
    eng = engine(tokenizer, server.url)
    pieces, text, stats = run(eng.stream("x = ", "", stop_fn=lambda t: 5 if len(t) >= 6 else None))
    assert text == "ababa" and pieces == ["ababa"]  # held back until the end, like the local engine
    assert stats["stop_reason"] == "stop" and stats["generated_tokens"] == 3
    assert server.disconnected.wait(3), "the server never saw the client go away"
    assert server.sent[0] < 50


def test_stop_strings_are_cut_and_never_streamed_in_part(tokenizer, fake):
    server = fake(Reply(chunks=["Ret", "urns x.", '"', '"', '"\n', "more"], shape="mistral"))
    eng = engine(tokenizer, server.url, backend="mistral")
    pieces, text, stats = run(eng.stream('"""', '"""\n', stop=['"""']))
    assert text == "Returns x." and "".join(pieces) == "Returns x."
    assert all('"' not in p for p in pieces)
    assert stats["stop_reason"] == "stop"
    assert server.requests[0]["body"]["stop"] == ['"""']


def test_cancellation_closes_the_stream_between_pieces(tokenizer, fake):
    server = fake(Reply(chunks=["x"] * 100, delay=0.05))
    eng = engine(tokenizer, server.url)
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    _, text, stats = run(eng.stream("x = ", "", cancelled=flag.is_set))
    assert stats["stop_reason"] == "cancelled"
    assert flag.is_set() and len(text) < 100  # ended by the cancellation, before the answer's end
    assert server.disconnected.wait(3)
    assert server.sent[0] < 20


def test_cancellation_while_the_server_is_silent_returns_at_once(tokenizer, fake):
    server = fake(Reply(chunks=["late"], silent=3.0))
    eng = engine(tokenizer, server.url)
    flag = threading.Event()
    threading.Timer(0.15, flag.set).start()
    _, text, stats = run(eng.stream("x = ", "", cancelled=flag.is_set))
    assert stats["stop_reason"] == "cancelled" and text == ""  # returned before the server's "late"
    assert flag.is_set() and "error" not in stats


def test_a_server_that_never_answers_times_out_at_the_deadline(tokenizer):
    reports = []
    with socket.socket() as listener:  # accepts connections (the kernel's backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        eng = engine(tokenizer, f"http://127.0.0.1:{listener.getsockname()[1]}", reports=reports)
        start = time.monotonic()
        _, text, stats = run(eng.stream("x = ", "", deadline=time.monotonic() + 0.4))
        elapsed = time.monotonic() - start
    assert elapsed >= 0.35  # it did not give up before the deadline (a busy machine only makes it later)
    assert text == "" and stats["stop_reason"] == "error"
    assert stats["error"].startswith("openai backend: no answer from http://127.0.0.1:")
    assert stats["error"].endswith("(completion.timeoutMs)")  # the deadline's reason
    assert reports == [stats["error"]]


def test_request_timeout_without_a_deadline(tokenizer, fake):
    server = fake(Reply(chunks=["late"], silent=2.0))
    eng = engine(tokenizer, server.url, timeout_ms=300)
    _, text, stats = run(eng.stream("x = ", ""))
    assert stats["stop_reason"] == "error" and text == ""  # the request timeout ended it before the 2 s silence
    assert "sent nothing for 300 ms" in stats["error"]


async def test_a_superseded_request_closes_its_http_stream(tokenizer, fake):
    """The scheduler's supersession (a newer keystroke in the same document) reaches the socket."""
    server = fake(Reply(chunks=["x"] * 200, delay=0.02), Reply(chunks=["second"]))
    eng = engine(tokenizer, server.url)
    sched = Scheduler()
    first = asyncio.create_task(sched.run("doc", lambda cancelled: eng.complete("a", "", cancelled=cancelled)))
    await asyncio.sleep(0.3)
    second = await sched.run("doc", lambda cancelled: eng.complete("b", "", cancelled=cancelled))
    first = await first
    assert first.stats["stop_reason"] == "cancelled" and second.text == "second"
    assert await asyncio.to_thread(server.disconnected.wait, 3)
    assert server.sent[0] < 100
    sched.shutdown()


# -- health reports, configuration, wire format ------------------------------------------------------

def test_reports_only_transitions(tokenizer, fake):
    server = fake(Reply(500), Reply(500), Reply(chunks=["ok"]), Reply(chunks=["ok"]))
    reports = []
    eng = engine(tokenizer, server.url, retries=0, reports=reports)
    for _ in range(4):
        run(eng.stream("x", ""))
    assert len(reports) == 2 and "500" in reports[0] and reports[1] is None


def test_missing_key_for_mistral_fails_at_once_without_a_request(tokenizer, fake):
    server = fake(Reply(chunks=["never"]))
    eng = engine(tokenizer, server.url, backend="mistral", env={})
    with pytest.raises(RemoteError, match="MISTRAL_API_KEY is not set"):
        eng.check()
    _, _, stats = run(eng.stream("x", ""))
    assert "the environment variable MISTRAL_API_KEY is not set" in stats["error"]
    assert server.requests == []


def test_openai_key_is_optional_unless_a_variable_is_named(tokenizer, fake):
    server = fake(Reply(chunks=["ok"]))
    assert engine(tokenizer, server.url, env={}).config.error is None
    assert "MY_KEY is not set" in engine(tokenizer, server.url, env={}, apiKeyEnv="MY_KEY").config.error
    eng = engine(tokenizer, server.url + "/v1/", env={"MY_KEY": "s3cret"}, apiKeyEnv="MY_KEY")
    assert eng.check() == "openai backend: fake-model at " + server.url  # discovered; /v1 dropped
    run(eng.stream("x", ""))
    post = server.requests[-1]
    assert post["path"] == "/v1/completions" and post["headers"]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(eng.config)


def test_the_model_name_is_asked_for_when_the_server_was_down_at_connect(tokenizer, fake):
    server = fake(Reply(chunks=["ok"]))
    eng = engine(tokenizer, server.url, env={})  # openai without remoteModel; check() never ran
    run(eng.stream("x", ""))
    run(eng.stream("y", ""))
    assert [r["method"] for r in server.requests] == ["GET", "POST", "POST"]  # asked once
    assert server.requests[1]["body"]["model"] == server.requests[2]["body"]["model"] == "fake-model"


def test_request_bodies(tokenizer, fake):
    server = fake(Reply(chunks=["ok"], shape="mistral"))
    run(engine(tokenizer, server.url, backend="mistral").stream("def f():\n    ", "\n", max_tokens=7,
                                                               temperature=0.2, seed=3))
    post = server.requests[-1]
    assert post["path"] == "/v1/fim/completions"
    assert post["body"] == {"model": "codestral-latest", "prompt": "def f():\n    ", "suffix": "\n", "max_tokens": 7,
                            "temperature": 0.2, "stream": True, "random_seed": 3}
    assert post["headers"]["Authorization"] == "Bearer k-123"
    eng = engine(tokenizer, server.url, fimPrompt="tokens", remoteModel="codestral")
    run(eng.stream("def f():\n    ", "\n", max_tokens=5))
    body = server.requests[-1]["body"]
    assert body["prompt"] == tokenizer.encode_fim("def f():\n    ", "\n") and "suffix" not in body
    assert body["model"] == "codestral"


def test_code_action_calls_work(tokenizer, fake):
    """features/code_actions.py calls engine.complete(prefix, suffix, max_tokens=, stop=|stop_fn=, session=,
    cancelled=) and reads .text; a closed document drops its session."""
    server = fake(Reply(chunks=["return x * x", "\nmore"]))
    eng = engine(tokenizer, server.url)
    out = eng.complete("def sq(x):\n    ", "\n", max_tokens=96, stop_fn=lambda t: t.find("\n") if "\n" in t else None,
                       session="file:///a.py", cancelled=lambda: False)
    assert out.text == "return x * x"
    eng.forget("file:///a.py")


def test_sse_parsing_accepts_both_shapes_and_reports_error_events():
    lines = [": ping", "", 'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}',
             'data: {"choices": [{"delta": {"content": "a"}}]}', 'data: {"choices": [{"text": "b"}]}',
             'data: {"choices": [{"text": "", "finish_reason": "stop"}], "usage": {"prompt_tokens": 9}}',
             "data: [DONE]", 'data: {"choices": [{"text": "after done"}]}']
    assert list(parse_sse(iter(lines))) == [("text", "a"), ("text", "b"), ("done", ("stop", {"prompt_tokens": 9}))]
    with pytest.raises(RemoteError, match="while streaming: overloaded"):
        list(parse_sse(iter(['data: {"error": {"message": "overloaded"}}'])))
    with pytest.raises(RemoteError, match="not JSON"):
        list(parse_sse(iter(["data: {oops"])))


def test_settings_defaults():
    s, problems = parse_settings({})
    m = s.model
    assert (m.backend, m.endpoint, m.api_key_env, m.remote_model, m.fim_prompt, m.request_timeout_ms, m.retries) == \
        ("local", None, None, None, "suffix", 10000, 2)
    config = RemoteConfig.from_settings(parse_settings({"model": {"backend": "mistral"}})[0].model, {})
    assert (config.endpoint, config.key_env, config.model) == ("https://api.mistral.ai", "MISTRAL_API_KEY",
                                                               "codestral-latest")
    config = RemoteConfig.from_settings(parse_settings({"model": {"backend": "openai"}})[0].model, {})
    assert (config.endpoint, config.key_env, config.model, config.error) == ("http://127.0.0.1:8000", "OPENAI_API_KEY",
                                                                             None, None)
    config = RemoteConfig.from_settings(parse_settings({"model": {"backend": "openai", "endpoint": "gpu:8000"}})[0]
                                        .model, {})
    assert config.error == "openai backend: model.endpoint must be an http:// or https:// URL, got 'gpu:8000'"
    _, problems = parse_settings({"model": {"backend": "ollama"}})
    assert problems == ["model.backend: must be one of local, mistral, openai, got 'ollama'; using 'local'"]
