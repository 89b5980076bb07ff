// Products with GGUF's quantized matrices, read in their own blocks (engine/quant_kernels.py).
//
// qmatmul: out[rows, N] = x[rows, K] @ dequant(W)^T for W stored as ggml blocks, one output row's
// blocks contiguous (raw [N, row_bytes] uint8). The activations are quantized once per call, per
// block, to int8 (a float scale per block of 32 for Q8_0/Q4_0, per block of 256 with sums of every 16
// codes for the K-quants), and each weight block is multiplied with integer dot products:
// u8 x s8 multiply-adds (AVX2 `maddubs` + `madd`, AVX-512 VNNI `dpbusd`/`dpwssd`), the block's
// scales applied once per block in float. Every weight row is read once for all rows of x (groups of
// kGroup rows share each decoded block, tiles of weight rows stay in the cache for the next group),
// so a verification of 5 tokens reads the weights once, and a prefill of any length reads them once a
// call too. Threads split N (ATen's pool: torch.set_num_threads).
//
// Vector code for the CPU the compiler targets (-march=native): AVX-512 with VNNI, else AVX2 (with
// FMA and F16C), else plain loops; `isa` says which. The plain loops are also the specification the
// vector code follows and the decoder of dequantize_rows.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define QK_AVX512 1
constexpr const char* kIsa = "avx512vnni";
constexpr int kGroup = 8;  // rows of x per pass over a weight row: 32 vector registers
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QK_AVX2 1
constexpr const char* kIsa = "avx2";
constexpr int kGroup = 4;  // 16 vector registers
#else
constexpr const char* kIsa = "scalar";
constexpr int kGroup = 4;
#endif
constexpr int kMaxRows = 16;
constexpr int64_t kAhead = 4;  // weight rows prefetched ahead of the one multiplied
// The loops over the R rows of a group are unrolled on request (#pragma GCC unroll), so that the
// accumulators stay in registers at every R (7 rows of Q8_0 went from ~3.0 to ~2.1 ms with it).

// ggml's type ids (gguf.GGMLQuantizationType) and block shapes.
enum QType : int { kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kBF16 = 30 };

struct Layout {
  int block;  // weights per block
  int bytes;  // bytes per block
  int act_block;  // activations quantized per this many values (0: multiplied in float)
};

Layout layout_of(int64_t qtype) {
  switch (qtype) {
    case kF16: case kBF16: return {1, 2, 0};
    case kQ8_0: return {32, 34, 32};
    case kQ4_0: return {32, 18, 32};
    case kQ4_K: return {256, 144, 256};
    case kQ5_K: return {256, 176, 256};
    case kQ6_K: return {256, 210, 256};
  }
  TORCH_CHECK(false, "quantization type ", qtype, " has no kernel: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16 and BF16 do");
}

inline float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
#if defined(__F16C__)
  return _cvtsh_ss(h);  // the same value (conversions to float are exact), one instruction, no branch
#else
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {  // zero and subnormals: man * 2^-24
    const float f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  const uint32_t bits = sign | (exp == 31 ? 0x7f800000u | (man << 13) : ((exp + 112) << 23) | (man << 13));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

inline float bf16_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---- activations ------------------------------------------------------------------------------

// x [rows, K] float as int8 codes: x ~ scale[r, b] * q[r, i] for i in block b (blocks of `block`),
// scale = max|x| / 127 over the block, codes rounded to nearest (ties to even); sums[r, j] is the sum
// of the 16 codes j*16 .. j*16+15 (the K-quants' minimums and offsets need them).
struct Activations {
  int rows = 0, K = 0, block = 0;
  std::vector<int8_t> q;        // [rows, K]
  std::vector<float> scale;     // [rows, K / block]
  std::vector<int16_t> sums;    // [rows, K / 16]
  std::vector<float> lanes;     // [rows, K / 32 * 8]: blocks of 32 only, each scale 8 times (a vector operand)
  std::vector<uint8_t> biased;  // [rows, K]: AVX-512 and blocks of 32 only, codes + 128 (an unsigned operand)
  const int8_t* codes(int r) const { return q.data() + static_cast<size_t>(r) * K; }
  const float* scales(int r) const { return scale.data() + static_cast<size_t>(r) * (K / block); }
  const int16_t* sums16(int r) const { return sums.data() + static_cast<size_t>(r) * (K / 16); }
  const float* scale_lanes(int r) const { return lanes.data() + static_cast<size_t>(r) * (K / 4); }
  const uint8_t* biased_codes(int r) const { return biased.data() + static_cast<size_t>(r) * K; }
};

Activations quantize_activations(const float* x, int rows, int K, int block) {
  Activations a;
  a.rows = rows, a.K = K, a.block = block;
  a.q.resize(static_cast<size_t>(rows) * K);
  a.scale.resize(static_cast<size_t>(rows) * (K / block));
  a.sums.resize(static_cast<size_t>(rows) * (K / 16));
  for (int r = 0; r < rows; ++r) {
    for (int b = 0; b < K / block; ++b) {
      const float* v = x + static_cast<size_t>(r) * K + b * block;
      int8_t* q = a.q.data() + static_cast<size_t>(r) * K + b * block;
      float amax = 0.0f;
      for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(v[i]));
      const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      for (int i = 0; i < block; ++i) q[i] = static_cast<int8_t>(std::nearbyint(v[i] * inverse));
      a.scale[static_cast<size_t>(r) * (K / block) + b] = amax / 127.0f;
    }
    for (int j = 0; j < K / 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += a.q[static_cast<size_t>(r) * K + j * 16 + i];
      a.sums[static_cast<size_t>(r) * (K / 16) + j] = static_cast<int16_t>(s);
    }
  }
  if (block == 32) {
    a.lanes.resize(static_cast<size_t>(rows) * (K / 4));
    for (size_t i = 0; i < a.lanes.size(); ++i) a.lanes[i] = a.scale[i / 8];
#if defined(QK_AVX512)
    a.biased.resize(a.q.size());
    for (size_t i = 0; i < a.q.size(); ++i) a.biased[i] = static_cast<uint8_t>(a.q[i] + 128);
#endif
  }
  return a;
}

