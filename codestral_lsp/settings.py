"""The one settings tree (DESIGN.md section 5).

camelCase on the wire (`initializationOptions`, `workspace/didChangeConfiguration`), snake_case here,
the same keys in the VS Code extension (`codestral.*`) and the Neovim plugin (`settings = {...}`).
Every key has a default and a one-line description; `parse_settings` reports invalid values and
keeps the default for them, it never fails.

    >>> s, problems = parse_settings({"completion": {"maxTokens": 32, "debounceMs": -5}})
    >>> s.completion.max_tokens, s.completion.debounce_ms, problems
    (32, 30, ['completion.debounceMs: must be >= 0, got -5; using 30'])
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, get_origin, get_type_hints


def setting(default: Any, description: str, choices: tuple | None = None, minimum: float | None = None):
    return field(default=default, metadata={"description": description, "choices": choices, "minimum": minimum})


@dataclass
class ModelSettings:
    path: str | None = setting(None, "Checkpoint folder (Mistral or Hugging Face format) or GGUF file; empty: the embedded model.")
    device: str = setting("auto", "Where the model runs.", ("auto", "cpu", "cuda", "mps"))
    dtype: str = setting("auto", "Weight precision.", ("auto", "float32", "bfloat16", "float16"))
    quantize: str = setting("none", "Weight-only quantization.", ("none", "int8"))
    backend: str = setting("local", "Where completions come from: the model in this process, Mistral's FIM API, or an "
                           "OpenAI-compatible server (vLLM, llama.cpp, codestral-lsp serve-http).",
                           ("local", "mistral", "openai"))
    endpoint: str | None = setting(None, "Base URL of the remote server; empty: https://api.mistral.ai (mistral) or "
                                   "http://127.0.0.1:8000 (openai).")
    api_key_env: str | None = setting(None, "Name of the environment variable holding the API key, never the key "
                                      "itself; empty: MISTRAL_API_KEY (mistral, required) or OPENAI_API_KEY "
                                      "(openai, sent when set).")
    remote_model: str | None = setting(None, "Model name sent to the remote server; empty: codestral-latest (mistral) "
                                       "or the first model the server lists (openai).")
    fim_prompt: str = setting("suffix", "How the openai backend sends the gap: prompt and suffix fields, or the FIM "
                              "prompt as Codestral token ids (for servers that refuse suffix, such as vLLM).",
                              ("suffix", "tokens"))
    request_timeout_ms: int = setting(10000, "Longest wait for the remote server to connect or send the next piece.",
                                      minimum=1)
    retries: int = setting(2, "Retries of a remote request after a connection error, 429 or 5xx, with exponential "
                           "backoff.", minimum=0)
    cascade: str = setting("off", "The cascade: 'on' puts the local model (model.path) in front of the remote backend "
                           "that model.backend names; the remote is asked when the local answer is unsure or completion "
                           "is invoked explicitly, and its answer replaces the local one.", ("off", "on"))
    cascade_threshold: float = setting(-1.0, "Cascade: ask the remote when the local answer's confidence (the mean "
                                       "log-probability of its tokens) is below this; see eval --calibration.")
    cascade_remote_per_minute: int = setting(20, "Cascade: most remote requests in a minute; 0: never.", minimum=0)


@dataclass
class CompletionSettings:
    enabled: bool = setting(True, "Offer completions at all.")
    max_tokens: int = setting(64, "Longest completion in tokens.", minimum=1)
    multiline: str = setting("auto", "Multi-line suggestions: decided from the syntax at the cursor, always or never.",
                             ("auto", "always", "never"))
    debounce_ms: int = setting(30, "Server-side wait after a keystroke before generating.", minimum=0)
    timeout_ms: int = setting(3000, "Stop generating after this long and return what is there.", minimum=1)
    prefix_tokens: int = setting(768, "Token budget for the text before the cursor.", minimum=16)
    suffix_tokens: int = setting(256, "Token budget for the text after the cursor.", minimum=0)
    temperature: float = setting(0.0, "Sampling temperature; 0 is greedy.", minimum=0)


@dataclass
class ContextSettings:
    neighbour_files: int = setting(3, "How many other open documents may lend snippets.", minimum=0)
    neighbour_tokens: int = setting(256, "Token budget for snippets from other documents.", minimum=0)
    exclude: tuple[str, ...] = setting(
        (".env*", "*.pem", "*.key", "id_*", "*.p12", "secrets.*", ".npmrc", ".pypirc", "credentials*"),
        "Gitignore-style patterns of documents whose text never goes to a remote backend and never lends "
        "snippets to another document's prompt; each workspace root's .codestralignore adds its own.")
    local_in_excluded: bool = setting(True, "Local completions in excluded documents (their text stays on this "
                                      "machine); remote backends never complete in them.")


@dataclass
class SpeculativeSettings:
    mode: str = setting("ngram", "Speculative decoding: prompt lookup, a draft model, or off.", ("off", "ngram", "draft"))
    draft_path: str | None = setting(None, "Draft checkpoint for mode 'draft' (same tokenizer); empty: the embedded draft.")
    k: int = setting(4, "Most tokens drafted per verification step.", minimum=1)
    ngram: int = setting(3, "Longest n-gram matched for prompt lookup.", minimum=1)


@dataclass
class CacheSettings:
    sessions: int = setting(4, "Documents whose KV cache is kept.", minimum=1)
    memory_mb: int = setting(1024, "Memory budget for all KV caches together.", minimum=1)


@dataclass
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    speculative: SpeculativeSettings = field(default_factory=SpeculativeSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _check(value: Any, hint: Any, meta: dict) -> str | None:
    """Why value is not acceptable for a field, or None."""
    if get_origin(hint) is tuple:  # a list of strings on the wire
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    allowed = getattr(hint, "__args__", (hint,))
    if value is None:
        return None if type(None) in allowed else "must not be null"
    if bool in allowed:
        ok = isinstance(value, bool)
    elif int in allowed:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif float in allowed:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"must be {' or '.join(t.__name__ for t in allowed if t is not type(None))}"
    if meta.get("choices") and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}"
    if meta.get("minimum") is not None and value < meta["minimum"]:
        return f"must be >= {meta['minimum']}"
    return None


def _parse(cls, raw: Any, where: str, problems: list[str]):
    obj = cls()
    if raw is None:
        return obj
    if not isinstance(raw, dict):
        problems.append(f"{where or 'settings'}: must be an object, got {raw!r}; using defaults")
        return obj
    hints = get_type_hints(cls)
    known = {camel(f.name): f for f in fields(cls)}
    for key, value in raw.items():
        f = known.get(key) or next((g for g in fields(cls) if g.name == key), None)
        path = f"{where}.{key}" if where else key
        if f is None:
            problems.append(f"{path}: unknown setting, ignored")
            continue
        if is_dataclass(hints[f.name]):
            setattr(obj, f.name, _parse(hints[f.name], value, path, problems))
            continue
        if hints[f.name] in (str | None,) and value == "":
            value = None
        why = _check(value, hints[f.name], f.metadata)
        if why:
            problems.append(f"{path}: {why}, got {value!r}; using {getattr(obj, f.name)!r}")
        else:
            setattr(obj, f.name, float(value) if hints[f.name] is float else
                    tuple(value) if isinstance(value, list) else value)
    return obj


def parse_settings(raw: Any) -> tuple[Settings, list[str]]:
    """Settings from a camelCase JSON tree; unknown or invalid entries are reported and skipped.

    Editors often wrap the tree in its section name ({"codestral": {...}}): that is unwrapped.
    """
    problems: list[str] = []
    if isinstance(raw, dict) and set(raw) == {"codestral"}:
        raw = raw["codestral"]
    return _parse(Settings, raw, "", problems), problems


def describe(cls=Settings, prefix: str = "") -> list[dict]:
    """Every key as {key, default, description, choices}: the source for editor manifests and docs."""
    out = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{camel(f.name)}"
        if is_dataclass(hints[f.name]):
            out += describe(hints[f.name], key + ".")
        else:
            default = f.default if f.default is not MISSING else None
            out.append({"key": key, "default": default, "description": f.metadata["description"],
                        "choices": f.metadata.get("choices"), "minimum": f.metadata.get("minimum")})
    return out
