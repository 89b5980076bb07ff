"""The tokenizer stored in a GGUF file, against llama.cpp's own (`Llama(vocab_only=True)`) on the same
file: a SentencePiece vocabulary (`tokenizer.ggml.model` "llama", the v3 tokenizer) and a byte-level
BPE one ("gpt2" with merges and the "qwen2" or "starcoder" pre-tokenizer); and the `qwen2` and
`starcoder2` architectures' models (biases, tied embeddings, rotate-half rows; StarCoder2's LayerNorm
and GELU MLP) against llama.cpp."""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest

from engine import Engine
from engine.checkpoints.gguf import convert
from engine.testing import make_checkpoint

from gguf_util import llama, llama_logits, quantize, write_qwen2_gguf

pytest.importorskip("gguf")


def texts() -> list[str]:
    """A few hundred strings: lines of real code (installed modules), unicode, runs of spaces and tabs,
    characters outside the vocabularies (byte fallback), special-token look-alikes."""
    lines = [line for module in (json, textwrap, inspect) for line in inspect.getsource(module).splitlines()]
    code = [line for line in lines if line.strip()][:250]
    other = ["", " ", "  ", "\t\tx = 1", "\n\n\n", "a  b   c    d", "état où naïve façon", "日本語のテキスト",
             "emoji 🚀🔥 done", "ünïcödé\u00a0nbsp", "x\r\ny", "[PREFIX] [SUFFIX] <|fim_prefix|> <s> </s>",
             "<|endoftext|>", "12345678901234567890", "0x1F600 \\u1234", "    return {'a': [1, 2, 3]}",
             "ℕ ∀x∈ℝ: x² ≥ 0", "Ελληνικά кириллица עברית العربية", "\u200b zero width", "tab\tand\vvertical"]
    return code + other + ["\n".join(code[i:i + 5]) for i in range(0, 100, 5)]


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-spm")
    return convert(make_checkpoint(folder / "ckpt", dim=64, n_layers=1), folder / "spm.gguf")


@pytest.fixture(scope="module", params=["qwen2", "starcoder2"])
def bpe(request, tmp_path_factory):
    return request.param, write_qwen2_gguf(tmp_path_factory.mktemp(f"gguf-{request.param}"), arch=request.param)[0]


def _compare(path, tokenizer):
    llm = llama(path, vocab_only=True)
    cases = texts()
    assert len(cases) > 250
    for text in cases:
        theirs = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert tokenizer.encode(text) == theirs, text
        assert tokenizer.decode(theirs) == llm.detokenize(theirs).decode("utf-8", errors="replace"), text


def test_sentencepiece_vocabulary_equals_llama_cpp(spm_file):
    eng = Engine.load(spm_file, device="cpu")
    assert eng.tokenizer.fim_name == "codestral"
    _compare(spm_file, eng.tokenizer)


def test_bpe_vocabulary_equals_llama_cpp(bpe):
    arch, path = bpe
    eng = Engine.load(path, device="cpu")
    assert eng.tokenizer.fim_name == {"qwen2": "qwen2.5-coder", "starcoder2": "starcoder"}[arch]
    _compare(path, eng.tokenizer)


def test_bpe_families_logits_equal_llama_cpp(bpe, tmp_path):
    arch, path = bpe
    eng = Engine.load(path, device="cpu")
    assert eng.args.qkv_bias and eng.args.tied_embeddings
    assert (eng.args.norm, eng.args.mlp, eng.args.dense_bias) == (("layer", "gelu", True) if arch == "starcoder2"
                                                                  else ("rms", "swiglu", False))
    ids = eng.tokenizer.encode_fim("def add(a, b):\n    return ", "\n")
    ours = eng.logits(ids)
    scale = ours.abs().max().item()
    assert (llama_logits(llama(path, logits_all=True), ids) - ours).abs().max().item() < 1e-3 * max(1.0, scale)
    for kind in ("q8_0", "q4_k_m"):  # see test_gguf_llama.py for the 3% (llama.cpp rounds activations to int8)
        quantized = quantize(path, tmp_path / f"{kind}.gguf", kind)
        q = Engine.load(quantized, device="cpu")
        ours = q.logits(ids)
        theirs = llama_logits(llama(quantized, logits_all=True), ids)
        assert (theirs - ours).abs().max().item() < 0.03 * ours.abs().max().item()
