"""GGUF files of the `llama` architecture, quantized by llama.cpp, run by our engine: against llama.cpp
on the same file, and against llama.cpp on a float32 file of the very weights we decoded.

Two oracles, because llama.cpp's products on quantized files are not ours: it rounds each block of
activations to int8 (Q8_0 for Q8_0/Q4_0 weights, Q8_K for the K-quants) before the integer dot
products, where we multiply in float32. That rounding (1/254 of a block's largest activation per
element) compounds over the 15 products of a token in the tiny model; measured worst logit
differences on it over ten prompts (tests/engine/gguf_report.py) were 0.021 (Q8_0), 0.023 (Q4_0),
0.031 (Q4_K_M), 0.034 (Q5_K_M), 0.027 (Q6_K) with logits up to 1.74, at most 2.0% of the largest
logit, so the tolerance is 3% of it. The second oracle removes that
rounding: llama.cpp on float32 weights equal to our decoded blocks must agree to float32 precision
(1e-3 relative, as the float32 export test in tests/server/test_peers.py), which checks the block
decoding, the tensor layout and the whole forward pass exactly.
"""

from __future__ import annotations

import pytest
import torch

from engine import CheckpointError, Engine
from engine.checkpoints.gguf import convert
from engine.checkpoints.tokenizer import v3_tokenizer_path
from engine import quant_kernels
from engine.qlinear import QuantEmbedding, QuantLinear, attach_kernels
from engine.testing import make_checkpoint

from gguf_util import llama, llama_greedy, llama_logits, quantize, write_dequantized

pytest.importorskip("gguf")

PROMPTS = [("def add(a, b):\n    return ", "\n"), ("for i in range(", "):\n    print(i)\n"),
           ("class Point:\n    def __init__(self, x, y):\n        self.", "\n")]