// ---- block decoders (the plain path, and dequantize_rows) ---------------------------------------

// A block of 32 (Q8_0, Q4_0) as signed codes: w[i] = d * v[i].
float decode32(int qtype, const uint8_t* blk, int8_t v[32]) {
  if (qtype == kQ8_0) {
    std::memcpy(v, blk + 2, 32);
  } else {  // Q4_0: byte i holds weight i (low nibble) and weight i + 16 (high nibble), offset 8
    for (int i = 0; i < 16; ++i) {
      v[i] = static_cast<int8_t>((blk[2 + i] & 15) - 8);
      v[i + 16] = static_cast<int8_t>((blk[2 + i] >> 4) - 8);
    }
  }
  return half_to_float(blk);
}

// Q4_K/Q5_K: 8 sub-blocks of 32, each a 6-bit scale and a 6-bit minimum packed in 12 bytes.
inline void scale_min_k4(const uint8_t* s, int j, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63, min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// A super-block of 256 (Q4_K, Q5_K, Q6_K) as unsigned codes u, per 16 values an integer scale and
// offset: w[i] = d * scale16[i / 16] * u[i] - dmin * offset16[i / 16].
struct SuperBlock {
  uint8_t u[256];
  int16_t scale16[16], offset16[16];
  float d, dmin;
};

void decode256(int qtype, const uint8_t* blk, SuperBlock& s) {
  if (qtype == kQ6_K) {  // ql[128] qh[64] scales[16] (int8) d; codes 0..63, offset 32
    const uint8_t *ql = blk, *qh = blk + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 32; ++l) {
        uint8_t* u = s.u + 128 * h;
        const uint8_t a = ql[64 * h + l], b = ql[64 * h + 32 + l], hb = qh[32 * h + l];
        u[l] = (a & 15) | ((hb & 3) << 4);
        u[l + 32] = (b & 15) | (((hb >> 2) & 3) << 4);
        u[l + 64] = (a >> 4) | (((hb >> 4) & 3) << 4);
        u[l + 96] = (b >> 4) | (((hb >> 6) & 3) << 4);
      }
    }
    for (int j = 0; j < 16; ++j) s.scale16[j] = sc[j], s.offset16[j] = static_cast<int16_t>(32 * sc[j]);
    s.d = s.dmin = half_to_float(blk + 208);
    return;
  }
  // Q4_K: d dmin scales[12] qs[128]; Q5_K: d dmin scales[12] qh[32] qs[128]. Bytes 32c..32c+31 of qs
  // hold sub-block 2c (low nibbles) and 2c+1 (high nibbles); Q5_K's fifth bit of value l of sub-block j
  // is bit j of qh[l].
  const bool five = qtype == kQ5_K;
  const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = qs[32 * (j / 2) + l];
      int v = j % 2 ? byte >> 4 : byte & 15;
      if (five) v |= ((qh[l] >> j) & 1) << 4;
      s.u[32 * j + l] = static_cast<uint8_t>(v);
    }
    int scale, min;
    scale_min_k4(blk + 4, j, scale, min);
    s.scale16[2 * j] = s.scale16[2 * j + 1] = static_cast<int16_t>(scale);
    s.offset16[2 * j] = s.offset16[2 * j + 1] = static_cast<int16_t>(min);
  }
  s.d = half_to_float(blk);
  s.dmin = half_to_float(blk + 2);
}

