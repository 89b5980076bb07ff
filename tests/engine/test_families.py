"""Other model families (engine/checkpoints/families.py): tiny random checkpoints written by transformers,
loaded by the engine, checked against transformers' own forward pass and across our decode paths."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from engine import CheckpointError, Engine  # noqa: E402
from engine.checkpoints.families import MISTRAL, family_of  # noqa: E402
from engine.checkpoints.loading import find_checkpoint  # noqa: E402
from engine.testing import make_checkpoint  # noqa: E402

from families_util import write_hf_model  # noqa: E402

VOCAB = 640  # above the tokenizers' ~600 ids: the padded rows of a real model's table


def tiny(config_class, **overrides):
    fields = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  initializer_range=0.2, rms_norm_eps=1e-5, tie_word_embeddings=False)
    fields.update(overrides)
    return config_class(**fields)


CASES = {
    "llama": lambda: (tiny(transformers.LlamaConfig, rope_theta=1e4), "deepseek"),
    "llama-linear-tied": lambda: (tiny(transformers.LlamaConfig, tie_word_embeddings=True,
                                       rope_scaling={"rope_type": "linear", "factor": 4.0}), "codellama"),
    "llama3-rope": lambda: (tiny(transformers.LlamaConfig, rope_theta=5e5, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}), "deepseek"),
    "qwen2": lambda: (tiny(transformers.Qwen2Config, rope_theta=1e6), "qwen2"),
    "qwen2-tied": lambda: (tiny(transformers.Qwen2Config, rope_theta=1e6, tie_word_embeddings=True), "qwen2"),
    "qwen2-yarn": lambda: (tiny(transformers.Qwen2Config, rope_theta=1e6, rope_scaling={  # prompts pass 64
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}), "qwen2"),
    "mixtral": lambda: (tiny(transformers.MixtralConfig, num_local_experts=4, num_experts_per_tok=2), "codellama"),
    "mixtral-window": lambda: (tiny(transformers.MixtralConfig, num_local_experts=3, num_experts_per_tok=2,
                                    sliding_window=64), "qwen2"),
    "starcoder2": lambda: (tiny(transformers.Starcoder2Config, sliding_window=64, bos_token_id=0, eos_token_id=0,
                                hidden_act="gelu_pytorch_tanh", norm_epsilon=1e-5, use_bias=True,
                                tie_word_embeddings=True), "starcoder"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    """(transformers' model, our engine) of one tiny checkpoint."""
    folder = tmp_path_factory.mktemp(request.param)
    config, tokenizer = CASES[request.param]()
    reference = write_hf_model(folder, config, tokenizer)
    return reference, Engine.load(folder, device="cpu", dtype="float32")


def prompt(n: int, seed: int = 0) -> list[int]:
    return torch.randint(0, 590, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("n", [1, 7, 300])
def test_logits_equal_transformers(pair, n):
    reference, eng = pair
    ids = prompt(n)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].float()
    got = eng.logits(ids)
    assert got.shape == (n, VOCAB)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()


def reference_greedy(reference, ids: list[int], stops, n: int = 32) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(n):
            token = int(reference(torch.tensor([ids + out])).logits[0, -1].argmax())
            if token in stops:
                break
            out.append(token)
    return out


def test_greedy_equal_across_paths(pair):
    """32 greedy tokens: cold, with the session's cache reused, speculative (n-gram and a draft model)."""
    reference, eng = pair
    ids = prompt(40, seed=1)
    expected = reference_greedy(reference, ids, eng.tokenizer.stop_ids)

    def tokens(**kwargs):
        gen = eng.stream_tokens(ids, max_tokens=32, **kwargs)
        [*gen]
        return gen.tokens

    assert tokens() == expected
    tokens(session="doc")
    assert tokens(session="doc") == expected  # reuses the whole prompt
    assert eng.sessions.get("doc").tokens[:len(ids)] == ids
    assert tokens(speculative="ngram", session="doc") == expected
    eng.attach_draft(Engine.load(eng.checkpoint.folder, device="cpu", dtype="float32"))
    try:
        assert tokens(speculative="draft") == expected
    finally:
        eng.draft = None


def test_fim_prompt_is_the_template(pair):
    _, eng = pair
    tok = eng.tokenizer
    vocab = tok.tk.get_vocab()
    t = tok.template
    expected = [*tok.start_ids, vocab[t.prefix], *tok.encode("def f(x):\n    "), vocab[t.suffix],
                *tok.encode_infill("\nprint(f(1))\n"), vocab[t.middle]]
    assert tok.encode_fim("def f(x):\n    ", "\nprint(f(1))\n") == expected
    completion = eng.complete("def f(x):\n    ", "\n", max_tokens=8)
    assert completion.stats["prompt_tokens"] == len(tok.encode_fim("def f(x):\n    ", "\n"))


def test_families_read_their_configs(pair):
    reference, eng = pair
    c, a = reference.config, eng.args
    assert a.tied_embeddings == bool(c.tie_word_embeddings)
    assert a.qkv_bias == (c.model_type in ("qwen2", "starcoder2")) == (eng.model.layers[0].attention.wk.bias is not None)
    assert (a.norm, a.mlp, a.dense_bias) == (("layer", "gelu", True) if c.model_type == "starcoder2" else ("rms", "swiglu", False))
    assert (a.n_experts, a.n_active_experts) == ((c.num_local_experts, c.num_experts_per_tok)
                                                 if c.model_type == "mixtral" else (0, 2))
    assert eng.checkpoint.family.name == eng.info()["family"] == c.model_type
    assert eng.info()["fim_template"] == eng.tokenizer.template.name


def test_mistral_is_an_entry_and_a_config_naming_nothing_stays_mistral():
    assert family_of({"architectures": ["MistralForCausalLM"]}) is MISTRAL
    assert family_of({"model_type": "mistral"}) is MISTRAL
    assert family_of({}) is MISTRAL


def test_unknown_architecture_is_one_clear_error(tmp_path):
    make_checkpoint(tmp_path, "hf")
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="architecture 'GPTNeoXForCausalLM' is not supported") as err:
        find_checkpoint(tmp_path)
    assert "\n" not in str(err.value)


