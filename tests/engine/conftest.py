"""Fixtures for the engine tests: the v3 tokenizer, the mistral-common oracle, tiny random engines.

Everything here is built in memory or in pytest's temporary folders: no weights are downloaded.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from hypothesis import HealthCheck, settings

from engine.checkpoints.tokenizer import Tokenizer, v3_tokenizer_path
from engine.engine import Engine
from engine.testing import random_model, tiny_args

# Settings for the engine's property tests, used as `@settings(settings.get_profile("engine"), ...)` so
# other suites keep their own: few examples, no per-example deadline (the CPU may be shared), and
# derandomized, so a run is reproducible and writes no example database.
settings.register_profile("engine", max_examples=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _deterministic_single_thread():
    """Seeded, and one intra-op thread: tiny models run several times faster on one thread when the
    cores are shared (measured: a [24, 64] x [64, 32768] matmul, 6 ms on one thread, 24 ms on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _drafting_not_timed(monkeypatch, request):
    """Speculative tests count drafted and accepted tokens, which must not depend on how fast a shared
    CPU runs: the speed rule of DraftLength (pause while speculative steps are slower) is off, except
    in the tests of that rule (marked `timed_drafting`)."""
    if "timed_drafting" not in request.keywords:
        from engine.speculative import DraftLength

        monkeypatch.setattr(DraftLength, "timed", lambda self, drafted, emitted, seconds: None)


@pytest.fixture(scope="session")
def v3_path():
    return v3_tokenizer_path()


@pytest.fixture(scope="session")
def tokenizer(v3_path) -> Tokenizer:
    return Tokenizer(v3_path)


@pytest.fixture(scope="session")
def mistral_common_tokenizer(v3_path):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(str(v3_path))


_MODELS: dict = {}


def tiny_model(seed: int = 0, **overrides):
    """A small random Transformer (vocabulary 32,768, to match the v3 tokenizer). Initialised once per
    config (that is the slow part) and handed out as a copy, so a test may change its weights."""
    opts = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64)
    opts.update(overrides)
    key = (seed, tuple(sorted(opts.items())))
    if key not in _MODELS:
        _MODELS[key] = random_model(tiny_args(**opts), seed)
    return copy.deepcopy(_MODELS[key])


@pytest.fixture
def make_engine(tokenizer):
    """make_engine(sliding_window=None, prefill_chunk=512, max_sessions=4, cache_bytes=None, **model_args)."""

    def make(prefill_chunk: int = 512, max_sessions: int = 4, cache_bytes: int | None = None,
             max_context: int | None = None, seed: int = 0, **model_args) -> Engine:
        return Engine(tiny_model(seed, **model_args), tokenizer, max_sessions=max_sessions,
                      cache_bytes=cache_bytes, prefill_chunk=prefill_chunk, max_context=max_context)

    return make


def _random_prompt(rng: random.Random, n: int) -> list[int]:
    """n token ids that are neither BOS nor EOS nor control tokens (ids below 1000 hold the specials)."""
    return [rng.randrange(1000, 32768) for _ in range(n)]


@pytest.fixture(scope="session")
def random_prompt():
    """random_prompt(rng, n) -> n ordinary token ids."""
    return _random_prompt
