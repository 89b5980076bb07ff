"""Screened greedy tokens: the int8 bound holds and the chosen token is float32's argmax."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from engine.generate import decode
from engine.kv_cache import KVCache
from engine.sampling import SamplingParams
from engine.screened_argmax import FUSED, ScreenedArgmax
from engine.testing import random_model, tiny_args

pytestmark = pytest.mark.skipif(not FUSED, reason="torch has no fused int8 kernel")


def table(seed: int, vocab: int = 3000, dim: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(vocab, dim, generator=gen) * torch.rand(vocab, 1, generator=gen)  # rows of unequal scale
    return w.t().contiguous().t()  # the layout store_weights_transposed leaves


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.01, 1.0, 30.0]), rows=st.integers(1, 5))
def test_bound_covers_every_row(seed, scale, rows):
    w = table(seed % 7)
    screened = ScreenedArgmax(w)
    x = torch.randn(rows, w.shape[1], generator=torch.Generator().manual_seed(seed)) * scale
    y, bound = screened.screen(x)
    assert ((F.linear(x, w) - y).abs() <= bound).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), gap=st.sampled_from([1e-4, 1e-3, 1e-2]), rows=st.integers(1, 5))
def test_near_ties_resolve_as_float32_argmax(seed, gap, rows):
    """Rows that int8 rounding cannot tell apart: copies of the winner nudged by `gap` along x.
    (Exact ties are left out: F.linear itself breaks them by its summation order, not by index.)"""
    gen = torch.Generator().manual_seed(seed)
    w = table(seed % 7).clone()
    x = torch.randn(rows, w.shape[1], generator=gen)
    winner = int(F.linear(x[:1], w).argmax())
    direction = x[0] / x[0].norm()
    w[17] = w[winner] + gap * direction
    w[2999] = w[winner] - gap * direction
    assert ScreenedArgmax(w)(x) == F.linear(x, w).argmax(-1).tolist()


def test_greedy_decoding_with_the_screen_equals_plain_greedy():
    model = random_model(tiny_args(), seed=5)
    with torch.no_grad():
        model.output.weight.mul_(8)  # peaked logits, as a trained model's: few rows survive the screen
    prompt = torch.randint(32768, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    a = model.args
    runs = []
    for screen in (None, ScreenedArgmax(model.output.weight)):
        model.greedy_screen = screen
        cache = KVCache(a.n_layers, a.n_kv_heads, a.head_dim, 128, None, torch.float32)
        with torch.inference_mode():
            logits = model(torch.tensor([prompt]), 0, cache, last_only=True)[0, -1]
            cache.tokens.extend(prompt)
            steps = decode(model, cache, logits, SamplingParams())
            runs.append([next(steps)[0] for _ in range(60)])
    assert runs[0] == runs[1]