def test_unsupported_rope_scaling_is_one_clear_error(tmp_path):
    config, tokenizer = CASES["llama"]()
    write_hf_model(tmp_path, config, tokenizer)
    data = json.loads((tmp_path / "config.json").read_text())
    data["rope_parameters"] = {"rope_type": "longrope", "factor": 4.0, "rope_theta": 1e4}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="rope scaling 'longrope' is not supported"):
        find_checkpoint(tmp_path)


@pytest.mark.parametrize("case", ["llama-linear-tied", "llama3-rope"])
def test_fused_step_runs_rope_scaling_and_tied_tables(tmp_path, monkeypatch, case):
    """Rotations and tables come from Python, so the fused step covers both: same greedy tokens."""
    from engine import fused

    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")
    if fused.load(build=True) is None:
        pytest.skip(f"the fused step is not built here: {fused.failure()}")
    config, tokenizer = CASES[case]()
    reference = write_hf_model(tmp_path, config, tokenizer)
    with torch.no_grad():  # values that bfloat16 holds exactly, as the fused step requires
        for p in reference.parameters():
            p.copy_(p.bfloat16().float())
    reference.save_pretrained(str(tmp_path), safe_serialization=True)
    eng = Engine.load(tmp_path, device="cpu", dtype="float32")
    assert eng.use_fused_step() == "on"
    ids = prompt(40, seed=2)
    expected = reference_greedy(reference, ids, eng.tokenizer.stop_ids)
    gen = eng.stream_tokens(ids, max_tokens=32, session="doc")
    [*gen]
    assert gen.tokens == expected


def test_missing_tensor_is_one_clear_error(tmp_path):
    from safetensors.torch import load_file, save_file

    config, tokenizer = CASES["qwen2"]()
    write_hf_model(tmp_path, config, tokenizer)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["model.layers.1.self_attn.k_proj.bias"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="tensors missing from the weights: layers.1.attention.wk.bias") as err:
        Engine.load(tmp_path, device="cpu", dtype="float32")
    assert "\n" not in str(err.value)


