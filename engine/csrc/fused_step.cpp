// One decode step (or a speculative verification of up to 16 tokens) of a Mistral model in one call.
//
// The PyTorch step of a small model is mostly per-operator overhead: ~300 small operators, each
// 10-20 us on a 2-core CPU, around ~1 ms of arithmetic. Here the whole step is one C++ call, and the
// matrices are read in bfloat16 (half the bytes of float32) and multiplied in float32, so for weights
// that are bfloat16 values (checkpoints trained and saved in bfloat16) the products are those of the
// float32 model; only the summation order differs (logits within ~2e-5 in the tests).
//
// Each weight is widened once for all T rows of x, so a verification of 5 tokens costs ~1.5-1.9x one
// decode step (its multiply-adds, not its memory traffic, grow with T).
//
// Inputs (row-major): wqkv [(H + 2 Hkv) D, dim], wo [dim, H D], w13 [2 hidden, dim] (w1 rows then w3
// rows), w2 [dim, hidden], output [vocab, dim], all bfloat16 and packed at construction (`pack`); the
// KV cache [L, 1, Hkv, S, D] float32 of engine/kv_cache.py, written at positions pos..pos+T-1.
// AVX-512 intrinsics where the compiler targets AVX-512 (-march=native), plain loops elsewhere.

#include <torch/extension.h>
#include <pybind11/stl.h>
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int kMaxRows = 16;   // tokens per call: a decode step or a verification of up to 15 drafts
constexpr int kLanes = 16;     // floats per AVX-512 register

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Matrices are packed in tiles of 64 output rows: P [out / 64, in, 64] bf16, tile b holding
// W[64 b + c, i] at P[b, i, c]. A tile is one contiguous 64 x in block, and a product is 64 outputs at
// a time, each input i adding x[t, i] * P[b, i, :] to them: no horizontal sums, and each widened
// weight serves all T rows of x. Worked example, W [128, 3]: two tiles; W[70, 2] is P[1, 2, 6].
constexpr int64_t kTile = 64;

torch::Tensor pack(const torch::Tensor& w) {
  TORCH_CHECK(w.scalar_type() == torch::kBFloat16 && w.dim() == 2 && w.size(0) % kTile == 0,
              "fused step: weights must be bfloat16 [out, in] with out a multiple of 64");
  return w.view({w.size(0) / kTile, kTile, w.size(1)}).transpose(1, 2).contiguous();  // [out / 64, in, 64]
}

