"""`serve-http` against hostile input: lone surrogates, slow headers, cross-site POSTs, other model names."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.server.test_http_api import FIM, server  # noqa: E402,F401  (the module's server fixture)


def test_lone_surrogate_prompt_is_answered(server):  # noqa: F811
    status, body = server.post("/v1/fim/completions", {**FIM, "prompt": "x = '\ud800", "suffix": "\udfff'\n"})
    assert status == 200, body
    status, body = server.post("/v1/completions", {**FIM, "prompt": "\ud800", "suffix": None})
    assert status == 200, body
