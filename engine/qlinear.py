"""Matrices kept in a GGUF file's own blocks: `QuantLinear` and `QuantEmbedding`.

The raw blocks stay where the loader found them, a uint8 tensor [rows, row_bytes] viewed on the
file's memory map (engine/checkpoints/gguf_reader.py), so a Q4_K matrix costs its 4.5 bits per
weight in memory and nothing is copied at load. A product dequantizes TILE_ROWS output rows at a
time to float32 and multiplies them (never the whole matrix: a tile of a 4096-wide layer is 4 MB);
an embedding lookup dequantizes only the rows it gathers.

Block formats (ggml's): Q8_0 and Q4_0 hold 32 weights a block with one float16 scale; Q4_K, Q5_K
and Q6_K hold 256 a block in sub-blocks with 6- or 8-bit scales. Decoding them is `gguf.quants`
(llama.cpp's own Python package); F16, BF16 and F32 are reinterpreted in place.

`QuantLinear.multiply` is the one place a product happens. `attach_kernels` plugs the compiled
kernels in there (engine/quant_kernels.py): every product goes through `qmatmul` on the blocks
themselves with int8 activations, prefill included (all its rows in one call): a row's product does not depend on
the rows beside it, so cold, warm and speculative runs give the same tokens (tests/engine/
test_gguf_llama.py). Not bitwise: a prefill attends with PyTorch's SDPA over the float16 cache widened
to float32, a step with the compiled `attend_half` (~1e-7 apart), and a changed int8 rounding step can
move a later logit by ~1e-3. `compiled_step` runs a whole llama/qwen2 step in one compiled call. Lookups in
the embedding table use the compiled `dequantize_rows`.
Without the kernels (not built yet, another CPU, CUDA) products dequantize tiles through `gguf.quants`
and multiply in float32, the numerics of the tests' exact oracle (llama.cpp on the decoded weights).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

TILE_ROWS = 256  # output rows dequantized at once


def _types() -> dict[int, str]:
    from gguf import GGMLQuantizationType as T

    return {int(t): t.name for t in (T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K, T.F16, T.BF16, T.F32)}


SUPPORTED = _types()  # ggml type id -> name, the types this module decodes


def dequantize_rows(raw: torch.Tensor, qtype: int, cols: int) -> torch.Tensor:
    """Raw rows [rows, row_bytes] uint8 of ggml type `qtype` -> float32 [rows, cols]."""
    name = SUPPORTED[qtype]
    if name == "F32":
        return raw.view(torch.float32)
    if name == "F16":
        return raw.view(torch.float16).float()
    if name == "BF16":
        return raw.view(torch.bfloat16).float()
    from gguf.quants import dequantize

    values = dequantize(raw.numpy(), qtype)  # [rows, cols] float32
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).view(raw.shape[0], cols)


class QuantLinear(nn.Module):
    """y = x W^T (+ b) with W [out_features, in_features] held as raw ggml blocks [out_features, row_bytes]."""

    kernel: Callable | None = None  # qmatmul(x_f32, raw_u8, qtype, out_f32), any number of rows

    def __init__(self, raw: torch.Tensor, qtype: int, in_features: int, bias: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("raw", raw, persistent=False)
        self.qtype, self.in_features, self.out_features = qtype, in_features, raw.shape[0]
        self.bias = None if bias is None else nn.Parameter(bias.float(), requires_grad=False)

    @property
    def type_name(self) -> str:
        return SUPPORTED[self.qtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()  # [rows, in]
        out = self.multiply(flat)  # [rows, out]
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def multiply(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] float32 -> x W^T [rows, out] float32."""
        out = torch.empty(x.shape[0], self.out_features, dtype=torch.float32)
        if self.kernel is not None:
            # Every row through the same int8 products, prefill too (one call: the kernel keeps each tile
            # of the matrix in cache for all rows): a row's result does not depend on the rows beside it,
            # so cold, warm and speculative runs agree.
            self.kernel(x.contiguous(), self.raw, self.qtype, out)
            return out
        for start in range(0, self.out_features, TILE_ROWS):
            end = min(start + TILE_ROWS, self.out_features)
            w = dequantize_rows(self.raw[start:end], self.qtype, self.in_features)  # [tile, in]
            out[:, start:end] = x @ w.t()
        return out

    def dequantized(self) -> torch.Tensor:
        """The whole matrix [out, in] in float32 (tests, and devices without a kernel for the blocks)."""
        return dequantize_rows(self.raw, self.qtype, self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, type={self.type_name}"


class QuantEmbedding(nn.Module):
    """An embedding table [vocab, dim] held as raw ggml blocks [vocab, row_bytes]; a lookup
    dequantizes only the rows it gathers."""

    def __init__(self, raw: torch.Tensor, qtype: int, dim: int):
        super().__init__()
        self.register_buffer("raw", raw, persistent=False)
        self.qtype, self.embedding_dim, self.num_embeddings = qtype, dim, raw.shape[0]

    tile: Callable | None = None  # compiled dequantize_rows (attach_kernels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.raw[ids.reshape(-1)]  # [n, row_bytes]: a copy of the gathered rows only
        values = self.tile(rows, self.qtype, 0, rows.shape[0]) if self.tile is not None else \
            dequantize_rows(rows, self.qtype, self.embedding_dim)
        return values.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, type={SUPPORTED[self.qtype]}"


def attach_kernels(model: nn.Module, kernels) -> str:
    """Route the products and lookups of `model`'s GGUF matrices through the compiled kernels
    (`kernels`: engine/quant_kernels.py, or None to go back to the `gguf.quants` tile path).
    Returns "on", "off" (None given) or "none" (no matrix of a type the kernels take)."""
    taken = 0
    for module in model.modules():
        if isinstance(module, (QuantLinear, QuantEmbedding)):
            fits = kernels is not None and module.qtype in kernels.QTYPES.values()
            if isinstance(module, QuantLinear):
                module.kernel = kernels.qmatmul if fits else None
            else:
                module.tile = kernels.dequantize_rows if fits else None
            taken += fits
    if hasattr(model, "attend_half"):  # a Transformer: its steps over a float16 cache (engine/model.py)
        model.attend_half = kernels.attend_half if kernels is not None and taken else None
        model.quant_step = compiled_step(model, kernels) if kernels is not None and taken else None
    return "off" if kernels is None else "on" if taken else "none"


def compiled_step(model: nn.Module, kernels) -> Callable | None:
    """`step_hidden` of `model` as one compiled call (csrc `gguf_step`), or None where it does not apply:
    every layer a llama/qwen2 one (RMS norms, SwiGLU, biases on wq/wk/wv at most) whose seven matrices
    all go through the kernels. Its result is bitwise the Python step's (the same operations in the same
    order, tests/engine/test_gguf_llama.py); it saves the interpreter's ~20 ms a step on a 1B model."""
    from .model import FeedForward, RMSNorm

    matrices, qtypes, biases, norms = [], [], [], []
    for layer in model.layers:
        a, f = layer.attention, layer.feed_forward
        linears = [a.wq, a.wk, a.wv, a.wo] + ([f.w1, f.w3, f.w2] if type(f) is FeedForward else [])
        if (len(linears) != 7 or not all(isinstance(m, QuantLinear) and m.kernel is not None for m in linears)
                or any(m.bias is not None for m in linears[3:])
                or not all(type(n) is RMSNorm for n in (layer.attention_norm, layer.ffn_norm))):
            return None
        matrices += [m.raw for m in linears]
        qtypes += [m.qtype for m in linears]
        biases += [m.bias.detach() if m.bias is not None else torch.empty(0) for m in linears[:3]]
        norms += [layer.attention_norm.weight.detach().float(), layer.ffn_norm.weight.detach().float()]
    if type(model.norm) is not RMSNorm or not matrices:
        return None
    norms.append(model.norm.weight.detach().float())
    args, eps = model.args, model.norm.eps

    def step(x: torch.Tensor, rotation: torch.Tensor, pos: int, cache) -> torch.Tensor:
        """x [T, dim] embeddings, rotation [T, 1, D/2] complex64 -> final normed hidden states [T, dim]."""
        return kernels.gguf_step(x, rotation, pos, args.n_heads, args.n_kv_heads, eps, matrices, qtypes, biases,
                                 norms, cache.k, cache.v)

    return step
