"""The HTTP API's limits at their boundaries: a body of exactly 1 MiB is read and answered, one byte more
gets 413 (and the server keeps serving); max_tokens and temperature accept their bounds and refuse one
step past them."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from codestral_lsp.http.api import ApiError, parse_sampling  # noqa: E402

from test_http_api import FIM, server  # noqa: E402,F401  (tests/server is on sys.path: rootdir import mode)

MIB = 1 << 20


def padded(body: dict, size: int) -> bytes:
    """A valid JSON body of exactly `size` bytes (trailing whitespace is JSON)."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


def test_a_body_of_exactly_one_mib_is_answered(server):
    raw = padded({**FIM, "max_tokens": 1}, MIB)
    assert len(raw) == MIB
    status, answer = server.request("POST", "/v1/fim/completions", raw=raw)
    assert status == 200, answer
    assert answer["choices"] and answer["usage"]["completion_tokens"] == 1


def test_one_byte_more_gets_413_and_the_server_keeps_serving(server):
    status, answer = server.request("POST", "/v1/fim/completions", raw=padded({**FIM, "max_tokens": 1}, MIB + 1))
    assert status == 413, answer
    assert answer["error"]["code"] == "request_too_large"
    assert answer["error"]["message"] == f"the request body is over {MIB} bytes"
    status, answer = server.post("/v1/fim/completions", {**FIM, "max_tokens": 1})
    assert status == 200, answer


@pytest.mark.parametrize("max_context", [2048, 4096])
def test_max_tokens_from_one_to_half_the_context(max_context):
    limit = max_context // 2
    for good in (1, limit):
        assert parse_sampling({"max_tokens": good}, max_context)["max_tokens"] == good
    for bad in (0, limit + 1):
        with pytest.raises(ApiError) as caught:
            parse_sampling({"max_tokens": bad}, max_context)
        assert (caught.value.status, caught.value.param) == (400, "max_tokens")
        assert caught.value.message == f"'max_tokens' must be from 1 to {limit} (half the model's context)"


def test_temperature_from_zero_to_two():
    for good in (0, 2):
        assert parse_sampling({"temperature": good}, 2048)["temperature"] == good
    for bad in (-0.001, 2.001):
        with pytest.raises(ApiError) as caught:
            parse_sampling({"temperature": bad}, 2048)
        assert (caught.value.status, caught.value.param) == (400, "temperature")
