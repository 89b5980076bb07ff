"""Write a checkpoint as a GGUF file for llama.cpp (its `llama` architecture), for `bench peers`.

    from engine.checkpoints.gguf import convert
    convert("engine/models/codestral-mini", "/tmp/codestral-mini.gguf")    # float32 weights

Names. Ours (Mistral's) map one to one onto llama.cpp's:

    tok_embeddings.weight             token_embd.weight      [vocab, dim]
    layers.N.attention.wq/wk/wv/wo    blk.N.attn_q/attn_k/attn_v/attn_output
    layers.N.feed_forward.w1/w3/w2    blk.N.ffn_gate/ffn_up/ffn_down
    layers.N.attention_norm/ffn_norm  blk.N.attn_norm/ffn_norm
    norm.weight, output.weight        output_norm.weight, output.weight

Shapes are written as PyTorch holds them ([out, in]); GGUF lists dimensions innermost first, so
llama.cpp reads wq [n_heads * head_dim, dim] as ne = {dim, n_heads * head_dim}, which is what it expects.

RoPE layout. llama.cpp's `llama` architecture uses "normal" RoPE, which rotates consecutive pairs
(x0, x1), (x2, x3), ... of each head, the layout of Meta's and Mistral's original checkpoints (its
converter un-permutes Hugging Face's rotate-half rows back to it). Our model stores wq/wk rows in
exactly that interleaved order (engine/checkpoints/loading.py), so they are written unchanged; Hugging Face
folders are un-permuted on reading by `read_tensors`. Proof: llama.cpp's greedy tokens and logits
equal ours (tests/server/test_peers.py).

What llama.cpp cannot represent is refused with GGUFError: a sliding window shorter than the context
(the `llama` architecture has none) and a tokenizer larger than the model's vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from ..config import ModelArgs
from .loading import find_checkpoint, read_tensors

TOP_NAMES = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
             "output.weight": "output.weight"}
LAYER_NAMES = {
    "attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v", "attention.wo": "attn_output",
    "feed_forward.w1": "ffn_gate", "feed_forward.w3": "ffn_up", "feed_forward.w2": "ffn_down",
    "attention_norm": "attn_norm", "ffn_norm": "ffn_norm",
}
DTYPES = ("f32", "f16")

# SentencePiece token types as GGUF stores them (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class GGUFError(ValueError):
    """The checkpoint cannot be written as a GGUF file that llama.cpp would run the same way."""


def gguf_name(name: str) -> str:
    """Our parameter name -> llama.cpp's tensor name.

    >>> gguf_name("layers.3.feed_forward.w2.weight")
    'blk.3.ffn_down.weight'
    """
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".")  # layers.N.<module>.<sub>.weight
    module = ".".join(parts[2:-1])
    if parts[0] != "layers" or module not in LAYER_NAMES:
        raise GGUFError(f"no llama.cpp name for tensor {name!r}")
    return f"blk.{parts[1]}.{LAYER_NAMES[module]}.{parts[-1]}"


def tensor_order(name: str) -> tuple[int, str]:
    """Embeddings first, then block by block, then the output: the order llama.cpp's converter writes.

    >>> sorted(["output.weight", "blk.10.ffn_up.weight", "blk.2.attn_q.weight", "token_embd.weight"], key=tensor_order)
    ['token_embd.weight', 'blk.2.attn_q.weight', 'blk.10.ffn_up.weight', 'output.weight']
    """
    if name.startswith("blk."):
        return 1 + int(name.split(".")[1]), name
    return (0 if name.startswith("token_embd") else 1 << 30), name


def check_representable(args: ModelArgs) -> None:
    if (args.qkv_bias, args.dense_bias, args.rope_scaling, args.norm, args.mlp, args.n_experts) != \
            (False, False, None, "rms", "swiglu", 0):  # and a tokenizer.json is no SentencePiece model
        raise GGUFError("this writer covers Mistral's family only (no biases, rope scaling, LayerNorm, GELU or experts); "
                        "llama.cpp's own convert_hf_to_gguf.py converts the other families")
    if args.sliding_window is not None and args.sliding_window < args.max_seq_len:
        raise GGUFError(f"sliding window {args.sliding_window} < context {args.max_seq_len}: llama.cpp's llama "
                        "architecture has no sliding-window attention, so it would attend further than the model")


def vocabulary(tokenizer_file: str | Path, vocab_size: int) -> tuple[list[bytes], list[float], list[int]]:
    """Pieces, scores and token types of a SentencePiece model, padded with unused pieces to vocab_size.

    Control pieces ([INST], [PREFIX]=11, [MIDDLE]=12, [SUFFIX]=13, BOS=1, EOS=2 in the v3 tokenizer)
    are typed CONTROL, byte-fallback pieces (<0x0A>) BYTE.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_file))
    n = sp.vocab_size()
    if n > vocab_size:
        raise GGUFError(f"{tokenizer_file}: {n} tokens but the model has only {vocab_size} embeddings")
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        types.append(CONTROL if sp.is_control(i) else UNKNOWN if sp.is_unknown(i) else BYTE if sp.is_byte(i)
                     else UNUSED if sp.is_unused(i) else NORMAL)
    for i in range(n, vocab_size):  # embeddings the tokenizer never produces
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1e4)
        types.append(UNUSED)
    return tokens, scores, types


