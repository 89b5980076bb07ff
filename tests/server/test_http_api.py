"""`codestral-lsp serve-http` over real loopback HTTP: a uvicorn server in a thread on a tiny random model,
and the standard library's http.client as the client."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from codestral_lsp.http.api import build_server  # noqa: E402
from engine import Engine  # noqa: E402
from engine.checkpoints.loading import is_instruct  # noqa: E402
from engine.testing import make_checkpoint  # noqa: E402

KEY = "test-key"
MODEL = "tiny-fim"
MAX_QUEUE = 8


class Server:
    def __init__(self, port: int, api):
        self.port, self.api = port, api

    def connect(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, raw: bytes | None = None, key: str | None = KEY,
                headers: dict | None = None) -> tuple[int, dict | str]:
        """One request on its own connection: (status, parsed JSON, or the text of an event stream)."""
        conn = self.connect()
        sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
                **(headers or {})}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        payload = resp.read().decode()
        conn.close()
        is_json = resp.getheader("content-type", "").startswith("application/json")
        return resp.status, json.loads(payload) if is_json else payload

    def post(self, path: str, body: dict, **kwargs) -> tuple[int, dict | str]:
        return self.request("POST", path, body, **kwargs)


def events(stream: str) -> list:
    """The data of each server-sent event: parsed JSON, or the string "[DONE]"."""
    data = [line[len("data: "):] for line in stream.split("\n") if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def start(folder, api_key: str | None = KEY, **options):
    """A server on a free loopback port, in a thread; returns (Server, uvicorn server, thread)."""
    engine = Engine.load(folder, device="cpu")
    uv, api = build_server(engine, "127.0.0.1", 0, api_key=api_key, log_config=None, access_log=False,
                           log_level="warning", **options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return Server(sock.getsockname()[1], api), uv, thread


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served, uv, thread = start(make_checkpoint(tmp_path_factory.mktemp("http") / MODEL), max_queue=MAX_QUEUE)
    yield served
    uv.should_exit = True
    thread.join(timeout=20)


FIM = {"model": MODEL, "prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 8}


def test_fim_completions_and_models_answer_and_streams_equal_whole_answers(server):
    status, body = server.post("/v1/fim/completions", FIM)
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    text = choice["message"]["content"]
    assert choice["message"]["role"] == "assistant" and text and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    status, stream = server.post("/v1/fim/completions", {**FIM, "stream": True})
    chunks = events(stream)
    assert status == 200 and chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == text  # greedy: same text
    assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"] and chunks[-2]["usage"] == usage

    # OpenAI's completions: with a suffix it is the same fill-in-the-middle request.
    legacy = {"model": MODEL, "prompt": FIM["prompt"], "suffix": FIM["suffix"], "max_tokens": 8}
    status, body = server.post("/v1/completions", legacy)
    assert status == 200 and body["object"] == "text_completion"
    assert body["choices"][0]["text"] == text and body["choices"][0]["logprobs"] is None
    plain = {"model": MODEL, "prompt": "import os\n", "max_tokens": 6, "stop": ["\n\n\n"]}
    status, body = server.post("/v1/completions", plain)
    assert status == 200 and body["choices"][0]["text"]
    status, stream = server.post("/v1/completions", {**plain, "stream": True})
    chunks = events(stream)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == body["choices"][0]["text"]

    status, body = server.request("GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [(MODEL, "model", "codestral-lsp")]
    assert body["data"][0]["capabilities"] == {"completion_fim": True, "completion_chat": False}


@pytest.mark.parametrize("case, status, code", [
    ({"raw": b'{"prompt": "x", '}, 400, "invalid_json"),
    ({"raw": b"[1, 2]"}, 400, "invalid_json"),
    ({"raw": b"\xff\xfe"}, 400, "invalid_json"),
    ({"raw": b'{"prompt": "' + b"x" * (2 << 20) + b'"}'}, 413, "request_too_large"),
    ({"body": {**FIM, "max_tokens": "ten"}}, 400, "invalid_type"),
    ({"body": {**FIM, "max_tokens": True}}, 400, "invalid_type"),
    ({"body": {**FIM, "max_tokens": 0}}, 400, "invalid_value"),
    ({"body": {**FIM, "temperature": 9}}, 400, "invalid_value"),
    ({"body": {**FIM, "stop": [1]}}, 400, "invalid_type"),
    ({"body": {"model": MODEL, "suffix": "x"}}, 400, "missing"),
    ({"body": {"model": MODEL, "prompt": "x " * 3000}, "path": "/v1/completions"}, 400, "context_length_exceeded"),
    ({"body": {**FIM, "model": "codestral-latest"}}, 404, "model_not_found"),
    ({"body": FIM, "key": None}, 401, "invalid_api_key"),
    ({"body": FIM, "key": "wrong"}, 401, "invalid_api_key"),
    ({"body": FIM, "headers": {"Host": "attacker.example:80"}}, 403, "forbidden_host"),
    ({"body": FIM, "path": "/v1/nothing"}, 404, "not_found"),
    ({"body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "path": "/v1/chat/completions"},
     400, "chat_not_supported"),
    ({"body": {"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]},
      "path": "/v1/chat/completions"}, 400, "invalid_conversation"),
])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(server, case, status, code):
    path = case.get("path", "/v1/fim/completions")
    got, body = server.request("POST", path, case.get("body"), raw=case.get("raw"), key=case.get("key", KEY),
                               headers=case.get("headers"))
    assert got == status, body
    assert body["error"]["code"] == code and body["error"]["message"] and body["error"]["type"]
    ok, answer = server.post("/v1/fim/completions", {**FIM, "max_tokens": 2})
    assert ok == 200, answer


def test_chat_uses_mistral_v3_template_and_only_for_instruct_models(server, tmp_path):
    tok = server.api.engine.tokenizer
    turns = [("system", "Be brief."), ("user", "hi there"), ("assistant", "Hello!"), ("user", "def f():")]
    ids = tok.encode_chat(turns)
    inst, inst_end = tok.inst_id, tok.sp.piece_to_id("[/INST]")
    assert ids == [tok.bos_id, inst, *tok.encode("hi there"), inst_end, *tok.encode("Hello!"), tok.eos_id,
                   inst, *tok.encode("Be brief.\n\ndef f():"), inst_end]
    try:
        from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError:
        pass
    else:  # the independent oracle
        kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
        request = ChatCompletionRequest(messages=[kinds[role](content=text) for role, text in turns])
        assert ids == MistralTokenizer.v3().encode_chat_completion(request).tokens

    (tmp_path / "flagged").mkdir()
    (tmp_path / "flagged" / "params.json").write_text('{"dim": 64, "instruct": true}')
    (tmp_path / "Mistral-7B-Instruct-v0.3").mkdir()
    assert is_instruct(tmp_path / "flagged") and is_instruct(tmp_path / "Mistral-7B-Instruct-v0.3")
    assert not is_instruct(tmp_path / MODEL) and not is_instruct(None)

    server.api.instruct = True  # as if the folder said so: the tiny model's answers are noise either way
    try:
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}
        status, body = server.post("/v1/chat/completions", chat)
        assert status == 200 and body["object"] == "chat.completion", body
        assert body["usage"]["prompt_tokens"] == len(tok.encode_chat([("user", "Say hi")]))
        status, stream = server.post("/v1/chat/completions", {**chat, "stream": True})
        chunks = events(stream)
        streamed = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1])
        assert streamed == body["choices"][0]["message"]["content"]
    finally:
        server.api.instruct = False


def test_a_client_that_disconnects_cancels_its_generation(server):
    worker = server.api.worker
    before = worker.counts["cancelled"]
    conn = server.connect()
    body = {**FIM, "max_tokens": 1000, "stream": True}  # about half a minute of decoding on these CPUs
    conn.request("POST", "/v1/fim/completions", json.dumps(body), {"Authorization": f"Bearer {KEY}"})
    resp = conn.getresponse()
    assert resp.status == 200
    seen = 0
    while seen < 3:  # the role chunk and two pieces of text: generation is under way
        seen += resp.readline().startswith(b"data: ")
    started = time.monotonic()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    while worker.counts["cancelled"] == before:
        assert time.monotonic() - started < 15, f"generation was not cancelled: {dict(worker.counts)}"
        time.sleep(0.02)
    print(f"\ncancelled after {worker.last_stats['generated_tokens']} of 1000 tokens, "
          f"{(time.monotonic() - started) * 1000:.0f} ms after the disconnect")
    assert 2 <= worker.last_stats["generated_tokens"] < 1000

    # Without streaming the server notices the closed connection while the answer is being made.
    conn, started = server.connect(), time.monotonic()
    conn.request("POST", "/v1/fim/completions", json.dumps({**body, "stream": False}),
                 {"Authorization": f"Bearer {KEY}"})
    while worker.current is None:  # the previous job has ended: this one is running
        assert time.monotonic() - started < 15, "the request did not start"
        time.sleep(0.01)
    time.sleep(0.1)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    started = time.monotonic()
    while worker.counts["cancelled"] == before + 1:
        assert time.monotonic() - started < 15, f"generation was not cancelled: {dict(worker.counts)}"
        time.sleep(0.02)
    assert worker.last_stats["generated_tokens"] < 1000
    status, _ = server.post("/v1/fim/completions", {**FIM, "max_tokens": 2})
    assert status == 200


def test_a_full_queue_answers_503_and_jobs_run_in_arrival_order(server):
    worker, gate, running, order = server.api.worker, threading.Event(), threading.Event(), []

    class Blocker:  # a job that holds the worker until the gate opens
        def __init__(self, name):
            self.name, self.cancel = name, threading.Event()

        def run(self, engine):
            running.set()
            gate.wait(20)
            order.append(self.name)
            return {"stop_reason": "test"}

        def skip(self):
            pass

    worker.submit(Blocker(0))
    assert running.wait(20)
    for i in range(1, MAX_QUEUE + 1):
        worker.submit(Blocker(i))
    status, body = server.post("/v1/fim/completions", FIM)
    gate.set()
    assert status == 503 and body["error"]["code"] == "queue_full"
    deadline = time.monotonic() + 20
    while len(order) < MAX_QUEUE + 1 or worker.current is not None:  # the queue drains
        assert time.monotonic() < deadline, order
        time.sleep(0.01)
    assert order == list(range(MAX_QUEUE + 1))
    status, _ = server.post("/v1/fim/completions", {**FIM, "max_tokens": 2})
    assert status == 200


def test_load_concurrent_clients_lose_no_request(server):
    clients, per_client = 8, 3

    def client(c: int) -> list[tuple[int, float]]:
        results = []
        for r in range(per_client):
            body = {**FIM, "prompt": f"# client {c} request {r}\n" + FIM["prompt"], "max_tokens": 4,
                    "stream": r == 1}
            start = time.perf_counter()
            status, _ = server.post("/v1/fim/completions", body)
            results.append((status, time.perf_counter() - start))
        return results

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    assert len(results) == clients * per_client and all(status == 200 for status, _ in results), results
    ms = sorted(t * 1000 for _, t in results)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"\n{clients} clients x {per_client} requests (max_tokens 4): p50 {statistics.median(ms):.0f} ms, "
          f"p95 {p95:.0f} ms, {len(ms) / wall:.1f} requests/s")
