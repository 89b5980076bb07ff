"""`serve-http` against hostile input: lone surrogates, slow headers, cross-site POSTs, other model names."""

from __future__ import annotations

import json
import socket
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from engine.testing import make_checkpoint  # noqa: E402
from tests.server.test_http_api import FIM, KEY, MODEL, Server, server, start  # noqa: E402,F401  (server: a fixture)


def test_lone_surrogate_prompt_is_answered(server):  # noqa: F811
    status, body = server.post("/v1/fim/completions", {**FIM, "prompt": "x = '\ud800", "suffix": "\udfff'\n"})
    assert status == 200, body
    status, body = server.post("/v1/completions", {**FIM, "prompt": "\ud800", "suffix": None})
    assert status == 200, body


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """No key, one request waits at most, 8 connections at most, 0.5 s to send a request's headers."""
    served, uv, thread = start(make_checkpoint(tmp_path_factory.mktemp("strict") / MODEL), api_key=None,
                               max_queue=1, header_timeout=0.5)
    yield served
    uv.should_exit = True
    thread.join(timeout=20)


def test_slow_headers_are_cut_off_and_real_clients_get_in(strict):
    slow = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(4 * 1 + 4)]
    for sock in slow:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    time.sleep(1.5)
    for sock in slow:
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
    assert strict.request("GET", "/v1/models")[0] == 200


def test_a_keep_alive_connection_gets_a_deadline_for_its_next_request(strict):
    conn = strict.connect()
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert conn.getresponse().read() and conn.sock is not None
    conn.sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(1.5)
    conn.sock.settimeout(5)
    assert conn.sock.recv(100) == b""


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_bodies_need_the_json_content_type(strict, content_type):
    conn = strict.connect()
    headers = {"Authorization": f"Bearer {KEY}", **({"Content-Type": content_type} if content_type else {})}
    conn.request("POST", "/v1/fim/completions", body=json.dumps(FIM).encode(), headers=headers)
    resp = conn.getresponse()
    assert resp.status == 415
    assert json.loads(resp.read())["error"]["code"] == "unsupported_media_type"
    status, body = strict.post("/v1/fim/completions", FIM, headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200, body


def test_a_keyed_server_refuses_other_content_types_too(server):  # noqa: F811
    status, body = server.post("/v1/fim/completions", FIM, headers={"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")


@pytest.fixture(scope="module")
def aliased(tmp_path_factory):
    served, uv, thread = start(make_checkpoint(tmp_path_factory.mktemp("aliased") / MODEL),
                               served_names=("codestral-latest", "codestral-2501"))
    yield served
    uv.should_exit = True
    thread.join(timeout=20)


def test_served_model_names_are_accepted_and_models_tells_the_truth(aliased):
    for name in ("codestral-latest", "codestral-2501", MODEL):
        status, body = aliased.post("/v1/fim/completions", {**FIM, "model": name})
        assert status == 200 and body["model"] == MODEL, body
    status, body = aliased.post("/v1/fim/completions", {**FIM, "model": "mistral-large-latest"})
    assert (status, body["error"]["code"]) == (404, "model_not_found")
    status, body = aliased.request("GET", "/v1/models")
    assert [card["id"] for card in body["data"]] == [MODEL]


def test_the_served_model_name_flag_takes_one_or_more_names():
    from codestral_lsp.cli import build_parser

    args = build_parser().parse_args(["serve-http", "--served-model-name", "codestral-latest", "codestral-2501"])
    assert args.served_model_name == ["codestral-latest", "codestral-2501"]
    assert build_parser().parse_args(["serve-http"]).served_model_name == []
