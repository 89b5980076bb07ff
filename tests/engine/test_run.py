"""`Transformer.run`, the one way generation runs tokens through the model with a cache, and the
cache's `reserve` / `rollback`: every path `run` picks gives the logits of a cache-free forward
call, and a rollback followed by other tokens equals a cold run of the same context.
"""

from __future__ import annotations

import random

import pytest
import torch

from engine import fused
from engine.kv_cache import KVCache
from engine.model import STEP_ROWS, store_weights_transposed
from engine.quantize import quantize_int8
from engine.screened_argmax import FUSED as INT8_KERNEL, ScreenedArgmax
from engine.testing import random_model, tiny_args

PATHS = ["lean", "screened", "int8", "ring", "fused"]


def fused_module():
    """The built extension (test_fused_step.py builds it), or a skip."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTRAL_LSP_FUSED", "auto")  # tests/conftest.py turns it off for servers
        module = fused.load(build=False)
    if module is None:
        pytest.skip("the fused step is not built on this machine (test_fused_step.py builds it)")
    return module


def model_for(path: str):
    """A tiny model whose `run` takes `path` for pieces of up to STEP_ROWS tokens (a ring: `forward`)."""
    window = 6 if path == "ring" else None
    dims = dict(dim=64, hidden_dim=128) if path == "fused" else dict(dim=32, hidden_dim=64)
    model = random_model(tiny_args(n_layers=2, n_heads=4, n_kv_heads=2, sliding_window=window, **dims), seed=3)
    if path == "fused":
        with torch.no_grad():  # matrices of bfloat16 values, as the fused step requires
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
    if path == "int8":
        quantize_int8(model)
    else:
        store_weights_transposed(model)
    model.greedy_screen = None
    if path == "screened":
        if not INT8_KERNEL:
            pytest.skip("this torch has no int8 matrix kernel")
        model.greedy_screen = ScreenedArgmax(model.output.weight)
    if path == "fused":
        assert fused.attach(model, fused_module()) == "on"
    return model


def new_cache(model, capacity: int = 64) -> KVCache:
    a = model.args
    window = a.sliding_window
    return KVCache(a.n_layers, a.n_kv_heads, a.head_dim, window + 4 if window else capacity, window, torch.float32)


def cold(model, context: list[int]) -> torch.Tensor:
    """Logits [T, V] of the context by one forward call without a cache."""
    return model(torch.tensor([context]))[0]


@pytest.mark.parametrize("path", PATHS)
def test_run_equals_forward_on_every_path(path):
    """Pieces of 1 to STEP_ROWS + 1 tokens, want logits / last / greedy: each the cache-free forward's."""
    model = model_for(path)
    cache = new_cache(model)
    rng = random.Random(4)
    context = [rng.randrange(1000, 32768) for _ in range(5)]
    with torch.inference_mode():
        model.run(context, cache, "last")
        for n, want in [(1, "greedy"), (1, "last"), (3, "logits"), (1, "greedy"), (2, "greedy"),
                        (STEP_ROWS, "logits"), (STEP_ROWS + 1, "logits"), (4, "last")]:
            tokens = [rng.randrange(1000, 32768) for _ in range(n)]
            pos = len(cache.tokens)
            got = model.run(tokens, cache, want)
            context += tokens
            expected = cold(model, context)[pos:]  # [n, V]
            assert cache.tokens == context
            if want == "greedy":  # equal, where the top two logits are not within rounding of each other
                top2 = expected.topk(2, dim=-1).values
                clear = (top2[:, 0] - top2[:, 1] > 1e-3).tolist()
                assert [g for g, c in zip(got, clear) if c] == [e for e, c in zip(expected.argmax(-1).tolist(), clear) if c]
                continue
            got = got[None] if want == "last" else got
            expected = expected[-1:] if want == "last" else expected
            assert got.dtype == torch.float32 and got.shape == expected.shape, (want, got.shape, expected.shape)
            # int8: the cold call over the whole context takes the dequantized product, the run the bf16 kernel
            torch.testing.assert_close(got, expected, rtol=0, atol={"int8": 2e-2, "fused": 2e-3}.get(path, 1e-4))


@pytest.mark.parametrize("path", PATHS)
def test_rollback_then_run_equals_cold(path):
    """A verification of 4 tokens, rolled back to keep 1, then 3 other tokens: the logits of a fresh
    cache that ran the same context."""
    model = model_for(path)
    warm, fresh = new_cache(model), new_cache(model)
    rng = random.Random(6)
    prompt = [rng.randrange(1000, 32768) for _ in range(7)]
    rejected, kept, other = ([rng.randrange(1000, 32768) for _ in range(n)] for n in (3, 1, 3))
    with torch.inference_mode():
        model.run(prompt, warm, "last")
        model.run(kept + rejected, warm)
        assert warm.rollback(len(prompt) + 1) and warm.tokens == prompt + kept
        after_rollback = model.run(other, warm)
        model.run(prompt + kept, fresh, "last")
        fresh_run = model.run(other, fresh)
    torch.testing.assert_close(after_rollback, fresh_run, rtol=0, atol=1e-5)
    used = warm.used
    torch.testing.assert_close(warm.k[:, :, :, :used], fresh.k[:, :, :, :used], rtol=0, atol=1e-5)


def test_run_in_chunks_equals_one_piece():
    """`chunk` splits the tokens (here across the STEP_ROWS line: 17, 17, 6) without changing the result."""
    model = model_for("lean")
    rng = random.Random(8)
    tokens = [rng.randrange(1000, 32768) for _ in range(40)]
    with torch.inference_mode():
        whole = model.run(tokens, new_cache(model))
        chunked = model.run(tokens, new_cache(model), chunk=STEP_ROWS + 1)
        last = model.run(tokens, new_cache(model), "last", chunk=STEP_ROWS + 1)
        greedy = model.run(tokens, new_cache(model), "greedy", chunk=3)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(last, whole[-1], rtol=0, atol=1e-5)
    assert len(greedy) == len(tokens)


def test_reserve_hands_out_positions_and_rollback_takes_them_back():
    cache = KVCache(1, 1, 2, 8, None, torch.float32)
    assert cache.reserve([10, 11, 12]) == 0 and cache.reserve([13]) == 3
    assert cache.tokens == [10, 11, 12, 13] and cache.used == 4 and cache.slot_pos[:5].tolist() == [0, 1, 2, 3, -1]
    assert cache.rollback(2) and cache.tokens == [10, 11]
    assert cache.reserve([20, 21]) == 2 and cache.used == 4
    with pytest.raises(ValueError, match="capacity"):
        cache.reserve([0] * 5)  # positions 4..8 of 8 slots
    assert cache.tokens == [10, 11, 20, 21], "a refused reserve appends nothing"


def test_the_fused_extension_takes_step_rows():
    assert fused_module().max_rows == STEP_ROWS
