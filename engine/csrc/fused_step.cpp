// One decode step (or a speculative verification of up to 16 tokens) of a Mistral model in one call.
//
// The PyTorch step of a small model is mostly per-operator overhead: ~300 small operators, each
// 10-20 us on a 2-core CPU, around ~1 ms of arithmetic. Here the whole step is one C++ call, and the
// matrices are read in bfloat16 (half the bytes of float32) and multiplied in float32, so for weights
// that are bfloat16 values (checkpoints trained and saved in bfloat16) the products are those of the
// float32 model; only the summation order differs (logits within ~2e-5 in the tests).
//
// Each weight is widened once for all T rows of x, so a verification of 5 tokens costs ~1.5-1.9x one
// decode step with AVX-512, ~2.5-3x with AVX2 (its multiply-adds, not its memory traffic, grow with T).
//
// Inputs (row-major): wqkv [(H + 2 Hkv) D, dim], wo [dim, H D], w13 [2 hidden, dim] (w1 rows then w3
// rows), w2 [dim, hidden], output [vocab, dim], all bfloat16 and packed at construction (`pack`); the
// embeddings [vocab, dim] float32 or bfloat16 (rows widened as they are read: the model may keep its
// table in bfloat16, engine/model.py); the KV cache [L, 1, Hkv, S, D] float32 of engine/kv_cache.py,
// written at positions pos..pos+T-1. The packed output table also serves the model's prefill logits
// (`logits`), so the model need not keep a float32 one (engine/fused.py, `release_output_table`).
// Vector code for the CPU the compiler targets (-march=native): AVX-512 (16 floats a register) or
// AVX2 with FMA (8 floats, 16 registers: most laptops); plain loops elsewhere. `isa` says which.

#include <torch/extension.h>
#include <pybind11/stl.h>
#include <ATen/Parallel.h>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int kMaxRows = 16;   // tokens per call (engine/model.py's STEP_ROWS, checked on attach): a decode step or a verification of up to 15 drafts
constexpr int kRowGroup = 6;   // rows of x per pass over a tile (a tile stays in L1 between groups)
#if defined(__AVX512F__)
constexpr const char* kIsa = "avx512";
constexpr int kLanes = 16;     // floats per register
#elif defined(__AVX2__) && defined(__FMA__)
constexpr const char* kIsa = "avx2";
constexpr int kLanes = 8;
#else
constexpr const char* kIsa = "scalar";
constexpr int kLanes = 0;      // no vector code, no interleaving (pack)
#endif

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Matrices are packed in tiles of 64 output rows: P [out / 64, in, 64] bf16, tile b holding row
// W[64 b + c] in column c of P[b] (up to the interleaving below). A tile is one contiguous 64 x in
// block, and a product is 64 outputs at a time, each input i adding x[t, i] * P[b, i, :] to them: no
// horizontal sums, and each widened weight serves all T rows of x.
//
// Interleaving: a register-load of 2 kLanes bfloat16 values is kLanes 32-bit words; shifting each left
// by 16 gives its low halves as floats, masking off the low halves gives its high halves, one
// instruction each (no shuffles). So within each block of 2 kLanes columns, P holds column j at 2 j
// and column kLanes + j at 2 j + 1, and the two results are columns 0..kLanes-1 and kLanes..2 kLanes-1
// in order. Worked example, AVX2 (kLanes 8), W [128, 3]: two tiles; W[70, 2] is tile 1, column 6,
// block 0, j = 6, low half: P[1, 2, 12]; W[79, 2] is column 15 = 8 + 7: P[1, 2, 15].
constexpr int64_t kTile = 64;

torch::Tensor pack(const torch::Tensor& w) {
  TORCH_CHECK(w.scalar_type() == torch::kBFloat16 && w.dim() == 2 && w.size(0) % kTile == 0,
              "fused step: weights must be bfloat16 [out, in] with out a multiple of 64");
  const int64_t tiles = w.size(0) / kTile, in = w.size(1);
  torch::Tensor rows = w.contiguous();
  if (kLanes > 0)  // [tiles, blocks, 2, kLanes, in] -> [tiles, blocks, kLanes, 2, in]
    rows = rows.view({tiles, kTile / (2 * kLanes), 2, kLanes, in}).transpose(2, 3);
  return rows.reshape({tiles, kTile, in}).transpose(1, 2).contiguous();  // [out / 64, in, 64]
}

