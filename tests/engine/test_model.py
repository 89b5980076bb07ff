"""The model and the loader against an independent oracle: transformers' MistralForCausalLM.

Each checkpoint starts as a transformers model with random weights, saved by `save_pretrained` in
Hugging Face's own layout (optionally sharded). Our loader reads it and our logits must equal HF's.
For Mistral's format the test converts the same HF weights itself (see `hf_to_mistral_folder`).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.checkpoints.loading import find_checkpoint, load_model, save_mistral_checkpoint
from engine.checkpoints.tokenizer import Tokenizer
from engine.engine import Engine
from engine.testing import random_model, tiny_args, write_hf_checkpoint

transformers = pytest.importorskip("transformers")
from transformers import MistralConfig, MistralForCausalLM  # noqa: E402

EOS = 2
ATOL = 1e-4

# (name, config): GQA, MQA, no GQA, head_dim != dim // n_heads, windows shorter than the sequence, two thetas.
CONFIGS = {
    "gqa-theta1e4": dict(dim=64, n_heads=4, n_kv_heads=2, head_dim=16, window=None, theta=1e4),
    "mqa-window5-theta1e6": dict(dim=32, n_heads=4, n_kv_heads=1, head_dim=8, window=5, theta=1e6),
    "mha-window11-theta1e4": dict(dim=48, n_heads=3, n_kv_heads=3, head_dim=16, window=11, theta=1e4),
    "gqa-headdim-theta1e6": dict(dim=48, n_heads=4, n_kv_heads=2, head_dim=16, window=None, theta=1e6),
}
SEQ = 24  # longer than every window above


def hf_random_model(dim, n_heads, n_kv_heads, head_dim, window, theta, n_layers=2, hidden=96, seed=0):
    """A transformers Mistral with random weights, eager attention (the one that honours sliding_window)."""
    torch.manual_seed(seed)
    cfg = MistralConfig(vocab_size=32768, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers,
                        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, head_dim=head_dim,
                        max_position_embeddings=256, rope_theta=theta, sliding_window=window, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, bos_token_id=1, eos_token_id=EOS,
                        attn_implementation="eager")
    model = MistralForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)  # RMSNorm gains: not all ones, so a wrong norm shows
            else:
                p.normal_(0.0, 0.08)
    return model


def save_hf_folder(model: MistralForCausalLM, folder: Path, v3_path, sharded: bool) -> Path:
    if sharded:
        model.save_pretrained(folder, max_shard_size="1MB")
        assert (folder / "model.safetensors.index.json").is_file()
        assert len(list(folder.glob("model-*.safetensors"))) > 1
    else:
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
    shutil.copy(v3_path, folder / "tokenizer.model")
    return folder


def hf_rows_to_mistral(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo HF's rotate-half permutation, written independently of engine.checkpoints.loading.

    HF's rotary embedding pairs dimension i with i + D/2 inside each head; Mistral's pairs 2j with 2j + 1.
    So Mistral row 2j of a head is HF row j, and Mistral row 2j + 1 is HF row j + D/2.
    """
    d = w.shape[0] // n_heads
    order = [h * d + j // 2 + (j % 2) * (d // 2) for h in range(n_heads) for j in range(d)]
    return w[order]


def hf_to_mistral_folder(model: MistralForCausalLM, folder: Path, v3_path) -> Path:
    """Write the HF model as Mistral's folder: params.json, consolidated.safetensors, tokenizer.model.v3."""
    cfg = model.config
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out[f"layers.{i}.attention.wq.weight"] = hf_rows_to_mistral(sd[p + "self_attn.q_proj.weight"],
                                                                    cfg.num_attention_heads).contiguous()
        out[f"layers.{i}.attention.wk.weight"] = hf_rows_to_mistral(sd[p + "self_attn.k_proj.weight"],
                                                                    cfg.num_key_value_heads).contiguous()
        out[f"layers.{i}.attention.wv.weight"] = sd[p + "self_attn.v_proj.weight"]
        out[f"layers.{i}.attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[f"layers.{i}.feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
        out[f"layers.{i}.feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
        out[f"layers.{i}.feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
        out[f"layers.{i}.attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[f"layers.{i}.ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
    save_file(out, str(folder / "consolidated.safetensors"))
    params = {"dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers, "n_heads": cfg.num_attention_heads,
              "n_kv_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim, "hidden_dim": cfg.intermediate_size,
              "vocab_size": cfg.vocab_size, "norm_eps": cfg.rms_norm_eps,
              "rope_theta": cfg.rope_parameters["rope_theta"], "sliding_window": cfg.sliding_window,
              "max_seq_len": cfg.max_position_embeddings}
    (folder / "params.json").write_text(json.dumps(params))
    shutil.copy(v3_path, folder / "tokenizer.model.v3")
    return folder


def write_folder(fmt: str, model, folder: Path, v3_path) -> Path:
    if fmt == "mistral":
        return hf_to_mistral_folder(model, folder, v3_path)
    return save_hf_folder(model, folder, v3_path, sharded=fmt == "hf-sharded")


def hf_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float()  # [T, V]


def prompt_tokens(n: int, seed: int = 1) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [1] + torch.randint(1000, 32768, (n - 1,), generator=g).tolist()


# -- logits ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["hf", "hf-sharded", "mistral"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name, fmt, tmp_path, v3_path):
    c = CONFIGS[name]
    hf = hf_random_model(c["dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["window"], c["theta"])
    folder = write_folder(fmt, hf, tmp_path / "ckpt", v3_path)
    ckpt = find_checkpoint(folder)
    assert ckpt.format == ("mistral" if fmt == "mistral" else "hf")
    assert ckpt.args.sliding_window == c["window"]
    assert ckpt.args.rope_theta == c["theta"]
    assert ckpt.args.head_dim == c["head_dim"] and ckpt.args.n_kv_heads == c["n_kv_heads"]
    if fmt == "hf-sharded":
        assert len(ckpt.weight_files) > 1
    ours = load_model(ckpt, torch.float32, "cpu")
    tokens = prompt_tokens(SEQ)
    expected = hf_logits(hf, tokens)
    with torch.no_grad():
        got = ours(torch.tensor([tokens]))[0]
    assert got.shape == expected.shape == (SEQ, 32768)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # The same logits through the KV cache, three tokens per forward pass (a ring when windowed).
    eng = Engine(ours, Tokenizer(ckpt.tokenizer_file), prefill_chunk=3)
    cache = eng.new_cache()
    if c["window"]:
        assert cache.is_ring and cache.capacity < SEQ  # the ring really wraps
    with torch.no_grad():
        cached = ours.run(tokens, cache, chunk=3)
    torch.testing.assert_close(cached, expected, atol=ATOL, rtol=0)


def test_rope_theta_matters(tmp_path, v3_path):
    """Guard against a loader that ignores rope_theta: two thetas give different logits, both matched."""
    base = dict(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, window=None)
    tokens = prompt_tokens(SEQ)
    results = []
    for theta in (1e4, 1e6):
        hf = hf_random_model(**base, theta=theta, seed=3)
        folder = save_hf_folder(hf, tmp_path / f"t{int(theta)}", v3_path, sharded=False)
        eng = Engine.load(folder, device="cpu", dtype="float32")
        assert eng.args.rope_theta == theta
        got = eng.logits(tokens)
        torch.testing.assert_close(got, hf_logits(hf, tokens), atol=ATOL, rtol=0)
        results.append(got)
    assert (results[0] - results[1]).abs().max() > 1e-3


def test_mistral_format_round_trip_through_hf_writer(tmp_path):
    """Our own model -> write_hf_checkpoint -> transformers.from_pretrained: same logits; and both our
    loaders (HF folder and save_mistral_checkpoint's folder) give back the same model."""
    args = tiny_args(dim=48, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, sliding_window=7, rope_theta=1e6)
    model = random_model(args, seed=5)
    tokens = prompt_tokens(SEQ, seed=2)
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0]
    hf_dir = write_hf_checkpoint(model, tmp_path / "hf", shards=2)
    assert (hf_dir / "model.safetensors.index.json").is_file()
    hf = MistralForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).eval()
    torch.testing.assert_close(hf_logits(hf, tokens), ours, atol=ATOL, rtol=0)
    reloaded = load_model(find_checkpoint(hf_dir), torch.float32, "cpu")
    mistral_dir = save_mistral_checkpoint(model, tmp_path / "mistral", hf_dir / "tokenizer.model", dtype=torch.float32)
    from_mistral = load_model(find_checkpoint(mistral_dir), torch.float32, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(torch.tensor([tokens]))[0], ours, atol=ATOL, rtol=0)
        torch.testing.assert_close(from_mistral(torch.tensor([tokens]))[0], ours, atol=ATOL, rtol=0)


# -- greedy generation --------------------------------------------------------------------------------

def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """transformers' greedy tokens, cut before the first EOS (our engine does not return the EOS)."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n, eos_token_id=EOS,
                             pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    new = out[0, len(prompt):].tolist()
    return new[: new.index(EOS)] if EOS in new else new


def make_eos_likely(hf, prompt: list[int], step: int) -> None:
    """Swap lm_head rows of EOS and of the greedy token at `step`, so greedy decoding emits EOS there
    (or earlier, if that token came earlier): the EOS path is exercised for real."""
    target = hf_greedy(hf, prompt, step + 1)[step]
    with torch.no_grad():
        w = hf.lm_head.weight
        w[[EOS, target]] = w[[target, EOS]]


@pytest.mark.parametrize("eos_at", [None, 4])
@pytest.mark.parametrize("name", ["gqa-theta1e4", "mqa-window5-theta1e6"])
def test_greedy_tokens_match_transformers_generate(name, eos_at, tmp_path, v3_path):
    c = CONFIGS[name]
    hf = hf_random_model(c["dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["window"], c["theta"], seed=7)
    prompt = prompt_tokens(12, seed=4)
    n = 12
    if eos_at is not None:
        make_eos_likely(hf, prompt, eos_at)
    expected = hf_greedy(hf, prompt, n)
    if eos_at is not None:
        assert len(expected) <= eos_at < n  # the oracle stopped at EOS
    else:
        assert len(expected) == n
    folder = save_hf_folder(hf, tmp_path / "ckpt", v3_path, sharded=False)
    # prefill_chunk 16: with window 5 the ring has 21 slots, so prompt + completion (24) wraps it, and a
    # rollback of up to 17 tokens stays exact (deeper ones re-prefill: tested in test_kv_cache.py).
    eng = Engine.load(folder, device="cpu", dtype="float32", prefill_chunk=16)
    reason = "eos" if len(expected) < n else "max_tokens"

    cold = eng.stream_tokens(prompt, max_tokens=n)
    pieces = list(cold)
    assert cold.tokens == expected
    assert cold.stats["stop_reason"] == reason
    assert "".join(pieces) == cold.text == eng.tokenizer.decode(expected)

    # With a session cache: a first run, the same prompt again (all but one token reused), then an edit.
    for i in range(2):
        warm = eng.stream_tokens(prompt, max_tokens=n, session="doc")
        list(warm)
        assert warm.tokens == expected
        assert warm.stats["reused_tokens"] == (0 if i == 0 else len(prompt) - 1)
    edited = prompt[:-3] + prompt_tokens(5, seed=9)[1:]
    warm = eng.stream_tokens(edited, max_tokens=n, session="doc")
    list(warm)
    assert warm.stats["reused_tokens"] == len(prompt) - 3
    assert warm.tokens == hf_greedy(hf, edited, n)


# -- bfloat16 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["hf", "mistral"])
def test_bfloat16_loads_and_runs(fmt, tmp_path, v3_path):
    c = CONFIGS["mqa-window5-theta1e6"]
    hf = hf_random_model(c["dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["window"], c["theta"])
    folder = write_folder(fmt, hf, tmp_path / "ckpt", v3_path)
    fp32 = Engine.load(folder, device="cpu", dtype="float32")
    bf16 = Engine.load(folder, device="cpu", dtype="bfloat16", prefill_chunk=4)
    assert bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    assert bf16.new_cache().k.dtype == torch.bfloat16
    tokens = prompt_tokens(SEQ)
    ref, got = fp32.logits(tokens), bf16.logits(tokens)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    scale = ref.abs().max()
    assert (got - ref).abs().max() < 0.03 * scale  # bf16 keeps ~3 significant digits (measured: ~0.013)
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert cos.min() > 0.999
    # It also generates, through the ring cache, with or without a session.
    cold = bf16.stream_tokens(tokens, max_tokens=6)
    list(cold)
    warm = bf16.stream_tokens(tokens, max_tokens=6, session="s")
    list(warm)
    assert len(cold.tokens) == 6 or cold.stats["stop_reason"] == "eos"
    assert warm.tokens == cold.tokens


@pytest.mark.parametrize("variant", ["float32", "transposed", "bfloat16", "int8", "ring"])
def test_decode_step_equals_forward(variant):
    """The decode loop's path (`step`: one token, or a few to verify) gives the logits of a general
    forward call, call after call, with weights as every loading path leaves them (transposed for the
    CPU, bf16, int8), across rollbacks, and on a ring (where it is the general call)."""
    from engine.kv_cache import KVCache
    from engine.model import store_weights_transposed
    from engine.quantize import quantize_int8
    from engine.testing import random_model, tiny_args

    window = 6 if variant == "ring" else None
    model = random_model(tiny_args(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64,
                                   sliding_window=window), seed=3).eval()
    dtype = torch.bfloat16 if variant == "bfloat16" else torch.float32
    model = model.to(dtype)
    if variant == "transposed":
        store_weights_transposed(model)
        for layer in model.layers:  # fused products whose separate weights are views: no memory added
            a, f = layer.attention, layer.feed_forward
            assert a.wqkv.untyped_storage().data_ptr() == a.wv.weight.untyped_storage().data_ptr()
            assert f.w13.untyped_storage().data_ptr() == f.w3.weight.untyped_storage().data_ptr()
    if variant == "int8":
        quantize_int8(model)
    a = model.args
    caches = [KVCache(a.n_layers, a.n_kv_heads, a.head_dim, 8 if window else 64, window, dtype) for _ in range(2)]
    assert caches[0].is_ring == (variant == "ring")
    rng = random.Random(5)
    prompt = [rng.randrange(1000, 32768) for _ in range(5)]
    with torch.inference_mode():
        for cache in caches:
            model(torch.tensor([prompt]), 0, cache)
            cache.tokens.extend(prompt)
        for n in [1, 1, 3, 1, 2, 1, 1, 3]:  # decode steps and verifications of 2-3 tokens, past the ring's 8 slots
            tokens = [rng.randrange(1000, 32768) for _ in range(n)]
            general = model(torch.tensor([tokens]), len(caches[0].tokens), caches[0])[0]  # [n, V]
            step = model.step(tokens, caches[1], last_only=n == 1)  # a decode step: the last row only
            for cache in caches:
                cache.tokens.extend(tokens)
            assert step.dtype == torch.float32 and step.shape == general.shape
            torch.testing.assert_close(step, general, rtol=0, atol=1e-5 if dtype == torch.float32 else 2e-2)
            if n == 3:  # a rejected verification: roll back one position in both
                for cache in caches:
                    assert cache.truncate(len(cache.tokens) - 1)
        assert caches[1].used == caches[0].used
