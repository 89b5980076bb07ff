"""GGUF files for the tests: tiny random models written by our writer, quantized by llama.cpp's own
quantizer, and llama.cpp (llama-cpp-python) on the same files as the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codestral_lsp.tools.peers import llama_cpp_model
from engine.checkpoints.gguf import write_gguf
from engine.qlinear import QuantEmbedding, QuantLinear

# `codestral-lsp quantize --type` names -> llama.cpp's file types (llama_ftype), by attribute name.
FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
          "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
          "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K"}  # q2_k: a type the engine refuses (test_gguf_corrupt.py)


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


def llama(path: Path, n_ctx: int = 512, **kwargs):
    llama_cpp_module()
    # llama.cpp's extra CPU buffer types off: see llama_cpp_model
    return llama_cpp_model(path, n_ctx=n_ctx, n_threads=1, n_threads_batch=1, verbose=False, **kwargs)


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


def write_qwen2_gguf(folder: Path, seed: int = 0, arch: str = "qwen2") -> tuple[Path, "object"]:
    """A tiny random Qwen2 model (q/k/v biases, tied embeddings) with a byte-level BPE vocabulary trained
    on code, written as llama.cpp's `qwen2` architecture the way its converter writes a Hugging Face
    folder: q/k rows (and biases) in rotate-half order, merges and the "qwen2" pre-tokenizer.
    arch "starcoder2": StarCoder2's layers instead (LayerNorm, GELU MLP, biases everywhere), its
    special tokens and the "starcoder" pre-tokenizer. Returns the file and our float32 model of it."""
    import json

    import gguf

    from engine.checkpoints.gguf import gguf_name, tensor_order
    from engine.checkpoints.loading import permute_rows
    from engine.testing import random_model, tiny_args
    from families_util import write_tokenizer

    starcoder = arch == "starcoder2"
    tokenizer_file = write_tokenizer(folder, "starcoder" if starcoder else "qwen2", vocab_size=600)
    data = json.loads(tokenizer_file.read_text())
    vocab = {**data["model"]["vocab"], **{t["content"]: t["id"] for t in data["added_tokens"]}}
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in data["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    import dataclasses

    args = dataclasses.replace(tiny_args(dim=256, hidden_dim=512, n_layers=2), vocab_size=len(tokens),
                               qkv_bias=True, tied_embeddings=True, rope_theta=1e6)
    if starcoder:
        args = dataclasses.replace(args, norm="layer", mlp="gelu", dense_bias=True)
    model = random_model(args, seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.1)
    path = folder / f"{arch}.gguf"
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_context_length(args.max_seq_len)
    w.add_embedding_length(args.dim)
    w.add_block_count(args.n_layers)
    w.add_feed_forward_length(args.hidden_dim)
    w.add_head_count(args.n_heads)
    w.add_head_count_kv(args.n_kv_heads)
    w.add_rope_freq_base(args.rope_theta)
    if starcoder:
        w.add_layer_norm_eps(args.norm_eps)
    else:
        w.add_layer_norm_rms_eps(args.norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("starcoder" if starcoder else "qwen2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_add_bos_token(False)
    arrays = {}
    for name, t in model.state_dict().items():
        if name == "output.weight":
            continue  # tied
        t = t.detach().float()
        module = name.split(".")[-2]
        if module in ("wq", "wk"):
            heads = args.n_heads if module == "wq" else args.n_kv_heads
            t = permute_rows(t.view(t.shape[0], -1), heads).reshape(t.shape)
        if starcoder and name.startswith("norm."):
            key = f"output_norm.{name.split('.')[-1]}"
        elif starcoder and ".feed_forward." in name:  # c_fc is llama.cpp's ffn_up, c_proj its ffn_down
            key = gguf_name(name).replace("ffn_gate", "ffn_up")
        else:
            key = gguf_name(name)
        arrays[key] = t.contiguous().numpy()
    for key in sorted(arrays, key=tensor_order):
        w.add_tensor(key, arrays[key])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, model
