"""The fused C++ decode step (engine/fused.py) against the PyTorch step it replaces.

The extension is built once for the session (about 40 s); without a C++ compiler the tests are
skipped, with one, a build failure fails them.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

from engine import fused
from engine.generate import decode, prefill
from engine.kv_cache import KVCache
from engine.model import keep_embeddings_in_bfloat16, store_weights_transposed
from engine.quantize import quantize_int8
from engine.sampling import SamplingParams
from engine.speculative import DraftLength, PromptLookup, speculate
from engine.testing import random_model, tiny_args


@pytest.fixture(scope="module")
def module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTRAL_LSP_FUSED", "auto")
        built = fused.load(build=True)
    if built is None:
        if not (shutil.which("c++") or shutil.which("g++")):
            pytest.skip("no C++ compiler: the fused step cannot be built here")
        pytest.fail(f"the fused step did not build: {fused.failure()}")
    return built


def bf16_model(seed: int = 0, **overrides):
    """A tiny random model whose matrices hold bfloat16 values, as a checkpoint saved in bfloat16 gives."""
    model = random_model(tiny_args(**overrides), seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
        model.output.weight.mul_(4)  # peaked logits, as a trained model's
    return store_weights_transposed(model)


def new_cache(model, capacity: int = 256) -> KVCache:
    a = model.args
    return KVCache(a.n_layers, a.n_kv_heads, a.head_dim, capacity, None, torch.float32)


@pytest.mark.parametrize("rows", [1, 2, 5, 6, 7, 13, 16])
@pytest.mark.parametrize("shape", [(64, 1), (128, 24), (320, 272), (4096, 32)])
def test_the_kernels_multiply_like_float32(module, rows, shape):
    gen = torch.Generator().manual_seed(rows)
    w = torch.randn(*shape, generator=gen).bfloat16()
    x = torch.randn(rows, shape[1], generator=gen)
    expected = F.linear(x, w.float())
    packed = module.pack(w)
    torch.testing.assert_close(module.linear(packed, x), expected, rtol=1e-5, atol=1e-4)
    assert module.argmax(packed, x) == expected.argmax(-1).tolist()


def test_packing_puts_every_weight_somewhere_once(module):
    """The packed tiles hold each row of W once (the interleaving is a permutation within a tile)."""
    w = torch.arange(256 * 3, dtype=torch.float32).view(256, 3).bfloat16()  # distinct, exact in bfloat16
    packed = module.pack(w)
    assert packed.shape == (4, 3, 64)
    for tile in range(4):
        assert sorted(packed[tile].float().flatten().tolist()) == sorted(w[64 * tile:64 * tile + 64].float().flatten().tolist())


def test_the_vector_code_matches_the_cpu(module):
    """-march=native picks the widest kernels this CPU runs: a build that fell back to plain loops on
    an AVX2 machine would be several times slower and still pass every other test."""
    if os.environ.get("CODESTRAL_LSP_FUSED_CFLAGS") or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("another path was asked for, or the CPU's flags are unknown")
    flags = next((line.split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    expected = "avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= set(flags) else "scalar"
    assert module.isa == expected


def test_unpacking_gives_the_matrix_back(module):
    w = torch.randn(192, 40, generator=torch.Generator().manual_seed(5)).bfloat16()
    assert torch.equal(module.unpack(module.pack(w)), w)


def test_argmax_takes_the_first_of_equal_maxima(module):
    w = torch.zeros(1024, 16).bfloat16()
    w[700] = w[300] = w[900] = 1.0  # equal logits in three different groups of tiles
    assert module.argmax(module.pack(w), torch.ones(2, 16)) == [300, 300]


def test_the_kernels_refuse_what_they_cannot_multiply(module):
    with pytest.raises(RuntimeError, match="bfloat16"):
        module.pack(torch.randn(64, 16))
    with pytest.raises(RuntimeError, match="multiple of 64"):
        module.pack(torch.randn(48, 16).bfloat16())
    with pytest.raises(RuntimeError, match="pack"):
        module.linear(torch.randn(64, 16).bfloat16(), torch.randn(1, 16))
    with pytest.raises(RuntimeError, match="1 <= T <= 16"):
        module.linear(module.pack(torch.randn(64, 16).bfloat16()), torch.randn(17, 16))


@pytest.mark.parametrize("heads", [(4, 2), (2, 1), (4, 4)])
def test_steps_and_verifications_equal_the_pytorch_step(module, random_prompt, heads):
    """Logits and cached keys/values of chunks of 1 to 16 tokens, one after the other, and last_only.
    Query heads sharing kv heads two by two, with one kv head only (whose rows the threads split), or none."""
    import random

    model = bf16_model(dim=64, n_heads=heads[0], n_kv_heads=heads[1], hidden_dim=128)
    assert fused.attach(model, module) == "on"
    decoder = model.fused
    rng = random.Random(1)
    prompt = random_prompt(rng, 40)
    caches = []
    for use in (decoder, None):
        model.fused = use
        cache = new_cache(model)
        with torch.inference_mode():
            prefill(model, cache, prompt)
            logits = []
            for n in (1, 2, 5, 16, 1, 3):
                chunk = random_prompt(rng, n)
                logits.append(model.step(chunk, cache))
                cache.tokens.extend(chunk)
            logits.append(model.step(random_prompt(rng, 4), cache, last_only=True))
        caches.append((cache, logits))
        rng = random.Random(1)
        random_prompt(rng, 40)
    (fused_cache, fused_logits), (plain_cache, plain_logits) = caches
    for a, b in zip(fused_logits, plain_logits):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    used = len(plain_cache.tokens) + 4
    torch.testing.assert_close(fused_cache.k[:, :, :, :used], plain_cache.k[:, :, :, :used], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_cache.v[:, :, :, :used], plain_cache.v[:, :, :, :used], rtol=1e-5, atol=1e-5)


def test_greedy_and_speculative_decoding_equal_plain_decoding(module, random_prompt):
    import random

    model = bf16_model(seed=3)
    prompt = random_prompt(random.Random(2), 30)
    prompt = prompt + prompt[:12]  # a repeat, so that prompt lookup drafts something

    def greedy(speculative: bool) -> list[int]:
        cache = new_cache(model)
        with torch.inference_mode():
            logits, _ = prefill(model, cache, prompt)
            if speculative:
                steps = speculate(model, cache, logits, list(prompt), PromptLookup(3), SamplingParams(), None, {},
                                  DraftLength(4), 80)
            else:
                steps = decode(model, cache, logits, SamplingParams())
            out = []
            for step in steps:
                out.extend(step)
                if len(out) >= 80:
                    return out[:80]
        return out

    plain = greedy(False)
    assert fused.attach(model, module) == "on"
    assert greedy(False) == plain
    assert greedy(True) == plain


def test_the_decoders_output_product_gives_any_number_of_rows(module):
    """`logits` (prefill's logits while the step is on) against float32 products, and the table it
    unpacks, exactly the model's."""
    model = bf16_model(seed=4)
    assert fused.attach(model, module) == "on"
    h = torch.randn(40, model.args.dim, generator=torch.Generator().manual_seed(2))
    table = model.output.weight.detach()
    for rows in (1, 7, 40):
        torch.testing.assert_close(model.fused.logits(h[:rows]), F.linear(h[:rows], table), rtol=1e-5, atol=1e-4)
    assert torch.equal(model.fused.output_weight().float(), table)
    with pytest.raises(RuntimeError, match="hidden states"):
        model.fused.logits(h[:, :8])


def greedy_run(model, prompt: list[int], new: int = 24, reuse: list[int] | None = None):
    """Greedy tokens after `prompt` and the logits after it, prefilled cold, or after `reuse` (a
    session's earlier prompt: only what differs is prefilled)."""
    cache = new_cache(model)
    with torch.inference_mode():
        if reuse is not None:
            prefill(model, cache, reuse)
        logits, _ = prefill(model, cache, prompt)
        steps = decode(model, cache, logits, SamplingParams())
        return [next(steps)[0] for _ in range(new)], logits


def test_a_bfloat16_embedding_table_changes_no_value(module, random_prompt):
    """The table kept in bfloat16 (`keep_embeddings_in_bfloat16`) widens exactly: the PyTorch path and
    the fused step give bit for bit what they give from the float32 table."""
    import copy
    import random

    plain = bf16_model(seed=5)
    narrow = copy.deepcopy(plain)
    assert keep_embeddings_in_bfloat16(narrow) and narrow.tok_embeddings.weight.dtype == torch.bfloat16
    assert not keep_embeddings_in_bfloat16(store_weights_transposed(random_model(tiny_args(), 1)))  # float32 values
    prompt = random_prompt(random.Random(4), 30)
    for model in (plain, narrow):
        model.fused = None
    (tokens, logits), (narrow_tokens, narrow_logits) = greedy_run(plain, prompt), greedy_run(narrow, prompt)
    assert narrow_tokens == tokens and torch.equal(narrow_logits, logits)
    assert fused.attach(plain, module) == "on" and fused.attach(narrow, module) == "on"
    steps = []
    for model in (plain, narrow):  # steps of several tokens (speculative verifications) too
        cache = new_cache(model)
        with torch.inference_mode():
            prefill(model, cache, prompt)
            steps.append(model.step(prompt[:5], cache))
    assert torch.equal(steps[0], steps[1])
    assert greedy_run(narrow, prompt)[0] == greedy_run(plain, prompt)[0]


def test_the_float32_output_table_goes_while_the_step_is_on(module, random_prompt):
    """Released, the table is not held; prefill's logits then come from the packed table, cold and warm
    alike, and the tokens are those of the PyTorch step; restored, it is the float32 table again."""
    import random

    model = bf16_model(seed=6)
    table = model.output.weight.detach().clone()
    rng = random.Random(7)
    earlier = random_prompt(rng, 40)
    prompt = earlier[:30] + random_prompt(rng, 12)  # a session's next prompt: 30 tokens reused
    pytorch_tokens, _ = greedy_run(model, prompt)
    assert fused.attach(model, module) == "on"
    fused.release_output_table(model)
    assert model.output.weight.is_meta
    cold, cold_logits = greedy_run(model, prompt)
    warm, warm_logits = greedy_run(model, prompt, reuse=earlier)
    assert cold == warm == pytorch_tokens
    torch.testing.assert_close(warm_logits, cold_logits, rtol=0, atol=1e-4)
    fused.restore_output_table(model)
    assert torch.equal(model.output.weight, table) and model.output.weight.stride() == table.stride()
    fused.release_output_table(model)
    assert fused.attach(model, module) == "on"  # attached again (a benchmark's build=True): restored first
    assert torch.equal(model.output.weight, table)


def test_only_models_it_computes_exactly(module):
    model = store_weights_transposed(random_model(tiny_args(), 1))  # random float32 values
    assert "bfloat16 cannot represent" in fused.attach(model, module)
    assert model.fused is None
    quantized = quantize_int8(bf16_model(seed=1))
    store_weights_transposed(quantized)
    assert fused.attach(quantized, module) == "a quantized model"
    odd = bf16_model(dim=32, n_heads=4, n_kv_heads=2, hidden_dim=64)
    assert "multiples of 64" in fused.attach(odd, module)


def test_a_sliding_window_cache_takes_the_pytorch_path(module, random_prompt):
    import random

    model = bf16_model(sliding_window=24)
    assert fused.attach(model, module) == "on"
    a = model.args
    ring = KVCache(a.n_layers, a.n_kv_heads, a.head_dim, 24 + 8, 24, torch.float32)
    prompt = random_prompt(random.Random(3), 50)
    runs = []
    for use in (model.fused, None):
        model.fused = use
        ring.reset()
        with torch.inference_mode():
            steps = decode(model, ring, prefill(model, ring, prompt, chunk=8)[0], SamplingParams())
            runs.append([next(steps)[0] for _ in range(20)])  # the ring wraps: 50 + 20 positions in 32 slots
    assert runs[0] == runs[1]


def test_bad_input_raises_and_leaves_the_process_alive(module):
    model = bf16_model()
    assert fused.attach(model, module) == "on"
    cache = new_cache(model, capacity=8)
    with pytest.raises(RuntimeError, match="token id"):
        model.fused.step([40000], 0, model._rotation_pairs(0, 1), cache.k, cache.v, False)
    with pytest.raises(RuntimeError, match="past the cache"):
        model.fused.step([5, 6], 7, model._rotation_pairs(7, 2), cache.k, cache.v, False)
    with pytest.raises(ValueError, match="capacity"):
        model.step([5] * 9, cache)  # the cache's own check comes first
    assert len(model.greedy_step([5], cache)) == 1


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "off")
    assert fused.load(build=True) is None
    assert "turned off" in fused.attach(bf16_model(), fused.load())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_the_background_build_runs_at_a_lower_priority(module, monkeypatch):
    """The server's build thread (and the compiler it starts) must not slow the completions served meanwhile."""
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")
    seen, finished = {}, threading.Event()
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def done(built):
        seen["module"], seen["nice"] = built, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        finished.set()

    fused.build_in_background(done)
    assert finished.wait(120)
    assert seen["module"] is module
    assert seen["nice"] >= max(10, base)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # this thread is untouched


