"""The quantized kernels (engine/quant_kernels.py) against gguf's own dequantizer in float64.

Two references for each product out = x @ dequant(W).T:
- the float64 product with gguf.quants.dequantize's matrix (an independent oracle). The kernels
  quantize each activation block to int8 (a multiple of A / 127 for the block's max |x| = A, off by at
  most A / 254), so |out - ref| <= sum_i |W[n, i]| * A_b(i) / 254, plus float32 rounding;
- numpy quantizing x the same way (rounding ties to even), then float64: equal within 1e-5 of the
  magnitude sum_i |W[n, i] x_i| (only the summation order and float32 differ).
Random blocks come from gguf.quants.quantize where it has the type (Q8_0, Q4_0, F16, BF16), else
random bytes with scales of a sane size (the K-quants). The extension is built once per machine;
without a C++ compiler the tests are skipped, with one, a build failure fails them.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES
from gguf.constants import GGMLQuantizationType as T

from engine import fused, quant_kernels

QUANTIZED = [T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K]
FLOATS = [T.F16, T.BF16]
SCALE_BYTES = {T.Q8_0: slice(0, 2), T.Q4_0: slice(0, 2), T.Q4_K: slice(0, 4), T.Q5_K: slice(0, 4),
               T.Q6_K: slice(208, 210)}  # the f16 d (and dmin) of each block
ERRORS: dict[str, list[float]] = {}  # per type, the worst relative differences (test_worst_errors_are_reported)


def build(flags: str | None = None):
    """The extension, built with extra flags for another vector path when asked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTRAL_LSP_FUSED", "auto")
        if flags is None:
            built = quant_kernels.load(build=True)
            reason = quant_kernels.failure()
        else:
            mp.setenv("CODESTRAL_LSP_FUSED_CFLAGS", flags)
            name = "codestral_quant_kernels_" + re.sub(r"\W+", "_", flags).strip("_")  # beside the native build
            other = fused.Extension(name, quant_kernels.EXTENSION.source)
            built, reason = other.load(build=True), other.failure
    if built is None:
        if not (shutil.which("c++") or shutil.which("g++")):
            pytest.skip("no C++ compiler: the quantized kernels cannot be built here")
        pytest.fail(f"the quantized kernels did not build: {reason}")
    return built


@pytest.fixture(scope="module")
def module():
    return build()


@pytest.fixture
def kernels(module, monkeypatch):
    """engine.quant_kernels as a caller uses it (tests/conftest.py turns the extensions off)."""
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "auto")
    return quant_kernels