// W [out, in] bfloat16 again from pack(W): the same steps backwards.
torch::Tensor unpack(const torch::Tensor& packed) {
  TORCH_CHECK(packed.scalar_type() == torch::kBFloat16 && packed.dim() == 3 && packed.size(2) == kTile,
              "unpack: a packed tensor [out / 64, in, 64] bfloat16");
  const int64_t tiles = packed.size(0), in = packed.size(1);
  torch::Tensor rows = packed.transpose(1, 2);  // [tiles, 64, in], interleaved columns as rows
  if (kLanes > 0)  // [tiles, blocks, kLanes, 2, in] -> [tiles, blocks, 2, kLanes, in]
    rows = rows.reshape({tiles, kTile / (2 * kLanes), kLanes, 2, in}).transpose(2, 3);
  return rows.reshape({tiles * kTile, in}).contiguous();
}

// Vector operations on kLanes floats, written once for AVX-512 and AVX2 below (products, softmax, SiLU).
#if defined(__AVX512F__)
using reg = __m512;
inline reg reg_zero() { return _mm512_setzero_ps(); }
inline reg reg_broadcast(const float* p) { return _mm512_set1_ps(*p); }
inline reg reg_fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
inline reg reg_load(const float* p) { return _mm512_loadu_ps(p); }
inline void reg_store(float* p, reg v) { _mm512_storeu_ps(p, v); }
inline reg reg_add(reg a, reg b) { return _mm512_add_ps(a, b); }
inline reg reg_set(float v) { return _mm512_set1_ps(v); }
inline reg reg_sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
inline reg reg_mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
inline reg reg_div(reg a, reg b) { return _mm512_div_ps(a, b); }
inline reg reg_min(reg a, reg b) { return _mm512_min_ps(a, b); }
inline reg reg_max(reg a, reg b) { return _mm512_max_ps(a, b); }
inline reg reg_fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
inline reg reg_round(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline reg reg_times_pow2(reg a, reg n) { return _mm512_scalef_ps(a, n); }  // a 2^n
inline float reg_sum(reg a) { return _mm512_reduce_add_ps(a); }
// 2 kLanes packed bfloat16 values -> columns 0..kLanes-1 (low) and kLanes..2 kLanes-1 (high).
inline void widen_pair(const uint16_t* p, reg& low, reg& high) {
  const __m512i v = _mm512_loadu_si512(p);
  low = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  high = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
template <int T> constexpr int columns_per_pass() { return 64; }  // 4 x 6 accumulators at most, of 32 registers
#elif defined(__AVX2__) && defined(__FMA__)
using reg = __m256;
inline reg reg_zero() { return _mm256_setzero_ps(); }
inline reg reg_broadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline reg reg_fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
inline reg reg_load(const float* p) { return _mm256_loadu_ps(p); }
inline void reg_store(float* p, reg v) { _mm256_storeu_ps(p, v); }
inline reg reg_add(reg a, reg b) { return _mm256_add_ps(a, b); }
inline reg reg_set(float v) { return _mm256_set1_ps(v); }
inline reg reg_sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
inline reg reg_mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
inline reg reg_div(reg a, reg b) { return _mm256_div_ps(a, b); }
inline reg reg_min(reg a, reg b) { return _mm256_min_ps(a, b); }
inline reg reg_max(reg a, reg b) { return _mm256_max_ps(a, b); }
inline reg reg_fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
inline reg reg_round(reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// a 2^n for whole n in [-126, 127] (what exp's clamp allows): n goes straight into the exponent bits.
inline reg reg_times_pow2(reg a, reg n) {
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(a, _mm256_castsi256_ps(bits));
}
inline float reg_sum(reg a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
inline void widen_pair(const uint16_t* p, reg& low, reg& high) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  low = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  high = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
// 8 accumulators for 1 row, 8 for 2, 6-12 for 3-6 rows: at most 12 of the 16 registers.
template <int T> constexpr int columns_per_pass() { return T == 1 ? 64 : T == 2 ? 32 : 16; }
#endif

// y[t * ldy + 64 b + c - first] = sum_i x[t, i] W[64 b + c, i] (+ y[...] when accumulate), for tiles
// b0 <= b < b1, on the calling thread, T <= kRowGroup. Each pass covers C columns of a tile for all T
// rows: enough independent accumulators for the multiply-adds to overlap, few enough to stay in
// registers (32 with AVX-512, 16 with AVX2).
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define VECTOR_MATH 1
template <int T>
void tiles_kernel(const uint16_t* P, int64_t b0, int64_t b1, int64_t in, const float* x, float* y, int64_t ldy,
                  int64_t first, bool accumulate) {
  constexpr int C = columns_per_pass<T>(), kRegs = C / kLanes;  // kRegs registers per row and pass
  // With several passes, the inputs go in blocks of kBlock (8 KB of a tile, which stays in L1 for all
  // the passes over it) and the partial sums wait in y: the tile is read from memory once, not once a
  // pass (the output table streams from L3).
  constexpr int64_t kBlock = 64;
  const int64_t block = C == kTile ? in : kBlock;
  // Passes over a block read each 128-byte row in 32- or 64-byte pieces, a pattern that the hardware
  // prefetchers follow poorly from L3: the first pass prefetches the next block (past the tile's end,
  // the next tile, which follows in memory; prefetches never fault). One pass streams on its own.
  constexpr int64_t kAhead = 16;
  const int64_t ahead = C == kTile ? kAhead : kBlock;
  for (int64_t b = b0; b < b1; ++b) {
    const uint16_t* tile = P + b * in * kTile;
    for (int64_t i0 = 0; i0 < in; i0 += block) {
      const int64_t i1 = std::min(in, i0 + block);
      for (int c0 = 0; c0 < kTile; c0 += C) {
        float* out = y + b * kTile + c0 - first;  // row t, register q at out + t * ldy + q * kLanes
        reg acc[T][kRegs];
        for (int t = 0; t < T; ++t)
          for (int q = 0; q < kRegs; ++q) acc[t][q] = i0 == 0 ? reg_zero() : reg_load(out + t * ldy + q * kLanes);
        for (int64_t i = i0; i < i1; ++i) {
          const uint16_t* wi = tile + i * kTile + c0;
          if (c0 == 0) {  // ask for row i of the next block (or kAhead rows on) while this one computes
            const char* next = reinterpret_cast<const char*>(tile + (i + ahead) * kTile);
            __builtin_prefetch(next);
            __builtin_prefetch(next + 64);
          }
          for (int q = 0; q < kRegs; q += 2) {
            reg low, high;
            widen_pair(wi + q * kLanes, low, high);
            for (int t = 0; t < T; ++t) {
              const reg xv = reg_broadcast(x + t * in + i);
              acc[t][q] = reg_fmadd(low, xv, acc[t][q]);
              acc[t][q + 1] = reg_fmadd(high, xv, acc[t][q + 1]);
            }
          }
        }
        for (int t = 0; t < T; ++t)
          for (int q = 0; q < kRegs; ++q) {
            float* o = out + t * ldy + q * kLanes;
            reg_store(o, i0 == 0 && accumulate ? reg_add(reg_load(o), acc[t][q]) : acc[t][q]);
          }
      }
    }
  }
}
#else
template <int T>
void tiles_kernel(const uint16_t* P, int64_t b0, int64_t b1, int64_t in, const float* x, float* y, int64_t ldy,
                  int64_t first, bool accumulate) {
  for (int64_t b = b0; b < b1; ++b) {
    const uint16_t* tile = P + b * in * kTile;
    float acc[T][kTile] = {};
    for (int64_t i = 0; i < in; ++i) {
      float w[kTile];
      for (int c = 0; c < kTile; ++c) w[c] = bf16_to_float(tile[i * kTile + c]);
      for (int t = 0; t < T; ++t) {
        const float xv = x[t * in + i];
        for (int c = 0; c < kTile; ++c) acc[t][c] += w[c] * xv;
      }
    }
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < kTile; ++c) {
        float& out = y[t * ldy + b * kTile + c - first];
        out = accumulate ? out + acc[t][c] : acc[t][c];
      }
  }
}
#endif

// tiles_kernel for any T <= 16: rows of x in groups of at most kRowGroup.
void tiles(const uint16_t* P, int64_t b0, int64_t b1, int64_t in, const float* x, int T, float* y, int64_t ldy,
           int64_t first, bool accumulate) {
  for (int t0 = 0; t0 < T; t0 += kRowGroup) {
    const int n = std::min(kRowGroup, T - t0);
    const float* xs = x + t0 * in;
    float* ys = y + t0 * ldy;
    switch (n) {
      case 1: tiles_kernel<1>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
      case 2: tiles_kernel<2>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
      case 3: tiles_kernel<3>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
      case 4: tiles_kernel<4>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
      case 5: tiles_kernel<5>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
      default: tiles_kernel<6>(P, b0, b1, in, xs, ys, ldy, first, accumulate); break;
    }
  }
}

// y [T, ldy] = x [T, in] times the packed W [out, in] transposed (or added to y); tiles split among threads.
void linear(const torch::Tensor& packed, const float* x, int T, float* y, int64_t ldy, bool accumulate) {
  const uint16_t* P = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  const int64_t in = packed.size(1);
  at::parallel_for(0, packed.size(0), 1, [&](int64_t b0, int64_t b1) { tiles(P, b0, b1, in, x, T, y, ldy, 0, accumulate); });
}

// argmax over r of sum_i W[r, i] x[t, i] for each row t: the first index among equal maxima, as
// torch.argmax. Groups of tiles go to threads; each keeps a group's logits in a local buffer (never
// the whole [T, out] table) and its best per row, and the groups are merged in order.
std::vector<int64_t> linear_argmax(const torch::Tensor& packed, const float* x, int T) {
  constexpr int64_t kGroup = 8;  // tiles: 512 logits per row of x at a time
  const uint16_t* P = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  const int64_t in = packed.size(1), n_tiles = packed.size(0), groups = (n_tiles + kGroup - 1) / kGroup;
  std::vector<float> best_value(groups * T);
  std::vector<int64_t> best_index(groups * T);
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<float> logits(T * kGroup * kTile);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b0 = g * kGroup, b1 = std::min(n_tiles, b0 + kGroup), r0 = b0 * kTile, rows = (b1 - b0) * kTile;
      tiles(P, b0, b1, in, x, T, logits.data(), kGroup * kTile, r0, false);
      for (int t = 0; t < T; ++t) {
        const float* l = &logits[t * kGroup * kTile];
        int64_t best = 0;
        for (int64_t i = 1; i < rows; ++i)
          if (l[i] > l[best]) best = i;
        best_value[g * T + t] = l[best];
        best_index[g * T + t] = r0 + best;
      }
    }
  });
  std::vector<int64_t> result(T);
  for (int t = 0; t < T; ++t) {
    int64_t winner = 0;
    for (int64_t g = 1; g < groups; ++g)
      if (best_value[g * T + t] > best_value[winner * T + t]) winner = g;
    result[t] = best_index[winner * T + t];
  }
  return result;
}