TYPES = ["q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"]
# The ggml types llama.cpp's quantizer gives the matrices of each file type (the output table and
# some attention/FFN matrices of the _M mixes keep more bits; dims are multiples of 256 so the K-quants apply).
EXPECTED_TYPES = {"q8_0": {"Q8_0"}, "q4_0": {"Q4_0", "Q6_K"}, "q4_k_m": {"Q4_K", "Q6_K"},
                  "q5_k_m": {"Q5_K", "Q6_K"}, "q6_k": {"Q6_K"}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-llama")
    ckpt = make_checkpoint(folder / "ckpt", dim=256, hidden_dim=512, n_layers=2)
    f32 = convert(ckpt, folder / "f32.gguf")
    return folder, f32


def mapped_from(path, tensor) -> bool:
    """The tensor's bytes lie in a mapping of the file `path` (/proc/self/maps)."""
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()
    for line in open("/proc/self/maps"):
        fields = line.split()
        low, high = (int(a, 16) for a in fields[0].split("-"))
        if len(fields) >= 6 and fields[5] == str(path.resolve()) and low <= start and end <= high:
            return True
    return False


def _tokens(eng, ids, **kwargs) -> list[int]:
    gen = eng.stream_tokens(ids, max_tokens=12, **kwargs)
    [*gen]
    return gen.tokens


def _file(files, kind):
    folder, f32 = files
    return f32 if kind == "f32" else quantize(f32, folder / f"{kind}.gguf", kind)


def test_float32_file_is_the_folder_exactly(files):
    folder, f32 = files
    eng, ref = Engine.load(f32, device="cpu"), Engine.load(folder / "ckpt", device="cpu", dtype="float32")
    ids = eng.tokenizer.encode_fim(*PROMPTS[0])
    assert ids == ref.tokenizer.encode_fim(*PROMPTS[0])
    assert torch.equal(eng.logits(ids), ref.logits(ids))


@pytest.mark.parametrize("kind", TYPES)
def test_quantized_logits_against_llama_cpp(files, kind, tmp_path):
    path = _file(files, kind)
    eng = Engine.load(path, device="cpu")
    attach_kernels(eng.model, None)  # the float32 tile path, whose numerics the exact oracle shares
    model = eng.model
    kinds = {m.type_name for m in model.modules() if isinstance(m, QuantLinear)}
    assert kinds == EXPECTED_TYPES[kind]
    assert isinstance(model.tok_embeddings, QuantEmbedding)
    # No copy: the blocks lie in the process's memory map of the file (the reader's parsed metadata is gone).
    assert eng.checkpoint.gguf is None
    assert mapped_from(path, model.layers[1].feed_forward.w2.raw) and mapped_from(path, model.tok_embeddings.raw)

    same_file = llama(path, logits_all=True)
    exact = llama(write_dequantized(model, v3_tokenizer_path(), tmp_path / "decoded.gguf"), logits_all=True)
    for prefix, suffix in PROMPTS[:2]:
        ids = eng.tokenizer.encode_fim(prefix, suffix)
        ours = eng.logits(ids)  # [T, V]
        scale = ours.abs().max().item()
        assert (llama_logits(same_file, ids) - ours).abs().max().item() < 0.03 * scale
        assert (llama_logits(exact, ids) - ours).abs().max().item() < 1e-3 * max(1.0, scale)


@pytest.mark.parametrize("kind", ["q8_0", "q4_k_m"])
def test_greedy_tokens_and_cache_paths(files, kind, tmp_path):
    """Greedy tokens equal llama.cpp's on the decoded weights; a warm session and speculative decoding
    give the cold run's tokens (decode steps of 1 and of several rows through QuantLinear)."""
    eng = Engine.load(_file(files, kind), device="cpu")
    attach_kernels(eng.model, None)  # the float32 tile path (the kernels' own test follows)
    exact = llama(write_dequantized(eng.model, v3_tokenizer_path(), tmp_path / "decoded.gguf"))
    ids = eng.tokenizer.encode_fim(*PROMPTS[2])

    cold = _tokens(eng, ids)
    assert cold == llama_greedy(exact, ids, 12, eng.tokenizer.stop_ids)
    _tokens(eng, ids, session="doc")
    assert _tokens(eng, ids, session="doc") == cold
    assert _tokens(eng, ids, speculative="ngram", session="doc") == cold


@pytest.mark.parametrize("kind", TYPES)
def test_compiled_kernels_against_llama_cpp_and_across_paths(files, kind, monkeypatch):
    """With the compiled block kernels (engine/quant_kernels.py, int8 activations like llama.cpp's):
    logits against llama.cpp on the same file within the tolerance above and close to the float32 tile
    path; every position goes through the same products whatever its batch, so a warm session and
    speculative decoding give the cold run's tokens."""
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")  # the tests turn compiled code off by default
    path = _file(files, kind)
    eng = Engine.load(path, device="cpu")
    eng.use_fused_step(build=True)  # a GGUF model's compiled step: the block kernels (once per machine)
    assert eng.fused_status == "quantized kernels on" and eng.fused_kernels in ("avx512vnni", "avx2", "scalar")
    same_file = llama(path, logits_all=True)
    for prefix, suffix in PROMPTS[:2]:
        ids = eng.tokenizer.encode_fim(prefix, suffix)
        ours = eng.logits(ids)
        scale = ours.abs().max().item()
        assert (llama_logits(same_file, ids) - ours).abs().max().item() < 0.03 * scale
        attach_kernels(eng.model, None)
        assert (eng.logits(ids) - ours).abs().max().item() < 0.03 * scale
        attach_kernels(eng.model, quant_kernels)

    ids = eng.tokenizer.encode_fim(*PROMPTS[2])

    cold = _tokens(eng, ids)
    _tokens(eng, ids, session="doc")
    assert _tokens(eng, ids, session="doc") == cold
    assert _tokens(eng, ids, speculative="ngram", session="doc") == cold


def test_int8_on_a_gguf_file_is_refused(files):
    with pytest.raises(ValueError, match="quantized already"):
        Engine.load(_file(files, "q8_0"), device="cpu", quantize="int8")


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Engine.load(tmp_path / "none.gguf")


def test_embedded_model_as_q8_0(tmp_path):
    """The embedded model written by `quantize` (our writer, then llama.cpp's quantizer) as Q8_0: logits
    against llama.cpp on the file and exactly on the decoded weights; greedy tokens equal llama.cpp's
    on the decoded weights, and on the quantized file itself for this prompt (a trained model's
    margins are wider than a random one's; ten prompts of 64 tokens are in the README)."""
    from engine.checkpoints.gguf import quantize_gguf
    from engine.checkpoints.loading import embedded_model_dir

    if not (embedded_model_dir() / "params.json").is_file():
        pytest.skip("this copy ships no embedded model")
    path = quantize_gguf(None, tmp_path / "embedded-q8_0.gguf", "q8_0")
    eng = Engine.load(path, device="cpu")
    same_file = llama(path, logits_all=True)
    exact = llama(write_dequantized(eng.model, v3_tokenizer_path(), tmp_path / "decoded.gguf"), logits_all=True)
    ids = eng.tokenizer.encode_fim("def fib(n):\n    if n < 2:\n        return n\n    return ", "\n")
    ours = eng.logits(ids)
    scale = ours.abs().max().item()
    assert (llama_logits(same_file, ids) - ours).abs().max().item() < 0.03 * scale
    assert (llama_logits(exact, ids) - ours).abs().max().item() < 1e-3 * max(1.0, scale)
    gen = eng.stream_tokens(ids, max_tokens=24)
    [*gen]
    assert gen.tokens == llama_greedy(exact, ids, 24, eng.tokenizer.stop_ids)
    assert gen.tokens == llama_greedy(same_file, ids, 24, eng.tokenizer.stop_ids)


@pytest.mark.parametrize("kind", ["q4_k_m", "q8_0"])
def test_dequantized_at_load_is_the_block_model(files, kind):
    # What CUDA and MPS get (no kernel takes the blocks there yet): every matrix widened once at load.
    # Checked on the CPU: in float32 it is the block model's float tile path (the same decoded values,
    # the same float32 products); in bfloat16, as close as bfloat16 weights allow.
    from engine.checkpoints.gguf_reader import load_gguf_model
    from engine.checkpoints.loading import find_checkpoint

    ckpt = find_checkpoint(_file(files, kind))
    blocks = load_gguf_model(ckpt, "cpu")
    attach_kernels(blocks, None)
    dense = load_gguf_model(ckpt, "cpu", torch.float32)
    assert not any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in dense.modules())
    ids = torch.tensor([Engine.load(ckpt.folder, device="cpu").tokenizer.encode_fim(*PROMPTS[1])])
    with torch.inference_mode():
        expected, got = blocks(ids), dense(ids)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    half = load_gguf_model(ckpt, "cpu", torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        assert torch.allclose(half(ids).float(), expected, rtol=0, atol=0.05 * float(expected.abs().max()))


@pytest.mark.parametrize("arch, kind", [("llama", "q8_0"), ("llama", "q4_k_m"), ("qwen2", "q8_0"),
                                        ("starcoder2", "q8_0")])
def test_the_compiled_step_is_bitwise_the_python_step(files, arch, kind, monkeypatch, tmp_path):
    """A GGUF model's decode step and verification in one compiled call (qlinear.compiled_step) give the
    hidden states and the cache's keys and values of the Python step exactly, for llama and qwen2 (q/k/v
    biases) files; StarCoder2 (LayerNorm, GELU) keeps the Python step."""
    from gguf_util import write_qwen2_gguf

    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")
    source = files[1] if arch == "llama" else write_qwen2_gguf(tmp_path, arch=arch)[0]
    eng = Engine.load(quantize(source, tmp_path / f"{arch}-{kind}.gguf", kind), device="cpu")
    eng.use_fused_step(build=True)
    model = eng.model
    if arch == "starcoder2":
        assert model.attend_half is not None and model.quant_step is None
        return
    assert model.quant_step is not None and eng.new_cache().k.dtype == torch.float16
    from codestral_lsp.tools.bench import _cache_bytes

    assert _cache_bytes(eng) == eng.new_cache().nbytes  # what `bench engine` reports as the KV cache
    prompt = list(range(5, 45))
    for rows in (1, 5):
        caches = []
        for compiled in (True, False):
            step, model.quant_step = model.quant_step, model.quant_step if compiled else None
            cache = eng.new_cache()
            with torch.inference_mode():
                model.run(prompt, cache, "last")
                cache.reserve(prompt[:rows])
                hidden = model.step_hidden(prompt[:rows], cache)
            model.quant_step = step
            caches.append((hidden, cache.k.clone(), cache.v.clone()))
        (h1, k1, v1), (h2, k2, v2) = caches
        assert torch.equal(h1, h2) and torch.equal(k1, k2) and torch.equal(v1, v2), rows
        assert h1.shape == (rows, eng.args.dim) and h1.abs().sum() > 0
