"""Products with GGUF's quantized matrices in their own blocks (engine/csrc/quant_kernels.cpp).

`qmatmul(x, raw, qtype, out)` computes out = x @ dequant(raw).T for raw [N, row_bytes] uint8, each
output row's blocks contiguous exactly as a GGUF file stores them, and x float32 [rows, K]: a decode
step, a speculative verification, or a whole prefill (the matrix then passes through the cache in
tiles that every row meets, so it is read from memory once a call). The activations are quantized per block to
int8 once per call and each weight block meets them in integer dot products (AVX-512 VNNI, AVX2, or
plain loops; `isa()`), the weights read once for all rows. `dequantize_rows` widens rows to
float32 (embedding lookups). `attend_half` is a step's attention over a GGUF model's float16 KV cache,
and `gguf_step` a whole llama/qwen2 step (norms, products, rotations, attention) in one call. The extension is compiled on demand like the fused step
(engine/fused.py `Extension`: once per machine, into the cache; CODESTRAL_LSP_FUSED=off turns it off).

Block layouts (ggml's; all numbers little-endian, `f16` an IEEE half; the examples' results are exact
up to d's rounding to f16, and tests/engine/test_quant_kernels.py checks them with gguf's dequantizer):

    Q8_0  32 weights in 34 bytes: f16 d, int8 q[32]; w[i] = d * q[i].
          e.g. d = 0.01, q[3] = -100 -> w[3] = -1.0.
    Q4_0  32 weights in 18 bytes: f16 d, uint8 qs[16]; byte i holds weight i in its low nibble and
          weight i + 16 in its high nibble; w = d * (nibble - 8).
          e.g. d = 0.5, qs[0] = 0x3A -> w[0] = 0.5 * (10 - 8) = 1.0, w[16] = 0.5 * (3 - 8) = -2.5.
    Q4_K  256 weights in 144 bytes: f16 d, f16 dmin, scales[12], qs[128]. Eight sub-blocks of 32,
          each a 6-bit scale sc_j and 6-bit minimum m_j packed in `scales` (for j < 4: sc = s[j] & 63,
          m = s[j + 4] & 63; for j >= 4 the low 4 bits come from s[j + 4] and the top 2 from the top
          bits of s[j - 4] (scale) and s[j] (minimum)); bytes 32c .. 32c+31 of qs hold sub-block 2c
          in their low nibbles and 2c + 1 in their high nibbles; w = d * sc_j * q - dmin * m_j.
          e.g. d = 0.1, dmin = 0.2, sc_0 = 3, m_0 = 5, qs[0] = 0x?7 -> w[0] = 0.1*3*7 - 0.2*5 = 1.1.
    Q5_K  256 weights in 176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]: Q4_K plus a fifth
          bit, bit j of qh[l] for value l of sub-block j (q = nibble + 16 * bit, 0..31).
          e.g. the example above with bit 0 of qh[0] set -> q = 23, w[0] = 0.1*3*23 - 1.0 = 5.9.
    Q6_K  256 weights in 210 bytes: ql[128], qh[64], int8 scales[16], f16 d (last). Sixteen
          sub-blocks of 16 with a signed 8-bit scale each; q = 4 low bits from ql, 2 high bits from
          qh, w = d * scale_j * (q - 32). In each half h of 128 weights (ql + 64h, qh + 32h), value
          l < 32 takes ql[l] & 15 and qh[l] bits 0-1; l + 32: ql[l + 32] & 15, qh[l] bits 2-3;
          l + 64: ql[l] >> 4, bits 4-5; l + 96: ql[l + 32] >> 4, bits 6-7.
          e.g. d = 0.01, scale_0 = 10, ql[0] = 0x05, qh[0] = 0b10 -> q = 5 + 32 = 37, w[0] = 0.5.
    F16, BF16  one weight in 2 bytes, multiplied with x in float (no activation quantization).

The int8 activations cost accuracy: a value x in a block with max |x| = A becomes a multiple of
A / 127, off by at most A / 254; tests/engine/test_quant_kernels.py bounds each output by that.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .fused import Extension

QTYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}  # ggml's type ids
EXTENSION = Extension("codestral_quant_kernels", Path(__file__).parent / "csrc" / "quant_kernels.cpp")


def load(build: bool = False):
    """The compiled kernels, or None: not built yet (and build False), turned off, or they cannot be
    built here (`failure()` says why)."""
    return EXTENSION.load(build)


def available() -> bool:
    """The kernels are built and loaded (or loadable without compiling)."""
    return load() is not None


def failure() -> str | None:
    return EXTENSION.failure


def isa() -> str | None:
    """The vector code the library was built with: "avx512vnni", "avx2" or "scalar"."""
    module = load()
    return None if module is None else module.isa


def _module():
    module = load()
    if module is None:
        raise RuntimeError(f"the quantized kernels are not available: {failure() or 'not built yet (load(build=True))'}")
    return module


def qmatmul(x: torch.Tensor, raw: torch.Tensor, qtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """out[rows, N] = x[rows, K] @ dequant(raw[N, row_bytes]).T; qtype a gguf.GGMLQuantizationType
    (or its int). out is allocated when not given."""
    if out is None:
        out = torch.empty(x.shape[0], raw.shape[0], dtype=torch.float32)
    _module().qmatmul(x, raw, int(qtype), out)
    return out


def dequantize_rows(raw: torch.Tensor, qtype, first: int = 0, count: int | None = None) -> torch.Tensor:
    """Rows first .. first+count-1 of raw as float32 [count, K]."""
    count = raw.shape[0] - first if count is None else count
    return _module().dequantize_rows(raw, int(qtype), first, count)


def attend_half(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, used: int) -> torch.Tensor:
    """Attention [T, H * D] float32 of the last T positions' queries q [T, H, D] over a layer's float16
    keys and values [H_kv, S, D] (a GGUF model's cache), slots 0 .. used-1 holding positions 0 .. used-1;
    query t (position used - T + t) sees the positions up to its own. A row's result does not depend
    on T: a decode step and a verification agree exactly (csrc `attend_half`)."""
    return _module().attend_half(q, keys, values, used)


def gguf_step(x, rotation, pos, n_heads, n_kv_heads, eps, matrices, qtypes, biases, norms, cache_k, cache_v):
    """engine/model.py `step_hidden` of a llama or qwen2 GGUF model in one compiled call, bitwise its
    result (csrc `gguf_step`; `qlinear.compiled_step` gathers the arguments)."""
    return _module().gguf_step(x, rotation, pos, n_heads, n_kv_heads, eps, matrices, qtypes, biases, norms,
                               cache_k, cache_v)

