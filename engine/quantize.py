"""int8 weight-only quantization: per-output-channel symmetric scales, activations stay floating point.

Each Linear weight W [out, in] becomes W_q = round(W / s) in int8 with s = max|W[row]| / 127 per row,
so the layer computes x @ (W_q * s).T. Memory for the weights drops 4x from float32 (2x from bf16).

Which kernel, on the CPU (measured on 2 AVX2 cores, one thread, the [32768, 256] output layer, with a
training run in the background: compare ratios, not absolute times):

    rows  float32 F.linear  int8pack_mm(float32 x)  int8pack_mm(bf16 x)  dequantize + F.linear
    1     5.5 ms            11 ms                   0.8 ms               46 ms
    200   85 ms             2,550 ms                160 ms               160-220 ms

torch's fused kernel is fast only with bfloat16 activations, and only for few rows (memory-bound
decoding, where reading 1 byte per weight instead of 4 pays). So a call with at most SMALL_ROWS rows
(decode steps, speculative verification, the few new tokens of a reused prompt) rounds its activations
to bfloat16 for that kernel and returns float32; a bigger call (a cold prefill chunk) dequantizes the
weight to the activations' dtype for one ordinary product. The two paths round differently (bf16
activations and scale vs float32), so under int8 a reused cache and a cold one may differ in the last
digits and, at near-ties, in a greedy token; engines without int8 are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


FUSED = hasattr(torch, "_weight_int8pack_mm")
SMALL_ROWS = 16  # rows up to which the fused bf16 kernel beats dequantizing (see the table above)


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()  # [out, in]
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # [out]
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # [N, in]
        if x.device.type == "cpu" and FUSED and flat.shape[0] <= SMALL_ROWS:
            out = torch._weight_int8pack_mm(flat.bfloat16(), self.weight, self.scale.bfloat16())  # [N, out]
            return out.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight.to(x.dtype) * self.scale[:, None].to(x.dtype))


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of the model in place (the embedding table stays as it is).
    Raises ValueError for a layer with a bias (Qwen2's q, k, v): Int8Linear has none."""
    from .model import Router

    for name, child in list(model.named_children()):
        if isinstance(child, Router):  # a mixture of experts' gate stays in float: rounding would reroute tokens
            continue
        if isinstance(child, nn.Linear) and child.bias is not None:
            raise ValueError(f"int8 does not cover layers with biases ({name}); load this model without quantize")
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child))
        else:
            quantize_int8(child)
    return model