// ---- dot products of one weight row with R rows of x ----------------------------------------------

#if defined(QK_AVX2) || defined(QK_AVX512)
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

inline __m256i nibbles(__m128i bytes) {  // 16 bytes -> their 16 low nibbles, then their 16 high ones
  const __m128i low = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), _mm_and_si128(bytes, low));
}

// Codes 32c .. 32c+31 of a K-quant super-block as unsigned bytes, and their scales as 16 int16 (one
// per pair of codes: the first 8 for codes 0-15, the last 8 for codes 16-31).
inline __m256i kquant_codes(int qtype, const uint8_t* blk, int c) {
  const __m256i low = _mm256_set1_epi8(15);
  const __m128i shift4 = _mm_cvtsi32_si128(4);
  if (qtype == kQ6_K) {
    const int h = c / 4, k = c % 4;
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h + 32 * (k % 2)));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
    const __m256i lo = _mm256_and_si256(k < 2 ? q : _mm256_srli_epi16(q, 4), low);
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_sll_epi16(hi, shift4));
  }
  const bool five = qtype == kQ5_K;
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + (five ? 48 : 16) + 32 * (c / 2)));
  __m256i u = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, low);
  if (five) {
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16));
    const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(c)), _mm256_set1_epi8(1));
    u = _mm256_or_si256(u, _mm256_sll_epi16(bit, shift4));
  }
  return u;
}

inline __m256i kquant_scales(const SuperBlock& s, int c) {
  return _mm256_set_m128i(_mm_set1_epi16(s.scale16[2 * c + 1]), _mm_set1_epi16(s.scale16[2 * c]));
}

// The scales and offsets of a super-block, without its codes (the vector paths decode those above).
void kquant_scales_only(int qtype, const uint8_t* blk, SuperBlock& s) {
  if (qtype == kQ6_K) {
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    for (int j = 0; j < 16; ++j) s.scale16[j] = sc[j], s.offset16[j] = static_cast<int16_t>(32 * sc[j]);
    s.d = s.dmin = half_to_float(blk + 208);
    return;
  }
  // scale_min_k4 for all eight sub-blocks at once, four bytes a word: bytes 0-3 of the packed 12 hold
  // scales 0-3 in their low 6 bits, bytes 4-7 minimums 0-3, bytes 8-11 the low 4 bits of scales and
  // minimums 4-7, and the top 2 bits of bytes 0-3 / 4-7 complete scales / minimums 4-7.
  uint32_t word[3];
  std::memcpy(word, blk + 4, 12);
  const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
  const uint32_t packed[4] = {word[0] & low6, ((word[2] & low4) | (((word[0] >> 6) & top2) << 4)),
                              word[1] & low6, (((word[2] >> 4) & low4) | (((word[1] >> 6) & top2) << 4))};
  uint8_t scale[8], min[8];
  std::memcpy(scale, packed, 8);
  std::memcpy(min, packed + 2, 8);
  for (int j = 0; j < 8; ++j) {
    s.scale16[2 * j] = s.scale16[2 * j + 1] = scale[j];
    s.offset16[2 * j] = s.offset16[2 * j + 1] = min[j];
  }
  s.d = half_to_float(blk);
  s.dmin = half_to_float(blk + 2);
}
#endif

// K-quants: per super-block and row, isum = sum_j scale16[j] * (u . q over the 16 codes of j) and
// osum = sum_j offset16[j] * sums[j]; the row gains dx * (d * isum - dmin * osum).
template <int R>
void dot_kquant(int qtype, const uint8_t* w, int blocks, const Activations& a, int r0, float* res) {
  const int bytes = layout_of(qtype).bytes;
#if defined(QK_AVX2) || defined(QK_AVX512)
#if defined(QK_AVX512)
  __m512 acc[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
#else
  __m256 acc[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
#endif
  __m256 off[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) off[r] = _mm256_setzero_ps();
  SuperBlock s;
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* blk = w + static_cast<size_t>(b) * bytes;
    kquant_scales_only(qtype, blk, s);
#if defined(QK_AVX512)
    __m512i isum[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) isum[r] = _mm512_setzero_si512();
    for (int c = 0; c < 8; c += 2) {  // 64 codes a register
      const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(kquant_codes(qtype, blk, c)),
                                           kquant_codes(qtype, blk, c + 1), 1);
      const __m512i sc = _mm512_inserti64x4(_mm512_castsi256_si512(kquant_scales(s, c)), kquant_scales(s, c + 1), 1);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i x = _mm512_loadu_si512(a.codes(r0 + r) + 256 * b + 32 * c);
        isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(u, x), sc);
      }
    }
