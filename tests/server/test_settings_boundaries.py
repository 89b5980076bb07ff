"""Every settings minimum and enum, pinned at its boundary: the minimum itself is taken, one step below
it is refused (reported, the default kept); every choice is taken, anything else is refused. The
table is written out here, not read from settings.py, so a changed bound or choice list fails."""

from __future__ import annotations

import pytest

from codestral_lsp.settings import Settings, describe, parse_settings

MINIMUMS = {
    "model.requestTimeoutMs": 1,
    "model.retries": 0,
    "model.cascadeRemotePerMinute": 0,
    "completion.maxTokens": 1,
    "completion.debounceMs": 0,
    "completion.timeoutMs": 1,
    "completion.prefixTokens": 16,
    "completion.suffixTokens": 0,
    "completion.temperature": 0,
    "context.neighbourFiles": 0,
    "context.neighbourTokens": 0,
    "speculative.k": 1,
    "speculative.ngram": 1,
    "cache.sessions": 1,
    "cache.memoryMb": 1,
}
CHOICES = {
    "model.device": ("auto", "cpu", "cuda", "mps"),
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "model.quantize": ("none", "int8"),
    "model.backend": ("local", "mistral", "openai"),
    "model.fimPrompt": ("suffix", "tokens"),
    "model.cascade": ("off", "on"),
    "completion.multiline": ("auto", "always", "never"),
    "speculative.mode": ("off", "ngram", "draft"),
}
FLOATS = {"completion.temperature"}


def tree(key: str, value) -> dict:
    group, name = key.split(".")
    return {group: {name: value}}


def value_of(settings: Settings, key: str):
    group, name = key.split(".")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return getattr(getattr(settings, group), snake)


def default_of(key: str):
    return value_of(Settings(), key)


def test_the_table_covers_every_bounded_setting():
    described = describe()
    assert {k["key"]: k["minimum"] for k in described if k["minimum"] is not None} == MINIMUMS
    assert {k["key"]: tuple(k["choices"]) for k in described if k["choices"]} == CHOICES


@pytest.mark.parametrize("key", MINIMUMS)
def test_the_minimum_itself_is_taken(key):
    minimum = MINIMUMS[key]
    settings, problems = parse_settings(tree(key, minimum))
    assert problems == []
    assert value_of(settings, key) == minimum
    settings, problems = parse_settings(tree(key, minimum + 1))  # and above it
    assert problems == [] and value_of(settings, key) == minimum + 1


@pytest.mark.parametrize("key", MINIMUMS)
def test_just_below_the_minimum_is_refused(key):
    minimum = MINIMUMS[key]
    below = minimum - (0.001 if key in FLOATS else 1)
    settings, problems = parse_settings(tree(key, below))
    assert problems == [f"{key}: must be >= {minimum}, got {below!r}; using {default_of(key)!r}"]
    assert value_of(settings, key) == default_of(key)


@pytest.mark.parametrize("key", CHOICES)
def test_every_choice_is_taken(key):
    for choice in CHOICES[key]:
        settings, problems = parse_settings(tree(key, choice))
        assert problems == [], (key, choice)
        assert value_of(settings, key) == choice


@pytest.mark.parametrize("key", CHOICES)
def test_anything_else_is_refused(key):
    for wrong in ("", "Auto", CHOICES[key][0].upper(), CHOICES[key][-1] + " ", "other"):
        settings, problems = parse_settings(tree(key, wrong))
        assert len(problems) == 1 and problems[0].startswith(f"{key}: must be one of {', '.join(CHOICES[key])}"), \
            (key, wrong, problems)
        assert value_of(settings, key) == default_of(key)


def test_debounce_zero_is_taken():  # the boundary an editor sends to turn the debounce off
    settings, problems = parse_settings({"completion": {"debounceMs": 0}})
    assert problems == [] and settings.completion.debounce_ms == 0


LISTS = {"context.exclude"}  # lists of strings: any list of strings is taken, anything else refused


def test_the_table_covers_every_list_setting():
    assert {k["key"] for k in describe() if isinstance(k["default"], tuple)} == LISTS


@pytest.mark.parametrize("key", LISTS)
def test_a_list_of_strings_is_taken(key):
    for value in ([], ["*.secret"], ["a", "b/", "!c"]):
        settings, problems = parse_settings(tree(key, value))
        assert problems == [] and value_of(settings, key) == tuple(value), (key, value)


@pytest.mark.parametrize("key", LISTS)
def test_anything_else_is_refused_for_a_list(key):
    for wrong in ("*.secret", None, 3, ["ok", 3], [None], {"a": 1}, [["nested"]]):
        settings, problems = parse_settings(tree(key, wrong))
        assert len(problems) == 1 and problems[0].startswith(f"{key}: must be a list of strings"), (key, wrong)
        assert value_of(settings, key) == default_of(key)


def test_local_completions_in_excluded_documents_are_on_by_default():
    assert Settings().context.local_in_excluded is True
    settings, problems = parse_settings({"context": {"localInExcluded": False}})
    assert problems == [] and settings.context.local_in_excluded is False
    settings, problems = parse_settings({"context": {"localInExcluded": "no"}})
    assert problems and settings.context.local_in_excluded is True