def test_a_load_never_waits_for_a_build_in_progress(monkeypatch, tmp_path):
    """The server reloading a model while its background build compiles gets the PyTorch step at once."""
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")
    monkeypatch.setattr(fused.STEP, "module", None)
    monkeypatch.setattr(fused.STEP, "build_dir", lambda: tmp_path)  # nothing built there
    result, returned = {}, threading.Event()

    def reload():
        result["module"] = fused.load()
        returned.set()

    with fused.STEP.build_lock:  # a compilation holds it
        threading.Thread(target=reload, daemon=True).start()
        assert returned.wait(10)
    assert result["module"] is None


def test_the_step_benchmark_times_both_steps_and_leaves_the_model_fused(module, random_prompt):
    """`bench engine`'s step_ms: both kinds timed for each T, the fused decoder back in place."""
    import random

    from codestral_lsp.tools.bench import step_costs

    model = bf16_model(dim=64, n_heads=4, n_kv_heads=2, hidden_dim=128)
    assert fused.attach(model, module) == "on"
    decoder = model.fused
    result = step_costs(model, lambda: new_cache(model), random_prompt(random.Random(3), 30), rounds=2, calls=3)
    assert set(result) == {"fused_1", "fused_5", "pytorch_1", "pytorch_5", "speedup_1", "speedup_5"}
    assert all(v > 0 for v in result.values())
    assert result["speedup_1"] == round(result["pytorch_1"] / result["fused_1"], 2)
    assert model.fused is decoder