#else
    __m256i isum[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {  // 32 codes a register
      const __m256i u = kquant_codes(qtype, blk, c), sc = kquant_scales(s, c);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.codes(r0 + r) + 256 * b + 32 * c));
        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), sc));
      }
    }
#endif
    const __m256i offsets = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.offset16));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float dx = a.scales(r0 + r)[b];
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sums16(r0 + r) + 16 * b));
      off[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(offsets, sums)), _mm256_set1_ps(s.dmin * dx), off[r]);
#if defined(QK_AVX512)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_set1_ps(s.d * dx), acc[r]);
#else
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(s.d * dx), acc[r]);
#endif
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#if defined(QK_AVX512)
    res[r] = _mm512_reduce_add_ps(acc[r]) - hsum(off[r]);
#else
    res[r] = hsum(acc[r]) - hsum(off[r]);
#endif
  }
#else
  float acc[R] = {};
  SuperBlock s;
  for (int b = 0; b < blocks; ++b) {
    decode256(qtype, w + static_cast<size_t>(b) * bytes, s);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int8_t* x = a.codes(r0 + r) + 256 * b;
      const int16_t* sums = a.sums16(r0 + r) + 16 * b;
      int isum = 0, osum = 0;
      for (int j = 0; j < 16; ++j) {
        int dot = 0;
        for (int i = 16 * j; i < 16 * j + 16; ++i) dot += s.u[i] * x[i];
        isum += s.scale16[j] * dot;
        osum += s.offset16[j] * sums[j];
      }
      const float dx = a.scales(r0 + r)[b];
      acc[r] += dx * (s.d * isum - s.dmin * osum);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) res[r] = acc[r];
#endif
}

// Q8_0 and Q4_0: per block of 32 and row, the integer dot of the signed codes, times d * dx. The u8 x s8
// products take |w| and x with w's sign (AVX2), or x + 128 and w, less 128 * sum(w) computed once
// for all rows (AVX-512); each block's dot stays in 8 int32 lanes, scaled by d in float and by the
// activations' scale lanes (dx 8 times) in the multiply-add.
template <int R>
void dot_block32(int qtype, const uint8_t* w, int blocks, const Activations& a, int r0, float* res) {
  const int bytes = layout_of(qtype).bytes;
#if defined(QK_AVX2) || defined(QK_AVX512)
  auto signed_codes = [&](const uint8_t* blk) {
    if (qtype == kQ8_0) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    return _mm256_sub_epi8(nibbles(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))), _mm256_set1_epi8(8));
  };
#if defined(QK_AVX512)
  __m512 acc[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < blocks; b += 2) {  // two blocks a register; an odd last block with a zero beside it
    const bool pair = b + 1 < blocks;
    const uint8_t* blk = w + static_cast<size_t>(b) * bytes;
    const __m512i ws = _mm512_inserti64x4(_mm512_castsi256_si512(signed_codes(blk)),
                                          pair ? signed_codes(blk + bytes) : _mm256_setzero_si256(), 1);
    const __m512i bias = _mm512_sub_epi32(_mm512_setzero_si512(),  // -128 * sum(w), 4 codes a lane
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), ws));
    const __mmask64 xmask = pair ? ~0ULL : 0xFFFFFFFFULL;
    const __mmask16 lanes = pair ? 0xFFFF : 0x00FF;
    const __m512 d = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(half_to_float(blk)),
                                          _mm512_set1_ps(pair ? half_to_float(blk + bytes) : 0.0f));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i x = _mm512_maskz_loadu_epi8(xmask, a.biased_codes(r0 + r) + 32 * b);
      const __m512 dot = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, x, ws)), d);
      acc[r] = _mm512_fmadd_ps(dot, _mm512_maskz_loadu_ps(lanes, a.scale_lanes(r0 + r) + 8 * b), acc[r]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) res[r] = _mm512_reduce_add_ps(acc[r]);
#else
  __m256 acc[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* blk = w + static_cast<size_t>(b) * bytes;
    const __m256i ws = signed_codes(blk), u = _mm256_sign_epi8(ws, ws);
    const __m256 d = _mm256_set1_ps(half_to_float(blk));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.codes(r0 + r) + 32 * b)), ws);
      const __m256 dot = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones)), d);
      acc[r] = _mm256_fmadd_ps(dot, _mm256_loadu_ps(a.scale_lanes(r0 + r) + 8 * b), acc[r]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) res[r] = hsum(acc[r]);