def write_gguf(tensors: Iterable[tuple[str, torch.Tensor]], args: ModelArgs, tokenizer_file: str | Path,
               out_path: str | Path, dtype: str = "f32", name: str = "model") -> Path:
    """Write (our name, tensor) pairs, the hyperparameters and the tokenizer as one GGUF file.

    dtype "f32" or "f16" applies to the matrices; norm gains are always float32 (llama.cpp requires it).
    All tensors are held in memory until written: fine for the models this is meant for.
    """
    import gguf
    import sentencepiece as spm

    if dtype not in DTYPES:
        raise GGUFError(f"unknown GGUF dtype {dtype!r}: use {' or '.join(DTYPES)}")
    check_representable(args)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_path), arch="llama")
    w.add_name(name)
    w.add_context_length(args.max_seq_len)
    w.add_embedding_length(args.dim)
    w.add_block_count(args.n_layers)
    w.add_feed_forward_length(args.hidden_dim)
    w.add_head_count(args.n_heads)
    w.add_head_count_kv(args.n_kv_heads)
    w.add_key_length(args.head_dim)  # head_dim need not be dim / n_heads
    w.add_value_length(args.head_dim)
    w.add_rope_dimension_count(args.head_dim)
    w.add_rope_freq_base(float(args.rope_theta))
    w.add_layer_norm_rms_eps(float(args.norm_eps))
    w.add_vocab_size(args.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)

    tokens, scores, types = vocabulary(tokenizer_file, args.vocab_size)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_file))
    w.add_tokenizer_model("llama")  # SentencePiece
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for piece, key in (("[PREFIX]", gguf.Keys.Tokenizer.FIM_PRE_ID), ("[SUFFIX]", gguf.Keys.Tokenizer.FIM_SUF_ID),
                       ("[MIDDLE]", gguf.Keys.Tokenizer.FIM_MID_ID)):
        i = sp.piece_to_id(piece)
        if i != sp.unk_id() and sp.is_control(i):
            w.add_uint32(key, i)

    arrays = {}
    for ours, t in tensors:
        t = t.detach().to("cpu", torch.float32)
        if dtype == "f16" and t.dim() > 1:
            t = t.to(torch.float16)
        arrays[gguf_name(ours)] = t.contiguous().numpy()
    missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in arrays]
    if missing:
        raise GGUFError(f"tensors missing: {', '.join(missing)}")
    for key in sorted(arrays, key=tensor_order):  # one order whatever the source: the same weights, the same file
        w.add_tensor(key, arrays[key])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


def convert(checkpoint_dir: str | Path | None, out_path: str | Path, dtype: str = "f32") -> Path:
    """A checkpoint folder (Mistral's or Hugging Face's format; None: the embedded model) -> GGUF file."""
    ckpt = find_checkpoint(checkpoint_dir)
    if ckpt.tokenizer_file.suffix == ".json":
        raise GGUFError(f"{ckpt.folder}: this writer covers Mistral's family (SentencePiece tokenizers) only; "
                        "llama.cpp's own convert_hf_to_gguf.py converts the other families")
    return write_gguf(read_tensors(ckpt), ckpt.args, ckpt.tokenizer_file, out_path, dtype, ckpt.folder.name)


# `codestral-lsp quantize --type` -> llama.cpp's file type (llama_ftype), by its name in llama_cpp.
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
               "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
               "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def quantize_gguf(checkpoint_dir: str | Path | None, out_path: str | Path, kind: str = "q8_0") -> Path:
    """A checkpoint folder (None: the embedded model) -> a quantized GGUF file: written here in float32,
    then quantized by llama.cpp's own quantizer (llama-cpp-python's `llama_model_quantize`), so the
    file is exactly what llama.cpp would make and both it and our engine load it. "f32" and "f16"
    skip the quantizer."""
    import tempfile

    if kind in DTYPES:
        return convert(checkpoint_dir, out_path, kind)
    if kind not in QUANT_TYPES:
        raise GGUFError(f"unknown GGUF type {kind!r}: use {', '.join([*QUANT_TYPES, *DTYPES])}")
    try:
        import llama_cpp
    except ImportError as exc:
        raise GGUFError("quantizing needs llama.cpp's quantizer: pip install llama-cpp-python") from exc
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="codestral-quantize-", dir=out_path.parent) as tmp:
        f32 = convert(checkpoint_dir, Path(tmp) / "f32.gguf", "f32")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, QUANT_TYPES[kind])
        if llama_cpp.llama_model_quantize(str(f32).encode(), str(out_path).encode(), params) != 0:
            raise GGUFError(f"llama.cpp could not quantize {f32.name} to {kind}")
    return out_path


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Convert a checkpoint folder to GGUF for llama.cpp.")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--dtype", default="f32", choices=DTYPES)
    a = p.parse_args()
    print(convert(a.checkpoint, a.out, a.dtype))


if __name__ == "__main__":
    main()