// y[t * ldy + 64 b + c - first] = sum_i x[t, i] P[b, i, c] (+ y[...] when accumulate), for tiles
// b0 <= b < b1, on the calling thread. T <= 6: 4T accumulators in registers.
#ifdef __AVX512F__
inline __m512 widen(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

template <int T>
void tiles_kernel(const uint16_t* P, int64_t b0, int64_t b1, int64_t in, const float* x, float* y, int64_t ldy,
                  int64_t first, bool accumulate) {
  for (int64_t b = b0; b < b1; ++b) {
    const uint16_t* tile = P + b * in * kTile;
    __m512 acc[T][4];
    for (int t = 0; t < T; ++t)
      for (int q = 0; q < 4; ++q) acc[t][q] = _mm512_setzero_ps();
    for (int64_t i = 0; i < in; ++i) {
      const uint16_t* wi = tile + i * kTile;
      const __m512 w0 = widen(wi), w1 = widen(wi + 16), w2 = widen(wi + 32), w3 = widen(wi + 48);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_set1_ps(x[t * in + i]);
        acc[t][0] = _mm512_fmadd_ps(w0, xv, acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(w1, xv, acc[t][1]);
        acc[t][2] = _mm512_fmadd_ps(w2, xv, acc[t][2]);
        acc[t][3] = _mm512_fmadd_ps(w3, xv, acc[t][3]);
      }
    }
    for (int t = 0; t < T; ++t)
      for (int q = 0; q < 4; ++q) {
        float* out = y + t * ldy + b * kTile + q * 16 - first;
        _mm512_storeu_ps(out, accumulate ? _mm512_add_ps(_mm512_loadu_ps(out), acc[t][q]) : acc[t][q]);
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

// tiles_kernel for any T <= 16: rows of x in groups of at most 6 (a tile stays in L1 between groups).
void tiles(const uint16_t* P, int64_t b0, int64_t b1, int64_t in, const float* x, int T, float* y, int64_t ldy,
           int64_t first, bool accumulate) {
  for (int t0 = 0; t0 < T; t0 += 6) {
    const int n = std::min(6, T - t0);
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

// exp of 16 floats, for softmax and SiLU: exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2 / 2, exp(r) by
// a degree-6 polynomial (about 1 ulp, as the vectorized expf of libraries). Scalar loops calling
// std::exp were not all vectorized by the compiler.
#ifdef __AVX512F__
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.37f)), _mm512_set1_ps(-87.33f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 in two parts: exact n * hi
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}
#endif

// s[j] = exp(s[j] - top) for j < n; returns their sum.
float exp_shifted(float* s, int64_t n, float top) {
  int64_t j = 0;
  float total = 0.f;
#ifdef __AVX512F__
  __m512 sum = _mm512_setzero_ps();
  const __m512 shift = _mm512_set1_ps(top);
  for (; j + kLanes <= n; j += kLanes) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), shift));
    _mm512_storeu_ps(s + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  total = _mm512_reduce_add_ps(sum);
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
#ifdef __AVX512F__
  const __m512 one = _mm512_set1_ps(1.f);
  for (; i + kLanes <= n; i += kLanes) {
    __m512 g = _mm512_loadu_ps(gate + i);
    __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(up + i)));
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
  }

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
    TORCH_CHECK(T >= 1 && T <= kMaxRows, "fused step: 1 to 16 tokens per call");
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
    const float* emb = embeddings_.data_ptr<float>();
    for (int t = 0; t < T; ++t) std::memcpy(&x[t * dim], emb + ids[t] * dim, dim * sizeof(float));
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
      // Attention: row t (position pos + t) reads positions 0..pos+t of its kv head.
      at::parallel_for(0, T * H, 1, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a) {
          const int64_t t = a / H, head = a % H, g = head / group, n = pos + t + 1;
          const float* q = &qkv[t * qkv_width + head * D];
          const float* keys = kc + (l * Hkv + g) * S * D;
          const float* values = vc + (l * Hkv + g) * S * D;
          float* s = &scores[a * (pos + T)];
          float top = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            const float* k = keys + j * D;
            float dot = 0.f;
            for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
            s[j] = dot * scale;
            top = s[j] > top ? s[j] : top;
          }
          const float total = exp_shifted(s, n, top);
          float* o = &att[t * H * D + head * D];
          for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
          for (int64_t j = 0; j < n; ++j) {
            const float* v = values + j * D;
            const float p = s[j];
            for (int64_t d = 0; d < D; ++d) o[d] += p * v[d];
          }
          const float inv = 1.f / total;
          for (int64_t d = 0; d < D; ++d) o[d] *= inv;
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

// The kernels alone, for tests: x [T, in] float32 times W [out, in] bfloat16 transposed -> [T, out], and
// its argmax per row.
torch::Tensor linear_for_tests(torch::Tensor W, torch::Tensor x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2 && x.size(1) == W.size(1) &&
              x.size(0) >= 1 && x.size(0) <= kMaxRows, "x: [T, in] float32, 1 <= T <= 16");
  torch::Tensor packed = pack(W.contiguous());
  auto y = torch::empty({x.size(0), W.size(0)}, torch::kFloat32);
  linear(packed, x.data_ptr<float>(), static_cast<int>(x.size(0)), y.data_ptr<float>(), W.size(0), false);
  return y;
}

std::vector<int64_t> argmax_for_tests(torch::Tensor W, torch::Tensor x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2 && x.size(1) == W.size(1) &&
              x.size(0) >= 1 && x.size(0) <= kMaxRows, "x: [T, in] float32, 1 <= T <= 16");
  return linear_argmax(pack(W.contiguous()), x.data_ptr<float>(), static_cast<int>(x.size(0)));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear_for_tests);
  m.def("argmax", &argmax_for_tests);
  pybind11::class_<FusedDecoder>(m, "FusedDecoder")
      .def(pybind11::init<torch::Tensor, std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                          std::vector<torch::Tensor>, std::vector<torch::Tensor>, std::vector<torch::Tensor>,
                          std::vector<torch::Tensor>, torch::Tensor, torch::Tensor, int64_t, int64_t, int64_t,
                          double>())
      .def("step", &FusedDecoder::step, pybind11::call_guard<pybind11::gil_scoped_release>())
      .def("greedy", &FusedDecoder::greedy, pybind11::call_guard<pybind11::gil_scoped_release>());
}