#endif
#else
  float acc[R] = {};
  int8_t v[32];
  for (int b = 0; b < blocks; ++b) {
    const float d = decode32(qtype, w + static_cast<size_t>(b) * bytes, v);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int8_t* x = a.codes(r0 + r) + 32 * b;
      int dot = 0;
      for (int i = 0; i < 32; ++i) dot += v[i] * x[i];
      acc[r] += d * a.scales(r0 + r)[b] * dot;
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) res[r] = acc[r];
#endif
}

// F16 and BF16 rows: widened to float and multiplied with x as it is.
template <int R>
void dot_float(int qtype, const uint8_t* w, int K, const float* x, int r0, float* res) {
  const bool half = qtype == kF16;
  int i = 0;
  float acc[R] = {};
#if defined(QK_AVX512)
  __m512 v[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) v[r] = _mm512_setzero_ps();
  for (; i + 16 <= K; i += 16) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * i));
    const __m512 f = half ? _mm512_cvtph_ps(raw) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) v[r] = _mm512_fmadd_ps(f, _mm512_loadu_ps(x + static_cast<size_t>(r0 + r) * K + i), v[r]);
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_reduce_add_ps(v[r]);
#elif defined(QK_AVX2)
  __m256 v[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) v[r] = _mm256_setzero_ps();
  for (; i + 8 <= K; i += 8) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i));
    const __m256 f = half ? _mm256_cvtph_ps(raw) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) v[r] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + static_cast<size_t>(r0 + r) * K + i), v[r]);
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = hsum(v[r]);
#endif
  for (; i < K; ++i) {
    const float f = half ? half_to_float(w + 2 * i) : bf16_to_float(w + 2 * i);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] += f * x[static_cast<size_t>(r0 + r) * K + i];
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) res[r] = acc[r];
}

template <int R>
void dot_rows(int qtype, const uint8_t* w, int K, const float* x, const Activations& a, int r0, float* res) {
  const Layout l = layout_of(qtype);
  if (l.act_block == 0) return dot_float<R>(qtype, w, K, x, r0, res);
  if (l.act_block == 32) return dot_block32<R>(qtype, w, K / 32, a, r0, res);
  dot_kquant<R>(qtype, w, K / 256, a, r0, res);
}

void dot_group(int rows, int qtype, const uint8_t* w, int K, const float* x, const Activations& a, int r0,
               float* res) {
  switch (rows) {
    case 1: return dot_rows<1>(qtype, w, K, x, a, r0, res);
    case 2: return dot_rows<2>(qtype, w, K, x, a, r0, res);
    case 3: return dot_rows<3>(qtype, w, K, x, a, r0, res);
    case 4: return dot_rows<4>(qtype, w, K, x, a, r0, res);
#if defined(QK_AVX512)
    case 5: return dot_rows<5>(qtype, w, K, x, a, r0, res);
    case 6: return dot_rows<6>(qtype, w, K, x, a, r0, res);
    case 7: return dot_rows<7>(qtype, w, K, x, a, r0, res);
    case 8: return dot_rows<8>(qtype, w, K, x, a, r0, res);
#endif
  }
  TORCH_CHECK(false, "row group of ", rows);
}

// ---- entry points ---------------------------------------------------------------------------------

int64_t values_per_row(const torch::Tensor& raw, int64_t qtype) {
  TORCH_CHECK(raw.dtype() == torch::kUInt8 && raw.dim() == 2 && raw.is_contiguous() && raw.device().is_cpu(),
              "raw must be a contiguous uint8 CPU tensor [N, row_bytes], got ", raw.sizes(), " ", raw.dtype());
  const Layout l = layout_of(qtype);
  TORCH_CHECK(raw.size(1) % l.bytes == 0, "rows of ", raw.size(1), " bytes are not whole blocks of ", l.bytes,
              " bytes (type ", qtype, ")");
  return raw.size(1) / l.bytes * l.block;
}

