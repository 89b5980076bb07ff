"""Exact greedy tokens from the output table at int8 speed: screen with int8 logits, confirm in float32.

The output table of the embedded model ([32768, 256], 34 MB in float32) is read once per decode step
and costs more than all six layers together. A greedy step needs only the argmax of its logits, so
`ScreenedArgmax` computes cheap approximate logits y (int8 weights, bfloat16 activations: torch's
fused kernel reads a quarter of the bytes), bounds the error of every row, and computes exact float32
logits only for the rows that could still be the maximum. The token is the one plain float32 logits
would pick (up to float32 rounding at exact ties, as between any two BLAS kernels).

The bound, for a row W_r = s_r q_r + e_r (int8 q_r, float32 scale s_r, rounding residue e_r), the
kernel's inputs xb = bf16(x) and sb_r = bf16(s_r), and its bfloat16 output y_r:

    |W_r.x - y_r| <= |e_r.x| + s_r |q_r.(x - xb)| + |s_r - sb_r| |q_r.xb| + |y_r - sb_r q_r.xb|
                  <= C_r |x| + D_r |x - xb| + 2^-7 max|y|

with C_r = |e_r| + |s_r - sb_r| |q_r| (1 + 2^-7) + 2^-16 D_r (float32 accumulation of 256 products)
and D_r = s_r |q_r| (Cauchy-Schwarz on each term; the last term is the bfloat16 rounding of y).
Worked example: logits y = [9.0, 8.9, 4.0], bounds b = [0.2, 0.2, 0.2]. The best lower bound is
9.0 - 0.2 = 8.8; rows 0 and 1 reach it (9.2, 9.1 >= 8.8), row 2 cannot (4.2 < 8.8). Two rows of
float32 products instead of three decide the token.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

FUSED = hasattr(torch, "_weight_int8pack_mm")
MAX_CANDIDATES = 64  # past this many rows in doubt, one full product is cheaper than gathering them


class ScreenedArgmax:
    """argmax(x @ weight.T) row by row, for x [T, dim] float32 on the CPU (T <= STEP_ROWS, engine/model.py)."""

    def __init__(self, weight: torch.Tensor):
        w = weight.detach().float()  # [V, dim]
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # [V]
        q = torch.round(w / scale[:, None]).clamp(-127, 127)  # [V, dim] integral floats
        residue = (w - scale[:, None] * q).norm(dim=1)  # [V] |e_r|
        scale_b = scale.bfloat16()
        q_norm = q.norm(dim=1)  # [V]
        self.weight = weight  # the float32 table, any layout (F.linear of a few gathered rows)
        self.q = q.to(torch.int8).contiguous()  # [V, dim]
        self.scale_b = scale_b  # [V]
        self.d = scale * q_norm  # [V]
        self.c = residue + (scale - scale_b.float()).abs() * q_norm * (1 + 2 ** -7) + self.d * 2 ** -16  # [V]

    def __call__(self, x: torch.Tensor) -> list[int]:
        """Greedy tokens for the rows of x [T, dim]."""
        y, bound = self.screen(x)  # [T, V] each
        best_lower = (y - bound).amax(dim=-1, keepdim=True)  # [T, 1]
        candidates = (y + bound >= best_lower).any(dim=0).nonzero().flatten()  # [C], ascending
        if candidates.numel() > MAX_CANDIDATES:
            return F.linear(x, self.weight).argmax(-1).tolist()
        exact = F.linear(x, self.weight.index_select(0, candidates))  # [T, C]
        return candidates[exact.argmax(-1)].tolist()

    def screen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate logits y [T, V] and a bound [T, V] on their distance from the float32 ones."""
        xb = x.bfloat16()
        y = torch._weight_int8pack_mm(xb, self.q, self.scale_b).float()  # [T, V]
        x_norm = x.norm(dim=-1, keepdim=True)  # [T, 1]
        rounding = (x - xb.float()).norm(dim=-1, keepdim=True)  # [T, 1]
        slack = y.abs().amax(dim=-1, keepdim=True) * 2 ** -7 + 1e-4  # [T, 1]
        return y, self.c * x_norm + self.d * rounding + slack


def screening_wins(weight: torch.Tensor, repeats: int = 20) -> ScreenedArgmax | None:
    """A ScreenedArgmax for this float32 CPU table if its screen costs under 3/4 of F.linear + argmax
    on one row, else None. Measured at load (tens of milliseconds): the fused int8 kernel is fast on
    some CPUs only. In decoding, the rows left after screening are few (a median of 1, at most 8 in
    900 steps of the embedded model completing engine/kv_cache.py), so their product is not timed.
    """
    if not FUSED or weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.shape[0] < 4096:
        return None
    screened = ScreenedArgmax(weight)
    x = torch.randn(1, weight.shape[1])
    best = {}
    with torch.inference_mode():
        for name, run in (("plain", lambda: F.linear(x, weight).argmax(-1).tolist()), ("screen", lambda: screened.screen(x))):
            run()  # warm up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            best[name] = min(times)
    return screened if best["screen"] < 0.75 * best["plain"] else None