def test_a_long_line_is_trimmed_inside_the_template(pair):
    """A prefix of one line longer than the context keeps its end, and the template stays whole."""
    _, eng = pair
    tok, room = eng.tokenizer, eng.max_context - 16 - 1
    prefix = "x = [" + "1, " * 3000
    prompt_ids = eng.fim_tokens(prefix, "]\n", max_tokens=16)
    if eng.args.sliding_window:  # a ring cache takes any length: nothing is trimmed
        assert prompt_ids == tok.encode_fim(prefix, "]\n")
    assert len(prompt_ids) <= room or eng.args.sliding_window
    assert prompt_ids[-1] == tok.middle_id and prompt_ids[:len(tok.start_ids) + 1] == [*tok.start_ids, tok.prefix_id]


def test_the_family_fields_survive_a_mistral_params_file(pair, tmp_path):
    from engine.checkpoints.loading import save_mistral_checkpoint
    from engine.config import ModelArgs

    _, eng = pair
    save_mistral_checkpoint(eng.model, tmp_path, dtype=torch.float32)
    params = json.loads((tmp_path / "params.json").read_text())
    assert params.get("rope_scaling") == eng.args.rope_scaling
    assert ModelArgs.from_mistral_params(params) == eng.args


def test_qwen2_sliding_window_is_one_clear_error(tmp_path):
    config, tokenizer = CASES["qwen2"]()
    write_hf_model(tmp_path, config, tokenizer)
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(use_sliding_window=True, sliding_window=64)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="use_sliding_window"):
        find_checkpoint(tmp_path)


def test_int8_and_fused_step_refuse_biases(tmp_path):
    from engine import fused

    config, tokenizer = CASES["qwen2"]()
    write_hf_model(tmp_path, config, tokenizer)
    eng = Engine.load(tmp_path, device="cpu", dtype="float32")
    assert "biases on q, k and v" in fused.unsupported(eng.model)
    with pytest.raises(ValueError, match="int8 does not cover layers with biases"):
        Engine.load(tmp_path, device="cpu", dtype="float32", quantize="int8")


def test_int8_covers_llama_with_rope_scaling_and_tied_tables(tmp_path):
    config, tokenizer = CASES["llama-linear-tied"]()
    reference = write_hf_model(tmp_path, config, tokenizer)
    eng = Engine.load(tmp_path, device="cpu", dtype="float32", quantize="int8")
    ids = prompt(20)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0]
    got = eng.logits(ids)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()  # int8 rounding, not a wrong model


def test_the_gguf_writer_refuses_other_families(tmp_path):
    from engine.checkpoints.gguf import GGUFError, convert

    config, tokenizer = CASES["qwen2"]()
    write_hf_model(tmp_path, config, tokenizer)
    with pytest.raises(GGUFError, match="Mistral's family"):
        convert(tmp_path, tmp_path / "out.gguf")


def test_mixtral_runs_each_expert_on_its_routed_tokens_only(tmp_path):
    from engine import fused

    config, tokenizer = CASES["mixtral"]()
    reference = write_hf_model(tmp_path, config, tokenizer)
    eng = Engine.load(tmp_path, device="cpu", dtype="float32")
    rows = []
    for layer in eng.model.layers:
        for expert in layer.feed_forward.experts:
            expert.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    eng.logits(prompt(7))
    assert sum(rows) == 7 * 2 * config.num_hidden_layers  # top-2: each token through two experts a layer
    assert "mixture of experts" in fused.unsupported(eng.model)
    quantized = Engine.load(tmp_path, device="cpu", dtype="float32", quantize="int8")
    ids = prompt(20)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0]
    # int8 rounding (a rounded attention may still send a token to another expert): close on average
    assert (quantized.logits(ids) - expected).abs().mean() < 0.02 * expected.abs().max()


def test_fused_step_and_int8_refuse_starcoder2(tmp_path):
    from engine import fused

    config, tokenizer = CASES["starcoder2"]()
    write_hf_model(tmp_path, config, tokenizer)
    eng = Engine.load(tmp_path, device="cpu", dtype="float32")
    assert "LayerNorm, GELU MLPs and biases" in fused.unsupported(eng.model)
    with pytest.raises(ValueError, match="int8 does not cover layers with biases"):
        Engine.load(tmp_path, device="cpu", dtype="float32", quantize="int8")


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"mlp_bias": True}, "biases on the attention output or the MLP are not supported"),
])
def test_what_a_family_cannot_run_is_one_clear_error(tmp_path, change, message):
    config, tokenizer = CASES["llama"]()
    write_hf_model(tmp_path, config, tokenizer)
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(change)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message):
        find_checkpoint(tmp_path)


