"""Tests written for mutmut's survivors in the request checks of codestral_lsp/http/api.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from codestral_lsp.http.api import (  # noqa: E402
    DEFAULT_MAX_TOKENS, ApiError, HttpApi, field, host_name, invalid, is_loopback, parse_chat, parse_completion,
    parse_fim, parse_message, parse_sampling, plain_tokens,
)


class FakeTokenizer:
    def encode(self, text: str, bos: bool = False) -> list[int]:
        return ([1] if bos else []) + [ord(c) for c in text]

    def encode_chat(self, turns) -> list[int]:
        return [len(turns)] + [ord(role[0]) for role, _ in turns]


class FakeEngine:
    """What the prompt builders call: fim_tokens, the tokenizer and max_context."""

    def __init__(self, max_context: int = 64):
        self.max_context, self.tokenizer, self.fim_calls = max_context, FakeTokenizer(), []

    def fim_tokens(self, prefix: str, suffix: str, max_tokens: int) -> list[int]:
        self.fim_calls.append((prefix, suffix, max_tokens))
        return [7]


def refused(parse, *args) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(*args)
    return caught.value


def error(exc: ApiError) -> tuple:
    return exc.status, exc.code, exc.param, exc.message


# -- errors ----------------------------------------------------------------------------------------

def test_invalid_is_a_400_with_its_defaults():
    assert error(invalid("m")) == (400, "invalid_value", None, "m")
    assert error(invalid("m", "p", "c")) == (400, "c", "p", "m")
    assert str(invalid("m")) == "m" and invalid("m").headers is None


def test_error_bodies_name_their_type_by_status():
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "invalid_request_error", 413: "invalid_request_error", 500: "server_error", 503: "server_error"}
    for status, kind in kinds.items():
        assert ApiError(status, "m", "c", "p").body() == {"error": {"message": "m", "type": kind, "param": "p",
                                                                    "code": "c"}}


# -- field and parse_sampling ------------------------------------------------------------------------

def test_field_types():
    assert field({}, "a", int, 5) == 5 and field({"a": None}, "a", int, 5) == 5 and field({}, "a", int) is None
    assert field({"a": 3}, "a", int) == 3
    got = field({"a": 3}, "a", float)
    assert got == 3.0 and type(got) is float
    assert field({"a": True}, "a", bool) is True and field({"a": "s"}, "a", str) == "s"
    assert error(refused(field, {"a": True}, "a", int)) == (400, "invalid_type", "a", "'a' must be an integer, not true")
    assert error(refused(field, {"a": 1}, "a", bool)) == (400, "invalid_type", "a", "'a' must be a boolean, not 1")
    assert error(refused(field, {"a": "1"}, "a", float))[3] == "'a' must be a number, not \"1\""
    assert error(refused(field, {"a": 1.5}, "a", int))[3] == "'a' must be an integer, not 1.5"
    assert error(refused(field, {"a": 2}, "a", str))[3] == "'a' must be a string, not 2"
    long = "x" * 60
    assert error(refused(field, {"a": long}, "a", int))[3] == "'a' must be an integer, not \"" + "x" * 39


def test_sampling_defaults_and_values():
    assert parse_sampling({}, 4096) == {"max_tokens": DEFAULT_MAX_TOKENS, "temperature": 0.0, "top_p": 1.0,
                                        "stop": [], "seed": None}
    assert DEFAULT_MAX_TOKENS == 128
    got = parse_sampling({"max_tokens": 5, "temperature": 1, "top_p": 0.5, "stop": "\n", "seed": 3, "n": 1}, 512)
    assert got == {"max_tokens": 5, "temperature": 1.0, "top_p": 0.5, "stop": ["\n"], "seed": 3}
    assert parse_sampling({"stop": ["a", "b"], "random_seed": 0, "seed": 9}, 512)["stop"] == ["a", "b"]
    assert parse_sampling({"random_seed": 0, "seed": 9}, 512)["seed"] == 0    # Mistral's name first
    assert parse_sampling({"random_seed": None, "seed": 9}, 512)["seed"] == 9
    assert parse_sampling({"top_p": 1}, 512)["top_p"] == 1.0
    assert parse_sampling({"max_tokens": 32}, 65)["max_tokens"] == 32       # half of 65 is 32


def test_sampling_refusals():
    assert error(refused(parse_sampling, {"max_tokens": 33}, 65)) == (
        400, "invalid_value", "max_tokens", "'max_tokens' must be from 1 to 32 (half the model's context)")
    assert error(refused(parse_sampling, {"temperature": 2.5}, 512)) == (
        400, "invalid_value", "temperature", "'temperature' must be from 0 to 2")
    for bad in (0, -0.5, 1.001):
        assert error(refused(parse_sampling, {"top_p": bad}, 512)) == (
            400, "invalid_value", "top_p", "'top_p' must be above 0 and at most 1")
    for bad in (5, [1], ["a", 2], {"a": "b"}):
        assert error(refused(parse_sampling, {"stop": bad}, 512)) == (
            400, "invalid_type", "stop", "'stop' must be a string or a list of strings")
    for body in ({"seed": -1}, {"random_seed": -1}):
        assert error(refused(parse_sampling, body, 512)) == (
            400, "invalid_value", "random_seed", "the seed must not be negative")
    assert error(refused(parse_sampling, {"n": 2}, 512)) == (
        400, "unsupported", "n", "only one choice per request (n=1) is supported")
    assert parse_sampling({"n": None}, 512)["max_tokens"] == 128


# -- request bodies ------------------------------------------------------------------------------------

def test_fim_body():
    call = parse_fim({"prompt": "a", "suffix": "b", "max_tokens": 4, "model": "m", "stream": True}, 512)
    assert (call.kind, call.model, call.stream, call.fim, call.options["max_tokens"]) == ("fim", "m", True, True, 4)
    engine = FakeEngine()
    assert call.prompt(engine) == [7] and engine.fim_calls == [("a", "b", 4)]
    call = parse_fim({"prompt": "a"}, 512)
    assert (call.model, call.stream, call.options["max_tokens"]) == (None, False, 128)
    engine = FakeEngine()
    call.prompt(engine)
    assert engine.fim_calls == [("a", "", 128)]
    assert error(refused(parse_fim, {"suffix": "b"}, 512)) == (
        400, "missing", "prompt", "'prompt' is required: the text before the gap")
    assert error(refused(parse_fim, {"prompt": "a", "top_p": 0}, 512))[2] == "top_p"   # sampling checked too


def test_completion_body():
    call = parse_completion({"prompt": ["ab"], "max_tokens": 3}, 512)
    assert call.options == {"max_tokens": 3, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": None}
    assert (call.kind, call.model, call.stream, call.fim) == ("completion", None, False, False)
    assert call.prompt(FakeEngine()) == [1, 97, 98]   # bos and the text, no fill-in-the-middle
    call = parse_completion({"prompt": "ab", "suffix": "c", "model": "m", "stream": True, "logprobs": 0,
                             "echo": False}, 512)
    assert (call.model, call.stream, call.fim) == ("m", True, True)
    engine = FakeEngine()
    assert call.prompt(engine) == [7] and engine.fim_calls == [("ab", "c", 128)]
    message = "'prompt' must be a string (or a list of one string)"
    for bad in ({}, {"prompt": ["a", "b"]}, {"prompt": [1]}, {"prompt": 5}, {"prompt": []}):
        assert error(refused(parse_completion, bad, 512)) == (400, "invalid_type", "prompt", message)
    for bad in ({"echo": True}, {"logprobs": 1}, {"logprobs": True}):
        assert error(refused(parse_completion, {"prompt": "a", **bad}, 512)) == (
            400, "unsupported", "logprobs", "'echo' and 'logprobs' are not supported")
    assert error(refused(parse_completion, {"prompt": "a", "max_tokens": 0}, 512))[2] == "max_tokens"
    with pytest.raises(ApiError) as caught:   # a plain prompt that fills the context
        parse_completion({"prompt": "x" * 63}, 512).prompt(FakeEngine())
    assert error(caught.value) == (400, "context_length_exceeded", "prompt",
                                   "the prompt has 64 tokens; the model's context holds 64")


def test_plain_tokens_leave_room_for_one_token():
    assert plain_tokens(FakeEngine(4), [1, 2, 3]) == [1, 2, 3]
    assert error(refused(plain_tokens, FakeEngine(4), [1, 2, 3, 4])) == (
        400, "context_length_exceeded", "prompt", "the prompt has 4 tokens; the model's context holds 4")


def test_chat_body():
    turns = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
             {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
             {"role": "system", "content": "t"}, {"role": "user", "content": "v"}]
    call = parse_chat({"messages": turns, "model": "m", "stream": True, "max_tokens": 2}, 512)
    assert (call.kind, call.model, call.stream, call.fim, call.options["max_tokens"]) == ("chat", "m", True, False, 2)
    assert call.prompt(FakeEngine()) == [5, ord("s"), ord("u"), ord("a"), ord("s"), ord("u")]
    call = parse_chat({"messages": [{"role": "user", "content": "u"}]}, 512)
    assert (call.model, call.stream) == (None, False)
    with pytest.raises(ApiError) as caught:
        call.prompt(FakeEngine(2))
    assert caught.value.code == "context_length_exceeded"
    for bad in ({}, {"messages": []}, {"messages": "hi"}):
        assert error(refused(parse_chat, bad, 512)) == (
            400, "invalid_type", "messages", "'messages' must be a non-empty list")
    order = ("messages must alternate user and assistant, starting and ending with user "
             "(system messages may appear anywhere)")
    for roles in (["assistant"], ["user", "assistant"], ["user", "user", "user"], ["system"],
                  ["user", "assistant", "assistant"]):
        body = {"messages": [{"role": r, "content": "x"} for r in roles]}
        assert error(refused(parse_chat, body, 512)) == (400, "invalid_conversation", "messages", order)
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 3}
    assert error(refused(parse_chat, body, 512))[2] == "temperature"


def test_messages():
    assert parse_message({"role": "user", "content": "x"}, 0) == ("user", "x")
    assert parse_message({"role": "assistant", "content": []}, 0) == ("assistant", "")
    assert parse_message({"role": "system", "content": [{"type": "text", "text": "a"}]}, 0) == ("system", "a")
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert parse_message({"role": "user", "content": parts}, 0) == ("user", "ab")
    message = "messages[3] needs a role (system, user or assistant) and a text content"
    for bad in ("hi", {"role": "tool", "content": "x"}, {"content": "x"}, {"role": "user"},
                {"role": "user", "content": 5}, {"role": "user", "content": [{"type": "image", "text": "a"}]},
                {"role": "user", "content": [{"type": "text", "text": 1}]}, {"role": "user", "content": ["a"]},
                {"role": "user", "content": [{"text": "a"}]}):
        assert error(refused(parse_message, bad, 3)) == (400, "invalid_message", "messages[3]", message)


# -- hosts and models ----------------------------------------------------------------------------------

def test_host_names_and_loopback():
    assert host_name("[::1]:8000") == "::1" and host_name("[::1]") == "::1"
    assert host_name("localhost:8000") == "localhost" and host_name("example.com") == "example.com"
    assert host_name("a:b:8000") == "a:b" and host_name("") == ""
    for host in ("localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.1.2.3", "::1"):
        assert is_loopback(host), host
    for host in ("example.com", "notlocalhost", "10.0.0.1", "0.0.0.0", "", "localhost.com"):
        assert not is_loopback(host), host


def test_check_model():
    api = HttpApi.__new__(HttpApi)   # only the served names matter here
    api.names = {"tiny", "alias"}
    api.check_model(None)
    api.check_model("tiny")
    exc = refused(api.check_model, "other")
    assert error(exc) == (404, "model_not_found", "model",
                          "model 'other' is not served here; this server answers to 'alias', 'tiny'")
    assert exc.body()["error"]["type"] == "invalid_request_error"


def test_a_longer_conversation_and_the_index_of_a_bad_message():
    roles = ["user", "assistant", "user", "assistant", "user"]
    call = parse_chat({"messages": [{"role": r, "content": "x"} for r in roles]}, 512)
    assert call.prompt(FakeEngine()) == [5] + [ord(r[0]) for r in roles]
    exc = refused(parse_chat, {"messages": [{"role": "user", "content": "x"}, "bad"]}, 512)
    assert (exc.param, exc.message) == ("messages[1]", "messages[1] needs a role (system, user or assistant) and a "
                                                       "text content")
