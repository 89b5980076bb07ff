"""GGUF files for the tests: tiny random models written by our writer, quantized by llama.cpp's own
quantizer, and llama.cpp (llama-cpp-python) on the same files as the oracle."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from engine.checkpoints.gguf import write_gguf
from engine.qlinear import QuantEmbedding, QuantLinear

# `codestral-lsp quantize --type` names -> llama.cpp's file types (llama_ftype), by attribute name.
FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
          "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def llama_cpp_module():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install "
                               "'codestral-lsp[bench]'): the llama.cpp oracle is skipped")


def quantize(src: Path, out: Path, kind: str) -> Path:
    llama_cpp = llama_cpp_module()
    if not out.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, FTYPES[kind])
        assert llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params) == 0
    return out


@contextlib.contextmanager
def _plain_cpu_buffers():
    """llama.cpp's extra CPU buffer types (AMX and repacked layouts) crash this llama-cpp-python build
    on quantized files on the development CPU (a segfault in decode); the plain CPU buffers do not,
    and compute the same products."""
    import llama_cpp.llama as module

    original = module.llama_cpp.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    module.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_cpp.llama_model_default_params = original


def llama(path: Path, n_ctx: int = 512, **kwargs):
    llama_cpp = llama_cpp_module()
    with _plain_cpu_buffers():
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_threads_batch=1, verbose=False,
                               **kwargs)


def llama_logits(llm, ids: list[int]) -> torch.Tensor:
    llm.reset()
    llm.eval(ids)
    return torch.from_numpy(llm.scores[: len(ids)].copy())  # [T, V]


def llama_greedy(llm, ids: list[int], n: int, stops) -> list[int]:
    llm.reset()
    out = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        if token in stops or len(out) >= n:
            break
        out.append(token)
    return out


def dequantized_state(model) -> dict[str, torch.Tensor]:
    """Our model's weights with every quantized matrix decoded to float32: what a float32 file of
    exactly these weights holds."""
    state = {k: v.float() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            state[f"{name}.weight"] = m.dequantized()
        elif isinstance(m, QuantEmbedding):
            state[f"{name}.weight"] = m(torch.arange(m.num_embeddings))
    return state


def write_dequantized(model, tokenizer_file: Path, out: Path) -> Path:
    """A float32 GGUF file of the decoded weights (llama architecture), for llama.cpp to run exactly."""
    return write_gguf(dequantized_state(model).items(), model.args, tokenizer_file, out, "f32")
