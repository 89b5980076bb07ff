"""`bench peers` and the GGUF writer on a tiny random model.

The oracle: greedy decoding of identical float32 weights gives identical tokens, so transformers'
(and llama.cpp's) agreement with our engine must be 1.0. A missing peer is reported, not fatal.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from codestral_lsp.cli import main
from codestral_lsp.tools.peers import bench_peers, peer_prompts, run_codestral, run_llama_cpp, run_transformers
from engine import Engine
from engine.checkpoints.gguf import CONTROL, GGUFError, convert, gguf_name
from engine.testing import make_checkpoint

SOURCE = "import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield name\n\n\nprint(list(walk('.')))\n"
KEYS = {"p50_ms", "p95_ms", "agreement"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def engine(checkpoint):
    return Engine.load(checkpoint, device="cpu", dtype="float32")


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "walk.py"
    path.write_text(SOURCE)
    return path


def test_prompts_are_the_servers_fim_prompts(engine, source):
    prompts = peer_prompts(engine, source, 3, max_tokens=8)
    tok = engine.tokenizer
    assert len(prompts) == 3
    for p in prompts:
        assert p[:2] == [tok.bos_id, tok.suffix_id] and tok.prefix_id in p and tok.middle_id not in p
    assert prompts[1][-1] != prompts[0][-1] or prompts[1] != prompts[0]  # one keystroke apart


def test_transformers_agrees_with_us_token_for_token(engine, source):
    pytest.importorskip("transformers")
    result, runs = bench_peers(engine, source, events=3, max_tokens=8, systems=("transformers", "transformers+lookup"))
    systems = result["systems"]
    assert result["events"] == 3 and list(systems) == ["codestral", "transformers", "transformers+lookup"]
    for name in systems:
        assert KEYS <= set(systems[name]) and systems[name]["agreement"] == 1.0, name
        assert 0 < systems[name]["p50_ms"] <= systems[name]["p95_ms"]
    assert systems["codestral"]["ratio"] == 1.0
    assert all(len(out) == 8 or 2 not in out for out in runs[0].outputs)


def test_cli_json_last_line_and_a_missing_peer(checkpoint, source, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    main(["bench", "peers", str(source), "--model", str(checkpoint), "--events", "2", "--max-tokens", "4",
          "--systems", "transformers,llama.cpp", "--threads", "1", "--json"])
    out = capsys.readouterr()
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["events"] == 2 and set(result["systems"]) == {"codestral", "transformers", "llama.cpp"}
    assert KEYS <= set(result["systems"]["codestral"])
    assert set(result["systems"]["llama.cpp"]) == {"error"} and "llama" in result["systems"]["llama.cpp"]["error"]
    assert "codestral: 2/2 events" in out.err  # progress goes to stderr


def test_missing_transformers_is_an_error_entry(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    run = run_transformers(engine, [[1, 13, 11, 1000]], max_tokens=4)
    assert run.error and "transformers is not installed" in run.error and not run.latencies_ms


def test_plot_writes_a_png(engine, source, tmp_path):
    pytest.importorskip("matplotlib")
    from codestral_lsp.tools.peers import plot

    _, runs = bench_peers(engine, source, events=2, max_tokens=2, systems=())
    png = plot(runs, tmp_path / "peers.png", "tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- GGUF ----------------------------------------------------------------------------------------


def test_gguf_holds_the_llama_tensors_hyperparameters_and_tokenizer(checkpoint, engine, tmp_path):
    gguf = pytest.importorskip("gguf")
    path = convert(checkpoint, tmp_path / "tiny.gguf")
    reader = gguf.GGUFReader(str(path))
    a = engine.args

    def field(key):
        return reader.get_field(key).contents()

    assert field("general.architecture") == "llama"
    assert (field("llama.context_length"), field("llama.embedding_length"), field("llama.block_count"),
            field("llama.feed_forward_length"), field("llama.attention.head_count"),
            field("llama.attention.head_count_kv"), field("llama.rope.dimension_count")) == (
        a.max_seq_len, a.dim, a.n_layers, a.hidden_dim, a.n_heads, a.n_kv_heads, a.head_dim)
    assert field("llama.rope.freq_base") == pytest.approx(a.rope_theta)
    assert field("llama.attention.layer_norm_rms_epsilon") == pytest.approx(a.norm_eps)
    assert field("tokenizer.ggml.model") == "llama"
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")) == (1, 2)
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    assert len(tokens) == a.vocab_size
    assert [tokens[i] for i in (1, 2, 11, 12, 13)] == ["<s>", "</s>", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"]
    assert all(types[i] == CONTROL for i in (1, 2, 3, 11, 12, 13))

    state = engine.model.state_dict()
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {gguf_name(n) for n in state}
    assert "blk.1.attn_output.weight" in tensors and "token_embd.weight" in tensors
    for name, t in state.items():
        got = tensors[gguf_name(name)]
        assert tuple(got.shape[::-1]) == tuple(t.shape)  # GGUF lists dimensions innermost first
        assert torch.equal(torch.from_numpy(got.data.copy()).reshape(t.shape), t)  # wq/wk rows unpermuted


def test_gguf_from_hf_and_mistral_folders_is_the_same_file(tmp_path):
    pytest.importorskip("gguf")
    files = [convert(make_checkpoint(tmp_path / fmt / "tiny", fmt=fmt, seed=3), tmp_path / f"{fmt}.gguf")
             for fmt in ("mistral", "hf")]
    assert files[0].read_bytes() == files[1].read_bytes()  # HF's wq/wk rows were un-permuted on reading


def test_gguf_refuses_a_sliding_window(tmp_path):
    pytest.importorskip("gguf")
    with pytest.raises(GGUFError, match="sliding window"):
        convert(make_checkpoint(tmp_path / "swa", sliding_window=64), tmp_path / "swa.gguf")


def _llama(path, n_ctx=512, **kwargs):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install "
                                    "'codestral-lsp[bench]'): the llama.cpp oracle is skipped")
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_threads_batch=1, verbose=False, **kwargs)


def test_llama_cpp_logits_equal_ours(checkpoint, engine, tmp_path):
    pytest.importorskip("gguf")
    path = convert(checkpoint, tmp_path / "tiny.gguf")
    llm = _llama(path, logits_all=True)
    prompt = engine.tokenizer.encode_fim("def walk(root):\n    for name in ", "\n        yield name\n")
    llm.eval(prompt)
    theirs = torch.from_numpy(llm.scores[: len(prompt)].copy())  # [T, V]
    ours = engine.logits(prompt)  # [T, V]
    assert (theirs - ours).abs().max().item() < 1e-3 * max(1.0, ours.abs().max().item())
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


def test_llama_cpp_greedy_tokens_equal_ours_with_prefix_reuse(engine, source):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: the llama.cpp oracle is skipped")
    prompts = peer_prompts(engine, source, 4, max_tokens=8)
    ours = run_codestral(engine, prompts, 8)
    theirs = run_llama_cpp(engine, prompts, 8, threads=1)
    assert theirs.error is None, theirs.error
    assert theirs.outputs == ours.outputs


# -- int8: what `bench engine --quantize int8` and `eval --quantize int8` report -------------------------


def test_bench_engine_reports_int8_weight_memory(checkpoint):
    from codestral_lsp.tools.bench import bench_engine

    fp32, int8 = (bench_engine(Engine.load(checkpoint, dtype="float32", quantize=q), prompt_tokens=16, new_tokens=4,
                               repeats=1, with_transformers=False) for q in (None, "int8"))
    assert (fp32["quantize"], int8["quantize"]) == ("none", "int8")
    # The 32k x 64 embedding table stays float32; every Linear (the output layer included) shrinks 4x.
    assert int8["weights_mb"] < 0.65 * fp32["weights_mb"]
    assert int8["codestral"]["decode_tokens_per_s"] > 0


def test_eval_runs_int8(checkpoint, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"task_id": "t/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
                                "suffix": "\n"}) + "\n")
    main(["eval", str(data), "--model", str(checkpoint), "--quantize", "int8", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 1 and 0.0 <= result["edit_similarity"] <= 1.0 and result["quantize"] == "int8"


def test_bench_engine_puts_llama_cpp_beside_us_on_a_gguf_file(checkpoint, tmp_path, capsys):
    llama_cpp = pytest.importorskip("llama_cpp")
    from engine.checkpoints.gguf import quantize_gguf

    path = quantize_gguf(checkpoint, tmp_path / "tiny-q8_0.gguf", "q8_0")
    defaults = llama_cpp.llama_model_default_params
    main(["bench", "engine", "--model", str(path), "--prompt-tokens", "40", "--new-tokens", "4", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert llama_cpp.llama_model_default_params is defaults  # unwrapped once llama.cpp has loaded
    speeds = {"prefill_tokens_per_s", "decode_tokens_per_s"}
    assert result["prompt_tokens"] == 40 and result["new_tokens"] == 4
    assert speeds <= set(result["codestral"]) and speeds <= set(result["llama.cpp"]), result.get("llama.cpp")
    assert all(result[s][k] > 0 for s in ("codestral", "llama.cpp") for k in speeds)
    assert result["llama.cpp"]["threads"] == result["threads"]
    assert result["ratio"] == pytest.approx({k: result["codestral"][k] / result["llama.cpp"][k] for k in speeds})
    assert "transformers" not in result  # it would run other (float) weights
    steps = result["step_ms"]
    assert steps["quant_1"] > 0 and steps["cost_5_over_1"] == pytest.approx(steps["quant_5"] / steps["quant_1"], abs=0.01)
    memory = result["memory"]
    assert memory["file_mb"] == round(path.stat().st_size / 2**20, 1)
    a = Engine.load(path, device="cpu").args  # one float16 cache of max_seq_len positions: k and v
    assert memory["kv_cache_mb"] == round(2 * a.n_layers * a.n_kv_heads * a.max_seq_len * a.head_dim * 2 / 2**20, 1)
    assert 0 < memory["rss_before_load_mb"] <= memory["rss_after_load_mb"] <= memory["rss_after_run_mb"] * 1.05
    assert memory["rss_over_file_plus_cache"] == pytest.approx(
        memory["rss_after_run_mb"] / (memory["file_mb"] + memory["kv_cache_mb"]), rel=0.01)
