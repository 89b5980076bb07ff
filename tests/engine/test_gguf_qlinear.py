"""QuantLinear and QuantEmbedding against `gguf.quants.dequantize` (llama.cpp's own Python decoder)
and a float64 product, on random blocks of every supported type: 300 output rows (a tile of 256 and
a partial one), 1, 5 and 40 input rows, and the unsupported types refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from engine.qlinear import SUPPORTED, QuantEmbedding, QuantLinear  # noqa: E402

# Where each K-quant block keeps its float16 scales (byte offsets): set to finite values, the rest random.
HALF_FIELDS = {T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def random_blocks(qtype, rows: int, cols: int, rng) -> np.ndarray:
    """Raw rows [rows, row_bytes] of `qtype`: quantized random weights, or random codes with sane scales."""
    if qtype in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0):
        return gguf.quants.quantize(rng.standard_normal((rows, cols)).astype(np.float32), qtype)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        raw[..., offset:offset + 2] = rng.uniform(-0.05, 0.05, raw.shape[:2]).astype(np.float16)[..., None].view(np.uint8)
    raw[:2, 0, :] = 0  # a block of all-zero codes and scales
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K, T.F16, T.BF16, T.F32])
def test_product_equals_dequantize_then_multiply(qtype):
    rng = np.random.default_rng(int(qtype))
    rows, cols = 300, 512
    raw = random_blocks(qtype, rows, cols, rng)
    weight = dequantize(raw, qtype).astype(np.float64).reshape(rows, cols)  # the oracle's decoding
    bias = torch.randn(rows)
    layer = QuantLinear(torch.from_numpy(raw), int(qtype), cols, bias)
    for n in (1, 5, 40):
        x = torch.randn(n, cols)
        expected = x.double().numpy() @ weight.T + bias.double().numpy()
        got = layer(x).double().numpy()
        assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    table = QuantEmbedding(torch.from_numpy(raw), int(qtype), cols)
    ids = torch.tensor([[0, 299, 7], [1, 1, 256]])
    assert torch.equal(table(ids), torch.from_numpy(weight[ids.numpy()].astype(np.float32)))


def test_supported_types_are_the_issue_list():
    assert set(SUPPORTED.values()) == {"Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"}