@pytest.mark.parametrize("rope", [
    {"factor": 4.0, "original_max_position_embeddings": 32768},  # Qwen2.5-Coder's long-context setting
    {"factor": 8.0, "original_max_position_embeddings": 4096, "beta_fast": 16, "beta_slow": 2, "truncate": False},
    {"factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 0.8},
    {"factor": 2.0, "original_max_position_embeddings": 2048, "attention_factor": 1.25},
])
def test_yarn_frequencies_and_scale_equal_transformers(rope):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from engine.checkpoints.families import rope_scaling
    from engine.model import rope_table

    config = transformers.Qwen2Config(hidden_size=1024, num_attention_heads=8, rope_theta=1e6,
                                      max_position_embeddings=131072, rope_scaling={"rope_type": "yarn", **rope})
    inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    table = rope_table(128, 3, 1e6, scaling=rope_scaling(config.to_dict()))  # [3, 64] complex
    assert torch.allclose(table[1].angle(), inv_freq.float(), rtol=1e-6, atol=0)
    assert torch.allclose(table.abs(), torch.full((3, 64), float(factor)), rtol=1e-6, atol=0)


# -- transformers beside a random model of each family (`bench engine --random-preset`) ------------------

def tiny_preset(**fields):
    from engine.config import ModelArgs

    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, hidden_dim=96, vocab_size=VOCAB,
                rope_theta=1e4, max_seq_len=1024)
    return ModelArgs(**{**base, **fields})


# The families' switches as the ~1B presets set them (engine/config.py), at a size a test runs in
# milliseconds; the Qwen2 one with a table larger than Codestral's tokenizer, as Qwen2.5-Coder's is.
TINY_PRESETS = {
    "MistralForCausalLM": lambda: tiny_preset(sliding_window=64),
    "LlamaForCausalLM": lambda: tiny_preset(n_kv_heads=4, norm_eps=1e-6, rope_theta=1e5,
                                            rope_scaling={"type": "linear", "factor": 4.0}),
    "Qwen2ForCausalLM": lambda: tiny_preset(vocab_size=40000, n_kv_heads=1, norm_eps=1e-6, rope_theta=1e6,
                                            qkv_bias=True, tied_embeddings=True),
    "MixtralForCausalLM": lambda: tiny_preset(rope_theta=1e6, n_experts=8, n_active_experts=2),
    "Starcoder2ForCausalLM": lambda: tiny_preset(norm="layer", mlp="gelu", qkv_bias=True, dense_bias=True,
                                                 tied_embeddings=True, sliding_window=64),
}


def preset_engine(args):
    from engine.model import store_weights_transposed
    from engine.testing import preset_tokenizer, random_model

    model = store_weights_transposed(random_model(args, seed=3))  # the layout `bench engine` measures
    return Engine(model, preset_tokenizer(args.vocab_size))


@pytest.mark.parametrize("cls", sorted(TINY_PRESETS))
def test_transformers_model_is_the_familys_class_with_our_weights(cls):
    """`peers.transformers_model` (what `bench engine` runs beside us) builds the family's own class
    from the engine's args and weights: the same model, logits within 1e-4 in float32."""
    from codestral_lsp.tools.peers import transformers_model

    eng = preset_engine(TINY_PRESETS[cls]())
    reference = transformers_model(eng)
    assert type(reference).__name__ == cls
    for n in (1, 90):
        ids = prompt(n, seed=n)
        with torch.no_grad():
            expected = reference(torch.tensor([ids])).logits[0].float()
        got = eng.logits(ids)
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (cls, (got - expected).abs().max())


@pytest.mark.parametrize("cls", sorted(TINY_PRESETS))
def test_each_family_writes_the_config_it_reads(cls):
    from engine.checkpoints.families import family_of, family_of_args

    args = TINY_PRESETS[cls]()
    family = family_of_args(args)
    config = family.write_config(args)
    assert config["architectures"] == [cls] and family_of(config) is family
    assert family.read_args(config) == args