#ifdef VECTOR_MATH
// exp of kLanes floats: exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6
// polynomial (about 1 ulp, as the vectorized expf of libraries). Scalar loops calling std::exp were
// not all vectorized by the compiler.
inline reg reg_exp(reg x) {
  x = reg_max(reg_min(x, reg_set(88.37f)), reg_set(-87.33f));
  const reg n = reg_round(reg_mul(x, reg_set(1.44269504088896341f)));
  reg r = reg_fnmadd(n, reg_set(0.693359375f), x);  // ln2 in two parts: exact n * hi
  r = reg_fnmadd(n, reg_set(-2.12194440e-4f), r);
  reg p = reg_set(1.9875691500e-4f);
  p = reg_fmadd(p, r, reg_set(1.3981999507e-3f));
  p = reg_fmadd(p, r, reg_set(8.3334519073e-3f));
  p = reg_fmadd(p, r, reg_set(4.1665795894e-2f));
  p = reg_fmadd(p, r, reg_set(1.6666665459e-1f));
  p = reg_fmadd(p, r, reg_set(5.0000001201e-1f));
  p = reg_fmadd(p, reg_mul(r, r), reg_add(r, reg_set(1.f)));
  return reg_times_pow2(p, n);
}
#endif

// s[j] = exp(s[j] - top) for j < n; returns their sum.
float exp_shifted(float* s, int64_t n, float top) {
  int64_t j = 0;
  float total = 0.f;
#ifdef VECTOR_MATH
  reg sum = reg_set(0.f);
  const reg shift = reg_set(top);
  for (; j + kLanes <= n; j += kLanes) {
    const reg e = reg_exp(reg_sub(reg_load(s + j), shift));
    reg_store(s + j, e);
    sum = reg_add(sum, e);
  }
  total = reg_sum(sum);
#endif
  for (; j < n; ++j) {
    s[j] = std::exp(s[j] - top);
    total += s[j];
  }
  return total;
}

// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i].
void silu_times(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
#ifdef VECTOR_MATH
  const reg one = reg_set(1.f);
  for (; i + kLanes <= n; i += kLanes) {
    const reg g = reg_load(gate + i);
    const reg e = reg_exp(reg_sub(reg_set(0.f), g));
    reg_store(out + i, reg_mul(reg_div(g, reg_add(one, e)), reg_load(up + i)));
  }
#endif
  for (; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

// out[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * weight, as F.rms_norm in float32.
void rms_norm(const float* x, const float* weight, int T, int64_t dim, double eps, float* out) {
  for (int t = 0; t < T; ++t) {
    const float* xt = x + t * dim;
    float ss = 0.f;
    for (int64_t i = 0; i < dim; ++i) ss += xt[i] * xt[i];
    float scale = 1.f / std::sqrt(ss / dim + static_cast<float>(eps));
    for (int64_t i = 0; i < dim; ++i) out[t * dim + i] = xt[i] * scale * weight[i];
  }
}

// Rotate interleaved pairs (a, b) of `heads` heads of one row by (cos, sin) pairs rot [D/2, 2].
void rotate(float* v, int heads, int64_t D, const float* rot) {
  for (int h = 0; h < heads; ++h) {
    float* p = v + h * D;
    for (int64_t i = 0; i < D / 2; ++i) {
      float a = p[2 * i], b = p[2 * i + 1], c = rot[2 * i], s = rot[2 * i + 1];
      p[2 * i] = a * c - b * s;
      p[2 * i + 1] = a * s + b * c;
    }
  }
}

class FusedDecoder {
 public:
  FusedDecoder(torch::Tensor embeddings, std::vector<torch::Tensor> attention_norms,
               std::vector<torch::Tensor> wqkv, std::vector<torch::Tensor> wo,
               std::vector<torch::Tensor> ffn_norms, std::vector<torch::Tensor> w13,
               std::vector<torch::Tensor> w2, torch::Tensor norm, torch::Tensor output,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, double eps)
      : embeddings_(embeddings.contiguous()), attention_norms_(attention_norms), wqkv_(wqkv), wo_(wo),
        ffn_norms_(ffn_norms), w13_(w13), w2_(w2), norm_(norm.contiguous()), output_(pack(output.contiguous())),
        H_(n_heads), Hkv_(n_kv_heads), D_(head_dim), eps_(eps) {
    dim_ = embeddings_.size(1);
    vocab_ = output.size(0);
    hidden_ = w2[0].size(1);
    for (auto* list : {&wqkv_, &wo_, &w13_, &w2_})
      for (auto& w : *list) w = pack(w.contiguous());
    TORCH_CHECK(H_ % Hkv_ == 0 && D_ % 2 == 0, "fused step: n_heads must be a multiple of n_kv_heads");
    TORCH_CHECK(embeddings_.scalar_type() == torch::kFloat32 || embeddings_.scalar_type() == torch::kBFloat16,
                "fused step: embeddings must be float32 or bfloat16");
  }

  // Logits [T, vocab] of final hidden states h [T, dim] (any T): the output product of `step`, for
  // the hidden states that the PyTorch path computes (prefill).
  torch::Tensor logits(torch::Tensor h) {
    TORCH_CHECK(h.scalar_type() == torch::kFloat32 && h.is_contiguous() && h.dim() == 2 && h.size(1) == dim_,
                "fused step: hidden states must be [T, dim] float32, contiguous");
    const int T = static_cast<int>(h.size(0));
    auto out = torch::empty({T, vocab_}, torch::kFloat32);
    linear(output_, h.data_ptr<float>(), T, out.data_ptr<float>(), vocab_, false);  // rows in groups of 6 a tile
    return out;
  }

  // The output table [vocab, dim] bfloat16, unpacked from the copy the step reads.
  torch::Tensor output_weight() const { return unpack(output_); }

  // Logits [T, vocab] (or [1, vocab] for the last token only) after tokens at positions pos..pos+T-1,
  // whose keys and values are written into K and V. rotation: [T, D/2, 2] (cos, sin) of those positions.
  torch::Tensor step(const std::vector<int64_t>& tokens, int64_t pos, torch::Tensor rotation, torch::Tensor K,
                     torch::Tensor V, bool last_only) {
    std::vector<float> h = hidden(tokens, pos, rotation, K, V);
    const int T = static_cast<int>(tokens.size()), first = last_only ? T - 1 : 0;
    auto logits = torch::empty({T - first, vocab_}, torch::kFloat32);
    linear(output_, &h[first * dim_], T - first, logits.data_ptr<float>(), vocab_, false);
    return logits;
  }

  // The greedy token after each of the tokens: step(...).argmax(-1), the first index among equal
  // maxima, without writing the [T, vocab] logits anywhere.
  std::vector<int64_t> greedy(const std::vector<int64_t>& tokens, int64_t pos, torch::Tensor rotation,
                              torch::Tensor K, torch::Tensor V) {
    std::vector<float> h = hidden(tokens, pos, rotation, K, V);
    return linear_argmax(output_, h.data(), static_cast<int>(tokens.size()));
  }

 private:
  // The final normed hidden states [T, dim] of the step.
  std::vector<float> hidden(const std::vector<int64_t>& tokens, int64_t pos, torch::Tensor rotation, torch::Tensor K,
                            torch::Tensor V) {
    const int T = static_cast<int>(tokens.size());
    TORCH_CHECK(T >= 1 && T <= kMaxRows, "fused step: 1 to ", kMaxRows, " tokens per call");
    const int64_t L = static_cast<int64_t>(wqkv_.size()), S = K.size(3);
    TORCH_CHECK(K.is_contiguous() && V.is_contiguous() && K.scalar_type() == torch::kFloat32,
                "fused step: the cache must be contiguous float32");
    TORCH_CHECK(pos >= 0 && pos + T <= S, "fused step: positions past the cache");
    TORCH_CHECK(rotation.is_contiguous() && rotation.scalar_type() == torch::kFloat32 && rotation.size(0) == T &&
                rotation.size(1) * 2 == D_, "fused step: rotation must be [T, head_dim / 2, 2] float32");
    const int64_t dim = dim_, D = D_, H = H_, Hkv = Hkv_, group = H / Hkv;
    const int64_t qkv_width = (H + 2 * Hkv) * D;
    const int64_t* ids = tokens.data();
    for (int t = 0; t < T; ++t) TORCH_CHECK(ids[t] >= 0 && ids[t] < embeddings_.size(0), "fused step: token id out of range");
    const float* rot = rotation.data_ptr<float>();  // [T, D/2, 2]
    float* kc = K.data_ptr<float>();
    float* vc = V.data_ptr<float>();

    std::vector<float> x(T * dim), h(T * dim), qkv(T * qkv_width), att(T * H * D), gu(T * 2 * hidden_),
        act(T * hidden_), scores(T * H * (pos + T));
    if (embeddings_.scalar_type() == torch::kBFloat16) {  // exact: a bfloat16 value is a float32 value
      const uint16_t* emb = reinterpret_cast<const uint16_t*>(embeddings_.data_ptr());
      for (int t = 0; t < T; ++t)
        for (int64_t i = 0; i < dim; ++i) x[t * dim + i] = bf16_to_float(emb[ids[t] * dim + i]);
    } else {
      const float* emb = embeddings_.data_ptr<float>();
      for (int t = 0; t < T; ++t) std::memcpy(&x[t * dim], emb + ids[t] * dim, dim * sizeof(float));
    }
    const float scale = 1.f / std::sqrt(static_cast<float>(D));

    for (int64_t l = 0; l < L; ++l) {
      rms_norm(x.data(), attention_norms_[l].data_ptr<float>(), T, dim, eps_, h.data());
      linear(wqkv_[l], h.data(), T, qkv.data(), qkv_width, false);
      for (int t = 0; t < T; ++t) {
        float* row = &qkv[t * qkv_width];
        rotate(row, static_cast<int>(H + Hkv), D, rot + t * D);  // queries and keys, one rotation
        for (int64_t g = 0; g < Hkv; ++g) {  // keys and values of position pos + t into the cache
          int64_t at = ((l * Hkv + g) * S + pos + t) * D;
          std::memcpy(kc + at, row + (H + g) * D, D * sizeof(float));
          std::memcpy(vc + at, row + (H + Hkv + g) * D, D * sizeof(float));
        }
      }
      // Attention, one kv head at a time: its rows (T tokens times the `group` query heads that share
      // it) read each of its keys and values once, where row by row they would be read T group times
      // (a 900-token context is 0.5 MB of them per kv head and layer, read from L3). Row r is token
      // t = r / group (position pos + t, reading positions 0..pos+t) and query head g group + r % group.
      // A kv head's rows are split in chunks when there are fewer kv heads than threads.
      const int64_t rows = T * group, span = pos + T;
      const int64_t splits = std::min<int64_t>(rows, std::max<int64_t>(1, (at::get_num_threads() + Hkv - 1) / Hkv));
      const int64_t chunk = (rows + splits - 1) / splits;
      at::parallel_for(0, Hkv * splits, 1, [&](int64_t w0, int64_t w1) {
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t g = w / splits, r0 = (w % splits) * chunk, r1 = std::min(rows, r0 + chunk);
          const float* keys = kc + (l * Hkv + g) * S * D;
          const float* values = vc + (l * Hkv + g) * S * D;
          float* s = &scores[g * rows * span];  // row r's scores at s + r * span
          auto query = [&](int64_t r) { return &qkv[(r / group) * qkv_width + (g * group + r % group) * D]; };
          auto output = [&](int64_t r) { return &att[(r / group) * H * D + (g * group + r % group) * D]; };
          const int64_t last = r0 < r1 ? pos + (r1 - 1) / group : -1;  // the last position these rows read
          std::vector<float> top(rows, -INFINITY), total(rows);
          for (int64_t j = 0; j <= last; ++j) {
            const float* k = keys + j * D;
            for (int64_t r = r0; r < r1; ++r) {
              if (j > pos + r / group) continue;  // a later position of this verification: masked
              const float* q = query(r);
              float dot = 0.f;
              for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
              const float score = dot * scale;
              s[r * span + j] = score;
              top[r] = score > top[r] ? score : top[r];
            }
          }
          for (int64_t r = r0; r < r1; ++r) {
            total[r] = exp_shifted(s + r * span, pos + r / group + 1, top[r]);
            float* o = output(r);
            for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
          }
          for (int64_t j = 0; j <= last; ++j) {
            const float* v = values + j * D;
            for (int64_t r = r0; r < r1; ++r) {
              if (j > pos + r / group) continue;
              const float p = s[r * span + j];
              float* o = output(r);
              for (int64_t d = 0; d < D; ++d) o[d] += p * v[d];
            }
          }
          for (int64_t r = r0; r < r1; ++r) {
            const float inv = 1.f / total[r];
            float* o = output(r);
            for (int64_t d = 0; d < D; ++d) o[d] *= inv;
          }
        }
      });
      linear(wo_[l], att.data(), T, x.data(), dim, true);
      rms_norm(x.data(), ffn_norms_[l].data_ptr<float>(), T, dim, eps_, h.data());
      linear(w13_[l], h.data(), T, gu.data(), 2 * hidden_, false);
      for (int t = 0; t < T; ++t) silu_times(&gu[t * 2 * hidden_], &gu[t * 2 * hidden_ + hidden_], hidden_, &act[t * hidden_]);
      linear(w2_[l], act.data(), T, x.data(), dim, true);
    }
    rms_norm(x.data(), norm_.data_ptr<float>(), T, dim, eps_, h.data());
    return h;
  }

  torch::Tensor embeddings_;
  std::vector<torch::Tensor> attention_norms_, wqkv_, wo_, ffn_norms_, w13_, w2_;
  torch::Tensor norm_, output_;
  int64_t H_, Hkv_, D_, dim_, vocab_, hidden_;
  double eps_;
};

}  // namespace

