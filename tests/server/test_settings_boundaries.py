"""Every settings minimum and enum, pinned at its boundary: the minimum itself is taken, one step below
it is refused (reported, the default kept); every choice is taken, anything else is refused. The
table is written out here, not read from settings.py, so a changed bound or choice list fails."""

from __future__ import annotations

import pytest

from codestral_lsp.settings import Settings, describe, parse_settings

MINIMUMS = {
    "model.requestTimeoutMs": 1,
    "model.retries": 0,
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