void qmatmul(const torch::Tensor& x, const torch::Tensor& raw, int64_t qtype, torch::Tensor& out) {
  const int64_t K = values_per_row(raw, qtype), N = raw.size(0);
  const Layout l = layout_of(qtype);
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(),
              "x must be a contiguous float32 CPU tensor [rows, K], got ", x.sizes(), " ", x.dtype());
  const int64_t rows = x.size(0);
  TORCH_CHECK(rows >= 1, "x has no rows");
  TORCH_CHECK(x.size(1) % l.block == 0, "K = ", x.size(1), " is not a multiple of the block size ", l.block,
              " of type ", qtype);
  TORCH_CHECK(x.size(1) == K, "x has K = ", x.size(1), " columns but the rows of raw hold ", K, " weights");
  TORCH_CHECK(out.dtype() == torch::kFloat32 && out.is_contiguous() && out.dim() == 2 && out.size(0) == rows &&
              out.size(1) == N, "out must be a contiguous float32 tensor [", rows, ", ", N, "], got ", out.sizes());
  const float* xp = x.data_ptr<float>();
  const Activations a = l.act_block ? quantize_activations(xp, rows, K, l.act_block) : Activations{};
  const uint8_t* w = raw.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  const int64_t row_bytes = raw.size(1);
  // Weight rows in tiles, each tile read from memory once and multiplied with one group of rows of x
  // after the other (from the cache). A decode step or a verification (<= kMaxRows rows): tiles of 32
  // rows, so one group's activations stay in L1 for the tile, where all 16 rows' (64 KB at K = 2048 for
  // Q8_0) would not. A prefill: tiles of ~256 KB that stay in L2 while every group of its rows passes,
  // so the matrix comes from memory once per call, not once per 16 rows. A row's result is the same
  // either way: groups start at multiples of kGroup and each row's sum runs in the same order.
  const bool step = rows <= kMaxRows;
  const int64_t kTile = step ? 32 : std::clamp<int64_t>((256 << 10) / row_bytes, 16, 512);
  at::parallel_for(0, N, kTile, [&](int64_t begin, int64_t end) {
    float res[kGroup];
    for (int64_t tile = begin; tile < end; tile += kTile) {
      for (int r0 = 0; r0 < rows; r0 += kGroup) {
        const int group = static_cast<int>(std::min<int64_t>(kGroup, rows - r0));
        for (int64_t n = tile; n < std::min(end, tile + kTile); ++n) {
#if defined(QK_AVX2) || defined(QK_AVX512)
          if (step && r0 == 0 && n + kAhead < end)  // a step streams the matrix: the rows kAhead below, on their way
            for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(w + (n + kAhead) * row_bytes + b), _MM_HINT_T0);
#endif
          dot_group(group, static_cast<int>(qtype), w + n * row_bytes, static_cast<int>(K), xp, a, r0, res);
          for (int r = 0; r < group; ++r) o[(r0 + r) * N + n] = res[r];
        }
      }
    }
  });
}

torch::Tensor dequantize_rows(const torch::Tensor& raw, int64_t qtype, int64_t first, int64_t count) {
  const int64_t K = values_per_row(raw, qtype);
  TORCH_CHECK(first >= 0 && count >= 0 && first + count <= raw.size(0), "rows ", first, "..", first + count,
              " are not within the ", raw.size(0), " rows");
  const Layout l = layout_of(qtype);
  torch::Tensor out = torch::empty({count, K}, torch::kFloat32);
  const uint8_t* w = raw.data_ptr<uint8_t>() + first * raw.size(1);
  float* o = out.data_ptr<float>();
  const int64_t row_bytes = raw.size(1);
  at::parallel_for(0, count, 16, [&](int64_t begin, int64_t end) {
    SuperBlock s;
    int8_t v[32];
    for (int64_t n = begin; n < end; ++n) {
      const uint8_t* row = w + n * row_bytes;
      float* y = o + n * K;
      for (int64_t b = 0; b < K / l.block; ++b) {
        const uint8_t* blk = row + b * l.bytes;
        if (l.act_block == 0) {
          y[b] = qtype == kF16 ? half_to_float(blk) : bf16_to_float(blk);
        } else if (l.block == 32) {
          const float d = decode32(static_cast<int>(qtype), blk, v);
          for (int i = 0; i < 32; ++i) y[32 * b + i] = d * v[i];
        } else {
          decode256(static_cast<int>(qtype), blk, s);
          for (int i = 0; i < 256; ++i)
            y[256 * b + i] = s.d * s.scale16[i / 16] * s.u[i] - s.dmin * s.offset16[i / 16];
        }
      }
    }
  });
  return out;
}

// ---- attention over a float16 cache -------------------------------------------------------------

// n halves at p as floats at out (F16C's vector conversion where the CPU has it).
inline void halves_to_floats(const uint8_t* p, float* out, int64_t n) {
  int64_t i = 0;
#if defined(QK_AVX512)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i))));
#elif defined(QK_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
#endif
  for (; i < n; ++i) out[i] = half_to_float(p + 2 * i);
}