// The kernels alone, for tests and measurements: x [T, in] float32 times W [out, in] transposed -> [T,
// out], and its argmax per row, W given packed (`pack(W)`, W bfloat16).
void check_kernel_args(const torch::Tensor& packed, const torch::Tensor& x) {
  TORCH_CHECK(packed.scalar_type() == torch::kBFloat16 && packed.dim() == 3 && packed.size(2) == kTile &&
              packed.is_contiguous(), "packed: pack(W)");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2 && x.size(1) == packed.size(1) &&
              x.size(0) >= 1 && x.size(0) <= kMaxRows, "x: [T, in] float32, 1 <= T <= ", kMaxRows);
}

torch::Tensor linear_for_tests(torch::Tensor packed, torch::Tensor x) {
  check_kernel_args(packed, x);
  const int64_t out = packed.size(0) * kTile;
  auto y = torch::empty({x.size(0), out}, torch::kFloat32);
  linear(packed, x.data_ptr<float>(), static_cast<int>(x.size(0)), y.data_ptr<float>(), out, false);
  return y;
}

std::vector<int64_t> argmax_for_tests(torch::Tensor packed, torch::Tensor x) {
  check_kernel_args(packed, x);
  return linear_argmax(packed, x.data_ptr<float>(), static_cast<int>(x.size(0)));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("isa") = kIsa;  // the vector code compiled: "avx512", "avx2" or "scalar"
  m.attr("max_rows") = kMaxRows;  // tokens per call, which engine/fused.py checks against STEP_ROWS
  m.def("pack", &pack);
  m.def("unpack", &unpack);
  m.def("linear", &linear_for_tests);
  m.def("argmax", &argmax_for_tests);
  pybind11::class_<FusedDecoder>(m, "FusedDecoder")
      .def(pybind11::init<torch::Tensor, std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                          std::vector<torch::Tensor>, std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                          std::vector<torch::Tensor>, torch::Tensor, torch::Tensor, int64_t, int64_t, int64_t,
                          double>())
      .def("step", &FusedDecoder::step, pybind11::call_guard<pybind11::gil_scoped_release>())
      .def("greedy", &FusedDecoder::greedy, pybind11::call_guard<pybind11::gil_scoped_release>())
      .def("logits", &FusedDecoder::logits, pybind11::call_guard<pybind11::gil_scoped_release>())
      .def("output_weight", &FusedDecoder::output_weight);
}
