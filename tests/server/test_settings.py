from codestral_lsp.settings import Settings, describe, parse_settings


def test_defaults_and_camel_case_keys():
    s, problems = parse_settings({"completion": {"maxTokens": 12, "multiline": "never"}, "cache": {"memoryMb": 64}})
    assert problems == []
    assert (s.completion.max_tokens, s.completion.multiline, s.cache.memory_mb) == (12, "never", 64)
    assert s.model.path is None and s.speculative.mode == "ngram"


def test_invalid_values_are_reported_and_replaced_by_defaults():
    s, problems = parse_settings({"completion": {"maxTokens": "many", "debounceMs": -1, "temperature": 0.2},
                                  "speculative": {"mode": "magic"}, "unknown": 1, "model": 5})
    assert s.completion.max_tokens == 64 and s.completion.debounce_ms == 30 and s.completion.temperature == 0.2
    assert s.speculative.mode == "ngram"
    assert any(p.startswith("completion.maxTokens: must be int") for p in problems)
    assert any(p.startswith("speculative.mode: must be one of off, ngram, draft") for p in problems)
    assert "unknown: unknown setting, ignored" in problems
    assert any(p.startswith("model: must be an object") for p in problems)


def test_wrapped_tree_and_empty_path():
    s, problems = parse_settings({"codestral": {"model": {"path": ""}, "completion": {"enabled": False}}})
    assert problems == [] and s.model.path is None and s.completion.enabled is False


def test_booleans_are_not_integers():
    s, problems = parse_settings({"completion": {"maxTokens": True}})
    assert s.completion.max_tokens == 64 and problems


def test_every_key_is_described():
    keys = describe()
    assert all(k["description"] for k in keys)
    assert {"model.path", "completion.maxTokens", "speculative.draftPath", "cache.memoryMb"} <= {k["key"] for k in keys}
    assert len(keys) == sum(len(vars(group)) for group in vars(Settings()).values())