// out [T, H * D] float32: attention of the queries q [T, H, D] (float32) of the last T positions over
// a layer's float16 keys and values [H_kv, S, D] (a GGUF model's cache, engine/kv_cache.py), of which
// slots 0 .. used-1 hold positions 0 .. used-1. Query t sits at position used - T + t and sees the
// positions up to its own; query head h reads KV head h / (H / H_kv).
//
// Worked example: used = 7, T = 2 (a verification of two tokens after five held): query 0 (position
// 5) sees slots 0..5, query 1 (position 6) slots 0..6.
//
// Each row's arithmetic does not depend on T or on the rows beside it (a score is one `dot_float`,
// softmax and the weighted sum run over the positions in order), so a decode step and a verification
// give a position the same output. Scores, softmax and sums are float32, the keys and values widened
// exactly from float16; one KV head per task of the thread pool.
torch::Tensor attend_half(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                          int64_t used) {
  TORCH_CHECK(q.dtype() == torch::kFloat32 && q.dim() == 3 && q.is_contiguous() && q.device().is_cpu(),
              "q must be a contiguous float32 CPU tensor [T, H, D], got ", q.sizes(), " ", q.dtype());
  for (const torch::Tensor* t : {&keys, &values})
    TORCH_CHECK(t->dtype() == torch::kFloat16 && t->dim() == 3 && t->is_contiguous() && t->device().is_cpu(),
                "keys and values must be contiguous float16 CPU tensors [H_kv, S, D], got ", t->sizes(), " ",
                t->dtype());
  const int64_t T = q.size(0), H = q.size(1), D = q.size(2), Hkv = keys.size(0), S = keys.size(1);
  TORCH_CHECK(values.sizes() == keys.sizes() && keys.size(2) == D && Hkv > 0 && H % Hkv == 0,
              "q ", q.sizes(), " does not fit keys ", keys.sizes(), " and values ", values.sizes());
  TORCH_CHECK(T >= 1 && used >= T && used <= S, "used = ", used, " must lie in [T, S] = [", T, ", ", S, "]");
  const int64_t group = H / Hkv, rows = group * T;
  torch::Tensor out = torch::empty({T, H * D}, torch::kFloat32);
  const float* qp = q.data_ptr<float>();
  const auto* kp = reinterpret_cast<const uint8_t*>(keys.data_ptr());
  const auto* vp = reinterpret_cast<const uint8_t*>(values.data_ptr());
  float* op = out.data_ptr<float>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  at::parallel_for(0, Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qh(rows * D), p(rows * used), acc(rows * D), v(D), total(rows);
    float res[kGroup];
    const Activations unused;  // float16 keys multiply float32 rows as they are
    for (int64_t h = begin; h < end; ++h) {
      // Row r = j * T + t: query head h * group + j of token t.
      for (int64_t j = 0; j < group; ++j)
        for (int64_t t = 0; t < T; ++t)
          std::memcpy(&qh[(j * T + t) * D], qp + (t * H + h * group + j) * D, D * sizeof(float));
      const uint8_t* kh = kp + h * S * D * 2;
      const uint8_t* vh = vp + h * S * D * 2;
      for (int64_t s = 0; s < used; ++s)
        for (int64_t r0 = 0; r0 < rows; r0 += kGroup) {
          const int n = static_cast<int>(std::min<int64_t>(kGroup, rows - r0));
          dot_group(n, kF16, kh + s * D * 2, static_cast<int>(D), qh.data(), unused, static_cast<int>(r0), res);
          for (int r = 0; r < n; ++r) p[(r0 + r) * used + s] = res[r] * scale;
        }
      for (int64_t r = 0; r < rows; ++r) {  // softmax over the positions row r sees
        float* pr = &p[r * used];
        const int64_t seen = used - T + r % T + 1;
        float top = pr[0];
        for (int64_t s = 1; s < seen; ++s) top = std::max(top, pr[s]);
        float sum = 0.0f;
        for (int64_t s = 0; s < seen; ++s) sum += (pr[s] = std::exp(pr[s] - top));
        for (int64_t s = seen; s < used; ++s) pr[s] = 0.0f;
        total[r] = sum;
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t s = 0; s < used; ++s) {
        halves_to_floats(vh + s * D * 2, v.data(), D);
        for (int64_t r = 0; r < rows; ++r) {
          const float w = p[r * used + s];
          float* a = &acc[r * D];
          for (int64_t d = 0; d < D; ++d) a[d] += w * v[d];
        }
      }
      for (int64_t j = 0; j < group; ++j)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t r = j * T + t;
          float* o = op + t * H * D + (h * group + j) * D;
          for (int64_t d = 0; d < D; ++d) o[d] = acc[r * D + d] / total[r];
        }
    }
  });
  return out;
}

// ---- a decode step of a GGUF model ----------------------------------------------------------------

// x [T, in] float32 times a GGUF matrix (+ its bias, when it has one: an empty tensor otherwise).
torch::Tensor product(const torch::Tensor& x, const torch::Tensor& raw, int64_t qtype, const torch::Tensor& bias) {
  torch::Tensor out = torch::empty({x.size(0), raw.size(0)}, torch::kFloat32);
  qmatmul(x.contiguous(), raw, qtype, out);
  if (bias.defined() && bias.numel()) out += bias;
  return out;
}