def random_raw(qtype, n: int, k: int, rng) -> np.ndarray:
    """[n, row_bytes] uint8 of random blocks of qtype."""
    block, nbytes = GGML_QUANT_SIZES[qtype]
    if qtype in (T.Q8_0, T.Q4_0, T.F16, T.BF16):
        w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 1, (n, 1))).astype(np.float32)
        return np.ascontiguousarray(quants.quantize(w, qtype).view(np.uint8).reshape(n, -1))
    raw = rng.integers(0, 256, (n, k // block, nbytes), dtype=np.uint8)
    scales = SCALE_BYTES[qtype]
    fields = (scales.stop - scales.start) // 2
    raw[:, :, scales] = rng.uniform(1e-3, 1e-2, (n, k // block, fields)).astype(np.float16).view(np.uint8)
    return raw.reshape(n, -1)


def reference(qtype, raw: np.ndarray, x: np.ndarray, same_quantization: bool) -> tuple[np.ndarray, np.ndarray]:
    """(x @ W.T in float64, the magnitude |x| @ |W|.T), x first quantized as the kernels do if asked."""
    n, k = raw.shape[0], x.shape[1]
    w = quants.dequantize(raw, qtype).astype(np.float64).reshape(n, k)
    if same_quantization and qtype not in FLOATS:
        x = quantize_like_the_kernels(x, 32 if GGML_QUANT_SIZES[qtype][0] == 32 else 256)
    return x.astype(np.float64) @ w.T, np.abs(x).astype(np.float64) @ np.abs(w).T


def quantize_like_the_kernels(x: np.ndarray, block: int) -> np.ndarray:
    """x [rows, K] float32 -> the float values of its int8 codes: per block, scale = max|x| / 127."""
    b = x.reshape(x.shape[0], -1, block)  # [rows, K / block, block]
    amax = np.abs(b).max(-1, keepdims=True)
    inverse = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    codes = np.rint(b * inverse)
    return (codes * (amax / np.float32(127)).astype(np.float64)).reshape(x.shape)


def rounding_bound(qtype, raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[rows, N]: sum_i |W[n, i]| * (max |x| of i's block) / 254, what int8 activations may cost."""
    n, k = raw.shape[0], x.shape[1]
    if qtype in FLOATS:
        return np.zeros((x.shape[0], n))
    block = 32 if GGML_QUANT_SIZES[qtype][0] == 32 else 256
    w = np.abs(quants.dequantize(raw, qtype).astype(np.float64).reshape(n, k))
    half_step = np.repeat(np.abs(x.reshape(x.shape[0], -1, block)).max(-1) / 254, block, axis=1)  # [rows, K]
    return half_step @ w.T


def check(module, qtype, raw: np.ndarray, x: np.ndarray) -> None:
    out = torch.empty(x.shape[0], raw.shape[0])
    module.qmatmul(torch.from_numpy(x), torch.from_numpy(raw), int(qtype), out)
    out = out.numpy().astype(np.float64)
    same, magnitude = reference(qtype, raw, x, same_quantization=True)
    assert np.all(np.abs(out - same) <= 1e-5 * magnitude + 1e-30), \
        f"{qtype.name}: {np.max(np.abs(out - same) / (magnitude + 1e-30))} of the magnitude from numpy's int8 product"
    exact, magnitude = reference(qtype, raw, x, same_quantization=False)
    bound = rounding_bound(qtype, raw, x) + 1e-5 * magnitude + 1e-30
    assert np.all(np.abs(out - exact) <= bound), f"{qtype.name}: {np.max(np.abs(out - exact) / bound)} of the bound"
    worst = ERRORS.setdefault(qtype.name, [0.0, 0.0, 0.0])
    worst[:] = max(worst[0], float(np.max(np.abs(out - same) / (magnitude + 1e-30)))), \
        max(worst[1], float(np.max(np.abs(out - exact) / (magnitude + 1e-30)))), \
        max(worst[2], float(np.max(np.abs(out - exact) / bound)))


@pytest.mark.parametrize("qtype", QUANTIZED + FLOATS, ids=lambda t: t.name)
@pytest.mark.parametrize("rows", [1, 5, 16])
def test_random_blocks_against_gguf(module, qtype, rows):
    """K of one block and of many (an odd count: the AVX-512 code takes blocks of 32 two by two), and
    N = 37, not a multiple of the tile of 32 weight rows that the threads share out."""
    rng = np.random.default_rng(int(qtype) * 100 + rows)
    block = GGML_QUANT_SIZES[qtype][0]
    for k in ([7, 96] if block == 1 else [block, block * (37 if block == 32 else 5)]):
        raw = random_raw(qtype, 37, k, rng)
        x = (rng.standard_normal((rows, k)) * rng.uniform(0.1, 10, (rows, 1))).astype(np.float32)
        check(module, qtype, raw, x)


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x80, 0x7F])
def test_the_largest_and_smallest_codes(module, qtype, fill):
    """Every byte but the f16 scales set to one value: codes 0 and 15 (Q4_0), -128 and 127 (Q8_0), the
    largest codes, 6-bit scales and minimums (K-quants), Q6_K's scales -128 and 127."""
    rng = np.random.default_rng(fill)
    block, nbytes = GGML_QUANT_SIZES[qtype]
    raw = random_raw(qtype, 19, block * 3, rng).reshape(19, 3, nbytes)
    scales = SCALE_BYTES[qtype]
    kept = raw[:, :, scales].copy()
    raw[:] = fill
    raw[:, :, scales] = kept
    x = rng.standard_normal((5, block * 3)).astype(np.float32)
    x[1] = 0.0  # a row of zeros: every block's scale 0
    x[2, ::7] = 1e4  # one large value a block or so: the others round to few codes
    check(module, qtype, raw.reshape(19, -1), x)


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_scales_of_zero_give_zero(kernels, qtype):
    rng = np.random.default_rng(1)
    block, nbytes = GGML_QUANT_SIZES[qtype]
    raw = random_raw(qtype, 17, block * 2, rng).reshape(17, 2, nbytes)
    raw[:, :, SCALE_BYTES[qtype]] = 0
    out = kernels.qmatmul(torch.randn(3, block * 2), torch.from_numpy(raw.reshape(17, -1)), qtype)
    assert torch.equal(out, torch.zeros(3, 17))


@pytest.mark.parametrize("qtype", QUANTIZED + FLOATS, ids=lambda t: t.name)
def test_dequantize_rows_equals_gguf(kernels, qtype):
    rng = np.random.default_rng(2)
    block = GGML_QUANT_SIZES[qtype][0]
    raw = random_raw(qtype, 40, max(block, 8) * 2, rng)
    expected = quants.dequantize(raw, qtype).astype(np.float32).reshape(40, -1)
    tile = kernels.dequantize_rows(torch.from_numpy(raw), qtype, 3, 21)
    np.testing.assert_array_equal(tile.numpy(), expected[3:24])
    assert kernels.dequantize_rows(torch.from_numpy(raw), qtype, 40, 0).shape == (0, expected.shape[1])


def test_the_vector_code_matches_the_cpu(module):
    """-march=native picks the widest kernels this CPU runs; CODESTRAL_LSP_FUSED_CFLAGS narrows them."""
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("the CPU's flags are unknown")
    with open("/proc/cpuinfo") as cpuinfo:
        flags = set(next((line.split() for line in cpuinfo if line.startswith("flags")), []))
    extra = os.environ.get("CODESTRAL_LSP_FUSED_CFLAGS", "").split()
    if "-mno-avx512f" in extra or "-mno-avx2" in extra:  # AVX-512 needs AVX2 in GCC
        flags = {f for f in flags if not f.startswith("avx512")}
    if "-mno-avx2" in extra:
        flags -= {"avx2"}
    wide = {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags
    assert module.isa == ("avx512vnni" if wide else "avx2" if {"avx2", "fma", "f16c"} <= flags else "scalar")


@pytest.mark.parametrize("flags", ["-mno-avx512f", "-mno-avx2 -mno-fma"], ids=["avx2", "plain"])
def test_the_narrower_paths_agree(module, flags):
    """The AVX2 kernels and the plain loops, built beside the native ones (each once per machine),
    against the same references on every type."""
    other = build(flags)
    assert other.isa in ("avx2", "scalar") and other.isa != module.isa or other.isa == module.isa == "scalar"
    rng = np.random.default_rng(3)
    for qtype in QUANTIZED + FLOATS:
        block = GGML_QUANT_SIZES[qtype][0]
        k = 96 if block == 1 else block * 3
        raw, x = random_raw(qtype, 21, k, rng), rng.standard_normal((6, k)).astype(np.float32)
        check(other, qtype, raw, x)
        ours = torch.empty(6, 21)
        module.qmatmul(torch.from_numpy(x), torch.from_numpy(raw), int(qtype), ours)
        theirs = torch.empty(6, 21)
        other.qmatmul(torch.from_numpy(x), torch.from_numpy(raw), int(qtype), theirs)
        magnitude = reference(qtype, raw, x, same_quantization=False)[1]
        assert np.all(np.abs(theirs.numpy() - ours.numpy()) <= 2e-5 * magnitude), qtype.name  # each 1e-5 from numpy's


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K, T.F16, T.BF16])
def test_a_prefill_call_gives_each_row_what_a_step_gives_it(kernels, qtype):
    # A call of many rows (a prefill: large tiles) against the same rows one at a time and in the engine's
    # old pieces of 16 (decode and verification: small tiles): bit for bit, so cold and warm runs agree.
    rng = np.random.default_rng(int(qtype))
    block = 256 if qtype in (T.Q4_K, T.Q5_K, T.Q6_K) else 32
    raw = torch.from_numpy(random_raw(qtype, 600, block * 3, rng))  # N = 600: several large tiles
    x = torch.from_numpy(rng.standard_normal((45, block * 3)).astype(np.float32))
    whole = kernels.qmatmul(x, raw, qtype)
    one_by_one = torch.cat([kernels.qmatmul(x[i:i + 1], raw, qtype) for i in range(45)])
    in_sixteens = torch.cat([kernels.qmatmul(x[i:i + 16], raw, qtype) for i in range(0, 45, 16)])
    assert torch.equal(whole, in_sixteens)
    assert torch.allclose(whole, one_by_one, rtol=0, atol=1e-5 * float(whole.abs().max()))
    assert torch.equal(whole[:8], kernels.qmatmul(x[:8], raw, qtype))  # one group, both tile sizes


def test_the_kernels_refuse_what_they_cannot_multiply(kernels):
    raw = torch.from_numpy(random_raw(T.Q4_K, 4, 512, np.random.default_rng(4)))
    with pytest.raises(RuntimeError, match="not a multiple of the block size 256"):
        kernels.qmatmul(torch.randn(1, 500), raw, T.Q4_K)
    with pytest.raises(RuntimeError, match="hold 512 weights"):
        kernels.qmatmul(torch.randn(1, 768), raw, T.Q4_K)
    with pytest.raises(RuntimeError, match="no rows"):
        kernels.qmatmul(torch.randn(0, 512), raw, T.Q4_K)
    with pytest.raises(RuntimeError, match="not whole blocks"):
        kernels.qmatmul(torch.randn(1, 512), raw[:, :100].contiguous(), T.Q4_K)
    with pytest.raises(RuntimeError, match="has no kernel"):
        kernels.qmatmul(torch.randn(1, 512), raw, T.Q2_K)
    with pytest.raises(RuntimeError, match="float32"):
        kernels.qmatmul(torch.randn(1, 512).double(), raw, T.Q4_K)
    with pytest.raises(RuntimeError, match="within the 4 rows"):
        kernels.dequantize_rows(raw, T.Q4_K, 2, 3)


def test_worst_errors_are_reported(module):
    """Not a check: prints, per type, the largest differences of the tests above (pytest -s), each
    relative to the magnitude sum_i |W[n, i] x_i|: from numpy's int8 product, from the float64 oracle,
    and the latter as a fraction of its bound."""
    for name, (same, exact, of_bound) in sorted(ERRORS.items()):
        print(f"\n{name}: {same:.2g} from numpy's int8 product, {exact:.2g} from float64 ({of_bound:.2f} of the bound)", end="")


def test_the_kernel_benchmark_reports_every_figure(kernels):
    """`codestral-lsp bench kernels` on a small matrix: its keys, and its random blocks are finite."""
    from codestral_lsp.tools.bench import _random_blocks, bench_kernels

    result = bench_kernels(types=("Q4_K", "Q8_0"), shapes=((64, 512),), rows=(1, 5), calls=2)
    assert set(result["kernels"]) == {"Q4_K 64x512", "Q8_0 64x512"}
    entry = result["kernels"]["Q4_K 64x512"]
    assert set(entry) == {"weight_mb", "rows_1", "rows_5", "cost_5_over_1", "cpu_cost_5_over_1"}
    assert set(entry["rows_5"]) == {"ms", "best_ms", "cpu_ms", "gb_per_s", "torch_float32_ms", "torch_float32_best_ms",
                                    "torch_float32_cpu_ms"}
    for name in ("Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"):
        dense = kernels.dequantize_rows(_random_blocks(name, 8, 512, torch.Generator()), kernels.QTYPES[name])
        assert torch.isfinite(dense).all() and dense.abs().max() > 0, name


def test_the_worked_examples_of_the_docstring(kernels):
    """engine/quant_kernels.py's examples, one block each, through gguf's dequantizer and ours."""
    f16 = lambda v: list(np.float16(v).tobytes())
    q8 = f16(0.01) + [0] * 32
    q8[2 + 3] = 256 - 100
    q4 = f16(0.5) + [0x3A] + [0] * 15
    q4k = f16(0.1) + f16(0.2) + [3, 0, 0, 0, 5] + [0] * 7 + [0x07] + [0] * 127
    q5k = f16(0.1) + f16(0.2) + [3, 0, 0, 0, 5] + [0] * 7 + [1] + [0] * 31 + [0x07] + [0] * 127
    q6k = [0x05] + [0] * 127 + [0b10] + [0] * 63 + [10] + [0] * 15 + f16(0.01)
    cases = [(T.Q8_0, q8, {3: -1.0}), (T.Q4_0, q4, {0: 1.0, 16: -2.5}), (T.Q4_K, q4k, {0: 1.1}),
             (T.Q5_K, q5k, {0: 5.9}), (T.Q6_K, q6k, {0: 0.5})]
    for qtype, block, expected in cases:
        raw = np.array([block], dtype=np.uint8)
        ours = kernels.dequantize_rows(torch.from_numpy(raw), qtype)[0]
        np.testing.assert_array_equal(ours.numpy(), quants.dequantize(raw, qtype)[0])
        for i, value in expected.items():
            assert abs(ours[i].item() - value) < 2e-3, (qtype.name, i)


def attention_reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, used: int) -> torch.Tensor:
    """Plain float64 attention: query t at position used - T + t over slots 0..its position, query head
    h over KV head h // (H / H_kv)."""
    T, H, D = q.shape
    group = H // keys.shape[0]
    out = torch.empty(T, H, D, dtype=torch.float64)
    for t in range(T):
        seen = used - T + t + 1
        for h in range(H):
            k, v = keys[h // group, :seen].double(), values[h // group, :seen].double()
            weights = torch.softmax(k @ q[t, h].double() / D ** 0.5, dim=0)
            out[t, h] = weights @ v
    return out.reshape(T, H * D)


ATTENTION_SHAPES = [(1, 16, 4, 128, 40, 40), (5, 8, 2, 72, 64, 30), (16, 4, 4, 16, 20, 20), (3, 6, 3, 40, 10, 3)]


@pytest.mark.parametrize("T,H,H_kv,D,S,used", ATTENTION_SHAPES)
def test_attention_over_a_half_cache_against_float64(kernels, T, H, H_kv, D, S, used):
    """`attend_half` (a GGUF model's steps over its float16 cache) against plain float64 attention on the
    same float16 keys and values, for one query and verifications, grouped heads, head sizes that are
    not a multiple of the vector width, slots past `used` (stale: never read) and a first chunk (used = T);
    and each row exactly what a call for that row alone gives it (a decode step agrees with a verification)."""
    gen = torch.Generator().manual_seed(T * 100 + D)
    q = torch.randn(T, H, D, generator=gen) * 2
    keys, values = (torch.randn(H_kv, S, D, generator=gen).half() for _ in range(2))
    keys[:, used:], values[:, used:] = float("nan"), float("nan")  # stale slots: never read
    got = kernels.attend_half(q, keys, values, used)
    expected = attention_reference(q, keys, values, used)
    assert got.dtype == torch.float32 and got.shape == (T, H * D)
    assert torch.allclose(got.double(), expected, rtol=0, atol=2e-6 * float(values[:, :used].abs().max()))
    for t in range(T):
        alone = kernels.attend_half(q[t:t + 1].contiguous(), keys, values, used - T + t + 1)
        assert torch.equal(alone[0], got[t]), t


@pytest.mark.parametrize("flags", ["-mno-avx512f", "-mno-avx2 -mno-fma"], ids=["avx2", "plain"])
def test_the_narrower_paths_attend_alike(module, flags):
    other = build(flags)
    T, H, H_kv, D, S, used = ATTENTION_SHAPES[1]
    gen = torch.Generator().manual_seed(5)
    q, keys, values = torch.randn(T, H, D, generator=gen), torch.randn(H_kv, S, D).half(), torch.randn(H_kv, S, D).half()
    expected = attention_reference(q, keys, values, used)
    assert torch.allclose(other.attend_half(q, keys, values, used).double(), expected, rtol=0, atol=1e-5)


def test_attention_refuses_what_does_not_fit(kernels):
    q, cache = torch.randn(2, 4, 16), torch.zeros(2, 8, 16, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="float16"):
        kernels.attend_half(q, cache.float(), cache.float(), 4)
    with pytest.raises(RuntimeError, match="must lie in"):
        kernels.attend_half(q, cache, cache, 9)
    with pytest.raises(RuntimeError, match="must lie in"):
        kernels.attend_half(q, cache, cache, 1)
    with pytest.raises(RuntimeError, match="does not fit"):
        kernels.attend_half(torch.randn(2, 3, 16), cache, cache, 4)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        kernels.attend_half(q.transpose(0, 1), cache, cache, 4)
