"""Tests written for mutmut's survivors in the HTTP API's admission and body checks
(codestral_lsp/http/api.py `HttpApi.admit`, `check_model`, `read_json`, `host_name`, `is_loopback`,
`usage`; docs/DEVELOPMENT.md, "Mutation testing"): called directly on Starlette requests built
from ASGI scopes, without a served model."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.requests import Request  # noqa: E402

from codestral_lsp.http.api import DRAIN_LIMIT, ApiError, HttpApi, host_name, is_loopback, usage  # noqa: E402


def api(**options) -> HttpApi:
    engine = SimpleNamespace(checkpoint=None, instruct=False, max_context=64,
                             tokenizer=SimpleNamespace(supports_fim=True))
    return HttpApi(engine, **options)


def request(headers: dict[str, str], chunks: list[bytes] = ()) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/v1/fim/completions",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    pending = pending or [{"type": "http.request", "body": b"", "more_body": False}]
    read = []

    async def receive():
        read.append(1)
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    req = Request(scope, receive)
    req.chunks_read = read
    return req


def refusal(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


JSON = {"host": "localhost", "content-type": "application/json"}


@pytest.mark.parametrize("host, ok", [("localhost:8000", True), ("127.0.0.1", True), ("[::1]:80", True),
                                      ("app.localhost", True), ("LOCALHOST.", True), ("example.com", False),
                                      ("", False), ("10.0.0.1:80", False), ("localhost.evil.com", False)])
def test_only_loopback_hosts_are_admitted(host, ok):
    check = lambda: api().admit(request({"host": host}))  # noqa: E731
    if ok:
        check()
    else:
        error = refusal(check)
        assert (error.status, error.code, error.message) == (403, "forbidden_host", FORBIDDEN)
    api(check_host=False).admit(request({"host": host}))  # --host given: any Host header


FORBIDDEN = ("this server listens on loopback and answers only requests addressed to a loopback host "
             "(localhost, 127.0.0.1, [::1])")
WRONG_KEY = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"


def test_a_request_without_host_or_key_headers_is_refused():
    error = refusal(lambda: api().admit(request({})))
    assert (error.status, error.message) == (403, FORBIDDEN)
    error = refusal(lambda: api(api_key="k").admit(request({"host": "localhost"})))
    assert (error.status, error.message) == (401, WRONG_KEY)


@pytest.mark.parametrize("authorization, ok", [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("BEARER  s3cret ", True),
    ("Bearer s3cre", False), ("Bearer s3cret2", False), ("Basic s3cret", False), ("s3cret", False), ("", False),
])
def test_the_api_key_must_come_as_a_bearer_token(authorization, ok):
    headers = {"host": "localhost", "authorization": authorization}
    if ok:
        api(api_key="s3cret").admit(request(headers))
        return
    error = refusal(lambda: api(api_key="s3cret").admit(request(headers)))
    assert (error.status, error.code, error.headers) == (401, "invalid_api_key", {"WWW-Authenticate": "Bearer"})
    assert error.message == WRONG_KEY


def test_models_are_checked_against_the_served_names():
    served = api(served_names=("codestral-latest",))
    served.check_model(None)
    served.check_model("codestral-lsp")
    served.check_model("codestral-latest")
    error = refusal(lambda: served.check_model("gpt-4"))
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert "'codestral-latest', 'codestral-lsp'" in error.message


def read(server: HttpApi, req: Request):
    return asyncio.run(server.read_json(req))


def test_a_json_object_is_read_from_its_chunks():
    assert read(api(), request(JSON, [b'{"a": ', b'[1, 2]}'])) == {"a": [1, 2]}
    assert read(api(), request({**JSON, "content-type": "Application/JSON; charset=utf-8"}, [b"{}"])) == {}


@pytest.mark.parametrize("content_type, key, ok", [
    ("text/plain", None, False), ("", None, False), ("", "k", True), ("text/plain", "k", False),
    ("application/json", None, True),
])
def test_the_media_type_must_be_json_unless_a_key_guards_the_server(content_type, key, ok):
    headers = {"host": "localhost"} | ({"content-type": content_type} if content_type else {})
    if ok:
        assert read(api(api_key=key), request(headers, [b"{}"])) == {}
        return
    error = refusal(lambda: read(api(api_key=key), request(headers, [b"{}"])))
    assert (error.status, error.code, error.headers) == (415, "unsupported_media_type", {"Connection": "close"})
    assert repr(content_type) in error.message


def test_a_body_over_the_limit_is_drained_then_refused():
    small = api(max_body=10)
    assert read(small, request(JSON, [b'{"a": 123}'])) == {"a": 123}  # exactly 10 bytes
    req = request(JSON, [b'{"a": ', b'1234}', b"x" * 100])
    error = refusal(lambda: read(small, req))
    assert (error.status, error.code, error.headers) == (413, "request_too_large", {"Connection": "close"})
    assert len(req.chunks_read) == 3 and "over 10 bytes" in error.message  # read to its end


def test_a_body_past_the_drain_limit_is_not_read_to_its_end():
    req = request(JSON, [b"x" * DRAIN_LIMIT, b"x", b"x", b"x"])
    error = refusal(lambda: read(api(), req))
    assert error.status == 413 and len(req.chunks_read) == 2  # stops once past the limit
    declared = request({**JSON, "content-length": str(DRAIN_LIMIT + 1)}, [b"{}"])
    assert refusal(lambda: read(api(), declared)).status == 413 and declared.chunks_read == []
    at_limit = request({**JSON, "content-length": str(DRAIN_LIMIT)}, [b"{}"])
    assert read(api(), at_limit) == {}


@pytest.mark.parametrize("body, message", [(b"{", "not valid JSON"), (b"\xff", "not valid JSON"),
                                           (b"[" * 100_000, "not valid JSON"), (b"[1]", "must be a JSON object"),
                                           (b"", "not valid JSON")])
def test_bodies_that_are_not_json_objects(body, message):
    error = refusal(lambda: read(api(), request(JSON, [body])))
    assert (error.status, error.code, error.param) == (400, "invalid_json", None) and message in error.message


@pytest.mark.parametrize("header, host", [("[::1]:8000", "::1"), ("[::1]", "::1"), ("localhost:8000", "localhost"),
                                          ("localhost", "localhost"), ("a:b:c", "a:b"), ("", ""),
                                          ("[::1]:80]", "::1")])  # the first "]" closes the address
def test_host_names_of_host_headers(header, host):
    assert host_name(header) == host


@pytest.mark.parametrize("host, loopback", [("localhost", True), ("x.localhost", True), ("Localhost.", True),
                                            ("127.0.0.2", True), ("::1", True), ("notlocalhost", False),
                                            ("0.0.0.0", False), ("", False), ("::2", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_usage_adds_prompt_and_completion_tokens():
    assert usage({"prompt_tokens": 5, "generated_tokens": 3}) == \
        {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert usage({}) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