// Queries or keys [T, heads * D] rotated by `rotation` [T, 1, D/2] complex64 -> [T, heads, D].
torch::Tensor rotated(const torch::Tensor& x, int64_t heads, const torch::Tensor& rotation) {
  const int64_t T = x.size(0);
  return torch::view_as_real(torch::view_as_complex(x.view({T, heads, -1, 2})) * rotation).flatten(-2);
}

// The final normed hidden states [T, dim] of T tokens at positions pos .. pos+T-1 of a linear float16
// cache (positions claimed already), from their embeddings x [T, dim]: engine/model.py `step_hidden`
// for a llama or qwen2 GGUF model, the same operations in the same order, so its result is bitwise
// that of the Python step, without the interpreter between them (~20 ms a step of a 1B model, which
// the second thread could not share). Per layer l, matrices[7 l .. 7 l + 6] are wq, wk, wv, wo, w1,
// w3, w2 ([N, row_bytes] blocks of type qtypes[...]) and biases[3 l .. 3 l + 2] those of wq, wk, wv
// (empty tensors for none); norms[2 l], norms[2 l + 1] the attention and FFN norms, norms.back() the
// final one.
torch::Tensor gguf_step(torch::Tensor x, const torch::Tensor& rotation, int64_t pos, int64_t n_heads,
                        int64_t n_kv_heads, double eps, const std::vector<torch::Tensor>& matrices,
                        const std::vector<int64_t>& qtypes, const std::vector<torch::Tensor>& biases,
                        const std::vector<torch::Tensor>& norms, const torch::Tensor& cache_k,
                        const torch::Tensor& cache_v) {
  const int64_t layers = static_cast<int64_t>(norms.size() - 1) / 2, T = x.size(0), dim = x.size(1);
  TORCH_CHECK(layers >= 1 && static_cast<int64_t>(matrices.size()) == 7 * layers &&
              static_cast<int64_t>(qtypes.size()) == 7 * layers && static_cast<int64_t>(biases.size()) == 3 * layers,
              "a GGUF step needs 7 matrices, 3 biases and 2 norms a layer");
  TORCH_CHECK(cache_k.dim() == 5 && cache_k.size(0) == layers && cache_k.size(1) == 1 && pos + T <= cache_k.size(3),
              "the cache ", cache_k.sizes(), " does not hold ", layers, " layers to position ", pos + T - 1);
  for (int64_t l = 0; l < layers; ++l) {
    const torch::Tensor* m = &matrices[7 * l];
    const int64_t* q = &qtypes[7 * l];
    const torch::Tensor* b = &biases[3 * l];
    torch::Tensor h = at::rms_norm(x, {dim}, norms[2 * l], eps);
    torch::Tensor queries = rotated(product(h, m[0], q[0], b[0]), n_heads, rotation);  // [T, H, D]
    torch::Tensor keys = rotated(product(h, m[1], q[1], b[1]), n_kv_heads, rotation);  // [T, H_kv, D]
    torch::Tensor values = product(h, m[2], q[2], b[2]).view({T, n_kv_heads, -1});    // [T, H_kv, D]
    torch::Tensor layer_k = cache_k.select(0, l).select(0, 0), layer_v = cache_v.select(0, l).select(0, 0);
    layer_k.narrow(1, pos, T).copy_(keys.transpose(0, 1));
    layer_v.narrow(1, pos, T).copy_(values.transpose(0, 1));
    torch::Tensor attended = attend_half(queries.contiguous(), layer_k, layer_v, pos + T);  // [T, H D]
    x = x + product(attended, m[3], q[3], torch::Tensor());
    h = at::rms_norm(x, {dim}, norms[2 * l + 1], eps);
    torch::Tensor gated = at::silu(product(h, m[4], q[4], torch::Tensor())) * product(h, m[5], q[5], torch::Tensor());
    x = x + product(gated, m[6], q[6], torch::Tensor());
  }
  return at::rms_norm(x, {dim}, norms.back(), eps);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("isa") = kIsa;  // the vector code compiled: "avx512vnni", "avx2" or "scalar"
  m.attr("step_rows") = kMaxRows;  // up to this many rows a call is a step (small tiles), beyond a prefill
  m.def("qmatmul", &qmatmul, "out[rows, N] = x[rows, K] @ dequant(raw)^T");
  m.def("dequantize_rows", &dequantize_rows, "rows first..first+count of raw as float32 [count, K]");
  m.def("gguf_step", &gguf_step, "final normed hidden states [T, dim] of a llama/qwen2 GGUF model's step");
  m.def("attend_half", &attend_half, "attention of q [T, H, D] over float16 keys and values [H_kv, S, D], slots < used");
}
