"""`codestral-lsp bench fuzz --http`: the HTTP API under malformed requests and slow sockets.

A real `serve-http` process on a free loopback port first gets `slow` connections that send half a
request's headers and then nothing (a slowloris); while they are open, a valid FIM request is timed.
Then `requests` seeded requests follow, valid and not: wrong methods and paths, bodies that are not
JSON or not objects, fields of the wrong type or out of range, unknown models, wrong Content-Types,
bodies over the size limit, lone surrogates. Printed as one JSON object:

    {"requests": N, "status": {code: count}, "server_errors": count of 5xx other than 503,
     "failed": requests with no HTTP answer, "crashed": bool, "slow_sockets": S,
     "fim_ms_with_slow_sockets": ms, "fim_ok_after": bool, "seconds": T, "seed": SEED}
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx

FIM = "/v1/fim/completions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str | None, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "codestral_lsp", "serve-http", "--port", str(port)]
    proc = subprocess.Popen(command + (["--model", model] if model else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve-http exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("serve-http did not answer in 300 s")


def slow_socket(port: int) -> socket.socket:
    """A connection that sends the start of a request's headers and then waits."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/fim/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    return s


MODEL = {"name": "codestral"}  # the served model's id, read from /v1/models when the server is up


def fim_body(rng: random.Random) -> dict:
    return {"model": MODEL["name"], "prompt": "def add(a, b):\n    return", "suffix": "\n", "max_tokens": 8,
            "temperature": 0}


def random_request(rng: random.Random) -> tuple[str, str, dict, bytes]:
    """(method, path, headers, body) of one fuzzed request."""
    json_type = {"Content-Type": "application/json"}
    body = fim_body(rng)
    kind = rng.randrange(12)
    if kind == 0:  # valid
        return "POST", FIM, json_type, json.dumps(body).encode()
    if kind == 1:  # a field of the wrong type or out of range
        key = rng.choice(["prompt", "suffix", "max_tokens", "temperature", "top_p", "stream", "stop", "model"])
        body[key] = rng.choice([None, -1, 10**12, "x", [], {}, 1.5, True])
        return "POST", FIM, json_type, json.dumps(body).encode()
    if kind == 2:  # not JSON, or JSON that is not an object
        return "POST", FIM, json_type, rng.choice([b"{", b"null", b"[1]", b'"x"', b"\xff\xfe", b""])
    if kind == 3:  # the wrong Content-Type
        return "POST", FIM, {"Content-Type": rng.choice(["text/plain", "application/x-www-form-urlencoded",
                                                          "multipart/form-data"])}, json.dumps(body).encode()
    if kind == 4:  # too big
        body["prompt"] = "x" * (1 << 20)
        return "POST", FIM, json_type, json.dumps(body).encode()
    if kind == 5:  # a lone surrogate (escaped, as JSON allows)
        body["prompt"] = "x = '\ud800'\n"
        return "POST", FIM, json_type, json.dumps(body).encode()
    if kind == 6:  # an unknown model
        body["model"] = rng.choice(["gpt-4", "", "codestral-latest-x"])
        return "POST", FIM, json_type, json.dumps(body).encode()
    if kind == 7:  # the wrong method or path
        return rng.choice([("GET", FIM), ("PUT", "/v1/completions"), ("POST", "/v2/nothing"),
                           ("GET", "/v1/models/../../etc"), ("DELETE", "/v1/models")]) + ({}, b"")
    if kind == 8:  # OpenAI's completions, with and without suffix
        body.pop("suffix") if rng.random() < 0.5 else None
        return "POST", "/v1/completions", json_type, json.dumps(body).encode()
    if kind == 9:  # chat on a FIM model
        return "POST", "/v1/chat/completions", json_type, json.dumps(
            {"model": MODEL["name"], "messages": [{"role": "user", "content": "hi"}]}).encode()
    if kind == 10:  # refused options
        body[rng.choice(["n", "logprobs", "echo"])] = rng.choice([2, 5, True])
        return "POST", FIM, json_type, json.dumps(body).encode()
    body["stream"] = True
    return "POST", FIM, json_type, json.dumps(body).encode()


def fuzz_http(model: str | None = None, requests: int = 2000, slow: int = 100, seed: int = 0,
              progress=None) -> dict:
    port = free_port()
    proc = start_server(model, port)
    started = time.monotonic()
    rng = random.Random(seed)
    status: Counter = Counter()
    failed, ok_after, fim_ms = 0, False, None
    sockets = []
    try:
        base = f"http://127.0.0.1:{port}"
        MODEL["name"] = httpx.get(base + "/v1/models", timeout=10).json()["data"][0]["id"]
        sockets = [slow_socket(port) for _ in range(slow)]
        with httpx.Client(base_url=base, timeout=30) as client:
            began = time.perf_counter()
            answer = client.post(FIM, json=fim_body(rng))
            fim_ms = (time.perf_counter() - began) * 1000 if answer.status_code == 200 else None
            for n in range(1, requests + 1):
                method, path, headers, body = random_request(rng)
                try:
                    status[client.request(method, path, headers=headers, content=body).status_code] += 1
                except httpx.HTTPError:
                    failed += 1
                if proc.poll() is not None:
                    break
                if progress and n % 200 == 0:
                    progress(n, requests)
            ok_after = proc.poll() is None and client.post(FIM, json=fim_body(rng)).status_code == 200
    finally:
        for s in sockets:
            s.close()
        crashed = proc.poll() is not None
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"requests": requests, "status": {str(k): v for k, v in sorted(status.items())},
            "server_errors": sum(v for k, v in status.items() if k >= 500 and k != 503), "failed": failed,
            "crashed": crashed, "slow_sockets": slow, "fim_ms_with_slow_sockets": fim_ms,
            "fim_ok_after": ok_after, "seconds": round(time.monotonic() - started, 1), "seed": seed}
