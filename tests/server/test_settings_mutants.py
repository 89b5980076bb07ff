"""Tests written for mutmut's survivors in settings.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from codestral_lsp.settings import parse_settings


def test_null_is_refused_for_a_setting_that_is_not_nullable():
    s, problems = parse_settings({"completion": {"maxTokens": None}})
    assert s.completion.max_tokens == 64
    assert problems == ["completion.maxTokens: must not be null, got None; using 64"]


def test_null_is_taken_for_a_nullable_setting():
    s, problems = parse_settings({"model": {"path": None}})
    assert s.model.path is None and problems == []


def test_a_float_setting_refuses_strings_and_booleans():
    for bad in ("hot", True):
        s, problems = parse_settings({"completion": {"temperature": bad}})
        assert s.completion.temperature == 0.0
        assert problems == [f"completion.temperature: must be float, got {bad!r}; using 0.0"]


def test_an_integer_temperature_becomes_a_float():
    s, problems = parse_settings({"completion": {"temperature": 1}})
    assert problems == [] and s.completion.temperature == 1.0 and type(s.completion.temperature) is float


def test_a_tree_that_is_not_an_object_is_named_settings():
    s, problems = parse_settings(5)
    assert problems == ["settings: must be an object, got 5; using defaults"]
    assert s.completion.max_tokens == 64