def test_family_presets_have_the_published_shapes():
    """Qwen2.5-Coder-1.5B and DeepSeek-Coder-1.3B as their config.json files give them (parameter
    counts as published, less Qwen2's q/k/v biases), and Mixtral's small preset beside its dense twin."""
    from engine.checkpoints.families import family_of_args
    from engine.config import PRESETS

    qwen, deepseek = PRESETS["qwen2.5-coder-1.5b"], PRESETS["deepseek-coder-1.3b"]
    assert family_of_args(qwen).name == "qwen2" and qwen.n_params() == 1_543_656_960
    assert (qwen.dim, qwen.n_layers, qwen.n_heads, qwen.n_kv_heads, qwen.head_dim, qwen.hidden_dim,
            qwen.vocab_size) == (1536, 28, 12, 2, 128, 8960, 151936)
    assert family_of_args(deepseek).name == "llama" and deepseek.n_params() == 1_346_471_936
    assert deepseek.rope_scaling == {"type": "linear", "factor": 4.0} and deepseek.rope_theta == 1e5
    sparse, dense = PRESETS["mixtral-8x-small"], PRESETS["mixtral-8x-small-active"]
    assert family_of_args(sparse).name == "mixtral" and 1.0e9 < sparse.n_params() < 1.3e9
    assert sparse.n_active_experts * sparse.hidden_dim == dense.hidden_dim and dense.n_experts == 0
    experts = 3 * sparse.dim * sparse.hidden_dim * sparse.n_layers  # one expert's matrices, every layer
    router = sparse.dim * sparse.n_experts * sparse.n_layers
    assert sparse.n_params() - dense.n_params() == (sparse.n_experts - sparse.n_active_experts) * experts + router


def test_bench_engine_random_preset_beside_transformers(monkeypatch, capsys):
    """`bench engine --random-preset` of a sparse model with a table larger than Codestral's tokenizer:
    transformers' Mixtral beside us, and the PyTorch step's cost of 1 and 5 tokens."""
    from codestral_lsp.cli import main
    from engine.config import PRESETS

    monkeypatch.setitem(PRESETS, "tiny-mixtral", tiny_preset(vocab_size=40000, n_experts=8))
    monkeypatch.setitem(PRESETS, "tiny-dense", tiny_preset(vocab_size=40000, hidden_dim=2 * 96))
    main(["bench", "engine", "--random-preset", "tiny-mixtral", "--prompt-tokens", "24", "--new-tokens", "4",
          "--step-beside", "tiny-dense", "--repeats", "2", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    speeds = {"prefill_tokens_per_s", "decode_tokens_per_s"}
    assert speeds <= set(result["codestral"]) and speeds <= set(result["transformers"]), result.get("transformers")
    assert result["ratio"] == pytest.approx({k: result["codestral"][k] / result["transformers"][k] for k in speeds})
    steps = result["step_ms"]
    assert steps["pytorch_1"] > 0 and steps["cost_5_over_1"] == pytest.approx(steps["pytorch_5"] / steps["pytorch_1"],
                                                                               abs=0.01)
    beside = result["step_ms_beside"]  # the sparse model and its dense twin, interleaved
    assert beside["tiny-mixtral_1"] > 0 and beside["tiny-dense_5"] > 0
    assert beside["ratio_1"] == pytest.approx(beside["tiny-mixtral_1"] / beside["tiny-dense_1"], rel=0.01)


def test_mixtral_decode_row_takes_its_two_experts_directly():
    """One row (a decode step) skips the gather and scatter of the general path: the same output."""
    from engine.model import MixtureOfExperts

    torch.manual_seed(0)
    moe = MixtureOfExperts(tiny_preset(n_experts=8)).eval()
    x = torch.randn(5, 64)
    with torch.no_grad():
        together = moe(x[None])[0]  # five rows: the general path
        alone = torch.cat([moe(x[i:i + 1][None])[0] for i in range(5)])
    assert torch.allclose(alone, together, atol=1e-6, rtol=1e-5)
