// SPDX-License-Identifier: MIT
#include "mpacc/sim/layer.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include "mpacc/sim/threads.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define MPACC_X86 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

// The kernels pass 64-byte vectors between internal functions only.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace mpacc::sim {

void layer_flags::add(unsigned f) noexcept {
  ++outputs;
  inexact += (f & flag::inexact) != 0;
  underflow += (f & flag::underflow) != 0;
  overflow += (f & flag::overflow) != 0;
  invalid += (f & flag::invalid) != 0;
  saturated += (f & flag::saturated) != 0;
}

std::uint64_t words_per_dot(std::size_t n, const accumulation& a) noexcept {
  if (n == 0) return 1;
  std::uint64_t steps = n;  // the first rounding of each term or partial sum
  switch (a.ord.type) {
    case order::kind::recursive:
      break;
    case order::kind::blocked: {
      const auto B = static_cast<std::size_t>(a.ord.block);
      steps += (n + B - 1) / B - 1;
      break;
    }
    case order::kind::pairwise:
      steps += n - 1;
      break;
  }
  if (a.product) steps += n;
  return steps + 1;  // bias
}

namespace {

// ---------------------------------------------------------------------------
// The vector kernels. Each runs one task: 8 output components (one lane each,
// each lane with its own accumulator format) for up to 4 samples, and leaves
// the 8 x 4 results and flags in the task. Three implementations give the bits
// of sim::dot: AVX-512 (below), AVX2+FMA and portable (layer_vector.inc).

struct alignas(64) lane_formats {
  double scale[8], top[8], cmin[8], thr_nosub[8], c_nosub[8], min_normal[8], max[8], screen[8];
  std::uint8_t has_inf = 0;  // lane bit set: the format has infinities
  format fmt[8];             // for the lanes rounded by the scalar code
};

void fill_lane(lane_formats& L, int lane, const format& f) {
  L.scale[lane] = std::ldexp(1.0, 53 - f.p);
  L.top[lane] = std::ldexp(1.0, f.emax + 1);
  L.cmin[lane] = std::ldexp(1.0, f.emin - f.p + 53);
  L.thr_nosub[lane] = f.subnormals ? 0.0 : std::ldexp(1.0, f.emin);
  L.c_nosub[lane] = std::ldexp(1.0, f.emin + 52);
  L.min_normal[lane] = std::ldexp(1.0, f.emin);
  L.max[lane] = f.max_finite;
  L.screen[lane] = std::ldexp(1.0, std::ilogb(f.max_finite));  // below it nothing overflows
  if (f.has_inf) L.has_inf = static_cast<std::uint8_t>(L.has_inf | (1u << lane));
  L.fmt[lane] = f;
}

bool vector_format_ok(const format& f) noexcept {
  return f.p <= 51 && (f.subnormals ? f.emin - f.p + 1 : f.emin) >= -1072 && f.emax + 54 - f.p <= 1023;
}

// One task of a vector kernel.
struct block_task {
  const double* Wt = nullptr;  // n x ldw: column i of W^T holds component i
  std::size_t ldw = 0, n = 0, i0 = 0;
  const double* rows[4] = {};  // the ns input rows
  int ns = 0;
  const double* bias = nullptr;  // padded to ldw
  const lane_formats* acc = nullptr;
  const lane_formats* prod = nullptr;  // null: exact products
  order ord{};
  rounding mode = rounding::nearest_even;
  bool saturate = false, exact = false, all_sub = true;
  // stochastic: lane l of sample k uses the words from first_word[k] + l * words on
  std::uint64_t seed = 0, words = 0, first_word[4] = {};
  double out[4][8] = {};
  unsigned flags[4][8] = {};
};

// The binary32 kernel's lane constants (encodings; see b32::round32) and task:
// 16 output components for up to 4 samples.
struct alignas(64) lane_formats32 {
  std::int32_t shift[16], cmin[16], thr_nosub[16], c_nosub[16], min_normal[16], screen[16];
  // shift, cmin and c_nosub for the constant 1.5 c (the encodings with the
  // significand's top bit set), used unsigned in the modes whose rounding does
  // not depend on the sign of c (see b32::round32)
  std::int32_t shift15[16], cmin15[16], c_nosub15[16];
  float max[16];
  std::uint16_t has_inf = 0;  // lane bit set: the format has infinities
};

std::int32_t pow2_bits32(int e) { return std::bit_cast<std::int32_t>(std::ldexp(1.0f, e)); }

void fill_lane32(lane_formats32& L, int lane, const format& f) {
  L.shift[lane] = (24 - f.p) * (1 << 23);  // adding it to 2^e's encoding multiplies by 2^(24-p)
  L.cmin[lane] = pow2_bits32(f.emin - f.p + 24);
  L.thr_nosub[lane] = f.subnormals ? 0 : pow2_bits32(f.emin);
  L.c_nosub[lane] = pow2_bits32(f.emin + 23);
  L.shift15[lane] = L.shift[lane] + (1 << 22);
  L.cmin15[lane] = L.cmin[lane] | (1 << 22);
  L.c_nosub15[lane] = L.c_nosub[lane] | (1 << 22);
  L.min_normal[lane] = pow2_bits32(f.emin);
  L.screen[lane] = pow2_bits32(std::ilogb(f.max_finite));
  L.max[lane] = static_cast<float>(f.max_finite);  // exact: p <= 22, emax <= 100
  if (f.has_inf) L.has_inf = static_cast<std::uint16_t>(L.has_inf | (1u << lane));
}

// The accumulator formats the binary32 kernel covers (see b32 below).
bool b32_format_ok(const format& f) noexcept { return f.p >= 2 && f.p <= 22 && f.emin >= -100 && f.emax <= 100; }

// binary32 itself, which the binary32 kernel accumulates in natively (b32::native32)
bool is_binary32(const format& f) noexcept {
  return f.p == 24 && f.emin == -126 && f.emax == 127 && f.subnormals &&
         f.max_finite == static_cast<double>(std::numeric_limits<float>::max());
}
// Binary32 accumulators in every component, exact products, no via, a mode
// binary32 hardware rounds in (nearest-even and the directed ones)
bool native32_applies(const layer_spec& spec) noexcept {
  if (spec.base.product || spec.base.via) return false;
  const rounding m = spec.base.mode;
  if (m != rounding::nearest_even && m != rounding::toward_zero && m != rounding::upward && m != rounding::downward)
    return false;
  if (spec.acc.formats.empty()) return is_binary32(spec.base.acc);
  return std::all_of(spec.acc.formats.begin(), spec.acc.formats.end(), is_binary32);
}

struct task32 {
  const float* Wt = nullptr;  // n x ldw
  std::size_t ldw = 0, n = 0, i0 = 0;
  const float* rows[4] = {};
  int ns = 0;
  const float* bias = nullptr;  // padded to ldw
  const lane_formats32* acc = nullptr;
  order ord{};
  rounding mode = rounding::nearest_even;
  bool saturate = false, all_sub = true;
  bool flags_wanted = true;  // false: flags are left 0 (run_values)
  bool native = false;       // every lane's format is binary32 (b32::native32)
  float out[4][16] = {};
  unsigned flags[4][16] = {};
};

// A kernel's sum of terms [0, n) into s in the order ord (K: blocked(n, B, s),
// the recursive sum being one block of n, and pairwise(lo, n, s)); shared by the
// binary32-lane kernels.
template <class K, class S>
void sum_in_order(const K& kern, std::size_t n, const order& ord, S s) {
  switch (ord.type) {
    case order::kind::recursive:
      kern.blocked(n, n, s);
      break;
    case order::kind::pairwise:
      kern.pairwise(0, n, s);
      break;
    case order::kind::blocked:
      kern.blocked(n, static_cast<std::size_t>(ord.block), s);
      break;
  }
}

// The scalar rounding (detail::round_core) for the rare lanes.
[[gnu::noinline]] double scalar_round(rounding mode, double y, const format& f, bool saturate, unsigned& flags,
                                      std::uint64_t word) noexcept {
  return round(y, f, mode, saturate, flags, word);
}

// The portable kernel: baseline instructions (SSE2 on x86-64, NEON on AArch64).
// No contraction of a * b + c into an FMA: every operation must be the one
// sim::dot performs.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace portable {
#define MPACC_VEC_BYTES 16
#include "layer_vector.inc"
#undef MPACC_VEC_BYTES
}  // namespace portable
#pragma GCC diagnostic pop
#pragma GCC pop_options

#ifdef MPACC_X86

// The same source compiled for AVX2 and FMA (4 lanes per vector; the lane loop
// of vec_fma becomes one vfmadd); only called after cpu_has_avx2() said yes.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace avx2 {
#define MPACC_VEC_BYTES 32
#include "layer_vector.inc"
#undef MPACC_VEC_BYTES

// Binary32 accumulators in round-to-nearest-even on AVX2 (b32::native32 below
// is the AVX-512 version, with the argument): a task's 16 components are two
// vectors of 8 binary32 lanes, each step one binary32 FMA or addition in
// MXCSR's rounding mode, which native_task checks is round-to-nearest, with
// neither flush-to-zero nor denormals-are-zero, on the thread that runs it.
template <int NS>
struct native32 {
  const float* Wt;  // n_in x ldw, column i of W^T holds component i
  std::size_t ldw, i0;
  const float* const* x;  // NS input rows

  void terms(std::size_t j, std::size_t end, __m256 (*s)[2]) const {
    for (const float* wp = Wt + j * ldw + i0; j < end; ++j, wp += ldw) {
      const __m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
      for (int k = 0; k < NS; ++k) {
        const __m256 xv = _mm256_set1_ps(x[k][j]);
        s[k][0] = _mm256_fmadd_ps(w0, xv, s[k][0]);
        s[k][1] = _mm256_fmadd_ps(w1, xv, s[k][1]);
      }
    }
  }
  static void minus_zero(__m256 (*s)[2]) {
    for (int k = 0; k < NS; ++k) s[k][0] = s[k][1] = _mm256_set1_ps(-0.0f);
  }
  void blocked(std::size_t n, std::size_t B, __m256 (*s)[2]) const {
    __m256 sl[NS][2];
    for (std::size_t start = 0; start < n; start += B) {
      minus_zero(sl);
      terms(start, std::min(start + B, n), sl);
      for (int k = 0; k < NS; ++k)
        for (int h = 0; h < 2; ++h) s[k][h] = start == 0 ? sl[k][h] : _mm256_add_ps(s[k][h], sl[k][h]);
    }
  }
  void pairwise(std::size_t lo, std::size_t n, __m256 (*s)[2]) const {
    if (n == 1) {
      minus_zero(s);
      terms(lo, lo + 1, s);
      return;
    }
    const std::size_t m = n / 2;
    __m256 right[NS][2];
    pairwise(lo, m, s);
    pairwise(lo + m, n - m, right);
    for (int k = 0; k < NS; ++k)
      for (int h = 0; h < 2; ++h) s[k][h] = _mm256_add_ps(s[k][h], right[k][h]);
  }
  void run(std::size_t n, const order& ord, const float* bias, float (*out)[16]) const {
    __m256 s[NS][2];
    minus_zero(s);  // n = 0: the bias alone, b + -0 = b
    if (n > 0) sum_in_order(*this, n, ord, s);
    for (int k = 0; k < NS; ++k)
      for (int h = 0; h < 2; ++h)
        _mm256_storeu_ps(out[k] + 8 * h, _mm256_add_ps(s[k][h], _mm256_loadu_ps(bias + i0 + 8 * h)));
  }
};

// Runs a binary32-accumulator task (values only, nearest-even, at most 2^20
// terms: the caller's conditions); false when this thread's MXCSR does not
// round to nearest or flushes subnormals (the caller then runs the binary64
// kernel on the task).
bool native_task(task32& T) {
  if ((_mm_getcsr() & 0xe040u) != 0) return false;  // rounding control, FTZ, DAZ
  if (T.ns == 4) {
    native32<4>{T.Wt, T.ldw, T.i0, T.rows}.run(T.n, T.ord, T.bias, T.out);
    return true;
  }
  for (int k = 0; k < T.ns; ++k) native32<1>{T.Wt, T.ldw, T.i0, T.rows + k}.run(T.n, T.ord, T.bias, T.out + k);
  return true;
}
}  // namespace avx2
#pragma GCC diagnostic pop
#pragma GCC pop_options

// ---------------------------------------------------------------------------
// The AVX-512 kernel. Eight output components per vector, NS samples
// interleaved to hide latency. Every step is exact: s + w x (or a + b) is
// rounded by the FMA (or addition) both downward and upward with embedded
// rounding; equal results mean exact, otherwise the value toward zero with its
// last bit set is the 53-bit round-to-odd value, which rounds to the lane's
// format (p <= 51) correctly. That rounding is fl(y + c) - c with c =
// +-2^(q+52) and the addition in the lane's mode (embedded rounding again), as
// in sim::round_array; odd, nearest-away and stochastic adjust it by one
// quantum (see round_vec).

// Everything from here to the matching pop_options is compiled for AVX-512
// and only called after cpu_has_avx512() said yes.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")
// GCC 12 warns about the deliberately undefined lanes inside its own intrinsics
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace avx512 {

struct vformat {
  __m512d max, neg_max;
  __m512i top_bits, shift_bits, cmin_bits, thr_nosub_bits, c_nosub_bits, min_normal_bits, emax_bits;
  __mmask8 has_inf;
  const lane_formats* lanes;
  explicit vformat(const lane_formats& L)
      : max(_mm512_load_pd(L.max)),
        neg_max(_mm512_sub_pd(_mm512_setzero_pd(), max)),
        top_bits(_mm512_castpd_si512(_mm512_load_pd(L.top))),
        // adding (53-p) << 52 to an encoding multiplies a power of two by 2^(53-p)
        shift_bits(
            _mm512_sub_epi64(_mm512_castpd_si512(_mm512_load_pd(L.scale)), _mm512_castpd_si512(_mm512_set1_pd(1.0)))),
        cmin_bits(_mm512_castpd_si512(_mm512_load_pd(L.cmin))),
        thr_nosub_bits(_mm512_castpd_si512(_mm512_load_pd(L.thr_nosub))),
        c_nosub_bits(_mm512_castpd_si512(_mm512_load_pd(L.c_nosub))),
        min_normal_bits(_mm512_castpd_si512(_mm512_load_pd(L.min_normal))),
        emax_bits(_mm512_castpd_si512(_mm512_load_pd(L.screen))),
        has_inf(L.has_inf),
        lanes(&L) {}
};

struct vflags {
  __mmask8 inexact = 0, underflow = 0, overflow = 0, invalid = 0, saturated = 0;
};
[[gnu::always_inline]] inline void or_flags(vflags& a, const vflags& b) {
  a.inexact |= b.inexact;
  a.underflow |= b.underflow;
  a.overflow |= b.overflow;
  a.invalid |= b.invalid;
  a.saturated |= b.saturated;
}

constexpr int kRN = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
constexpr int kRD = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
constexpr int kRU = _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC;
constexpr int kRZ = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;

// The embedded rounding of the format step: the mode itself for the four IEEE
// modes, toward zero for odd and stochastic (then adjusted), nearest-even for
// nearest-away (then its ties adjusted).
template <rounding Mode>
constexpr int embedded_rounding() {
  switch (Mode) {
    case rounding::toward_zero:
    case rounding::odd:
    case rounding::stochastic:
      return kRZ;
    case rounding::upward:
      return kRU;
    case rounding::downward:
      return kRD;
    default:
      return kRN;
  }
}

// SplitMix64 (sim::random_bits) from its pre-state z = seed + (i + 1) * golden.
[[gnu::always_inline]] inline __m512i mix(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                         _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ULL)));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                         _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebULL)));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}
constexpr long long kGolden = static_cast<long long>(0x9e3779b97f4a7c15ULL);

// The next random word of one sample (stochastic only; zero otherwise).
template <rounding Mode>
[[gnu::always_inline]] inline __m512i next_word(__m512i& z) {
  if constexpr (Mode == rounding::stochastic) {
    const __m512i w = mix(z);
    z = _mm512_add_epi64(z, _mm512_set1_epi64(kGolden));
    return w;
  } else {
    (void)z;
    return _mm512_setzero_si512();
  }
}

// RO53 from the roundings toward zero and downward/upward of the same exact
// value: inexact iff RD != RU; then the toward-zero value with its last bit set.
// An exact zero keeps the toward-zero sign, which is IEEE 754's
// round-to-nearest sign (-0 only for -0 + -0).
inline __m512d odd_of(__m512d z, __m512d d, __m512d u) {
  const __mmask8 inexact = _mm512_cmp_pd_mask(d, u, _CMP_NEQ_UQ);
  const __m512i zb = _mm512_castpd_si512(z);
  return _mm512_castsi512_pd(_mm512_mask_or_epi64(zb, inexact, zb, _mm512_set1_epi64(1)));
}

inline __m512d fma_odd(__m512d w, __m512d x, __m512d s) {
  return odd_of(_mm512_fmadd_round_pd(w, x, s, kRZ), _mm512_fmadd_round_pd(w, x, s, kRD),
                _mm512_fmadd_round_pd(w, x, s, kRU));
}
inline __m512d add_odd(__m512d a, __m512d b) {
  return odd_of(_mm512_add_round_pd(a, b, kRZ), _mm512_add_round_pd(a, b, kRD), _mm512_add_round_pd(a, b, kRU));
}
inline __m512d mul_odd(__m512d a, __m512d b) {
  return odd_of(_mm512_mul_round_pd(a, b, kRZ), _mm512_mul_round_pd(a, b, kRD), _mm512_mul_round_pd(a, b, kRU));
}

// The rare lanes: overflow (|r0| > max) or an infinite input. the rules of docs/semantics.md §2.
template <rounding Mode>
__attribute__((noinline)) __m512d replace_lanes(__m512d y, __m512d r0, __mmask8 big, const vformat& F, bool saturate,
                                                vflags& fl) {
  const __m512i sign_mask = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ULL));
  const __m512d inf = _mm512_set1_pd(std::numeric_limits<double>::infinity());
  const __m512i sign = _mm512_and_si512(_mm512_castpd_si512(y), sign_mask);
  const __m512d a = _mm512_castsi512_pd(_mm512_andnot_si512(sign_mask, _mm512_castpd_si512(y)));
  const __mmask8 is_inf = _mm512_cmp_pd_mask(a, inf, _CMP_EQ_OQ);
  const __mmask8 finite_big = big & static_cast<__mmask8>(~is_inf);
  fl.overflow |= finite_big;
  fl.inexact |= finite_big;
  __mmask8 to_max = 0;
  const __mmask8 negative = _mm512_test_epi64_mask(sign, sign);
  if constexpr (Mode == rounding::toward_zero || Mode == rounding::odd) to_max = finite_big;
  if constexpr (Mode == rounding::upward) to_max = finite_big & negative;
  if constexpr (Mode == rounding::downward) to_max = finite_big & static_cast<__mmask8>(~negative);
  __m512d mag = _mm512_castsi512_pd(_mm512_andnot_si512(sign_mask, _mm512_castpd_si512(r0)));
  if (saturate) {
    mag = _mm512_mask_blend_pd(big, mag, F.max);
    fl.saturated |= big;
  } else {
    const __mmask8 rest = big & static_cast<__mmask8>(~to_max);
    const __mmask8 to_inf = rest & F.has_inf;
    const __mmask8 to_nan = rest & static_cast<__mmask8>(~F.has_inf);
    mag = _mm512_mask_blend_pd(to_max, mag, F.max);
    mag = _mm512_mask_blend_pd(to_inf, mag, inf);
    mag = _mm512_mask_blend_pd(to_nan, mag, _mm512_set1_pd(std::numeric_limits<double>::quiet_NaN()));
    fl.invalid |= to_nan;
  }
  return _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(mag), sign));
}

// Every lane by the scalar code (stochastic values below the smallest quantum).
template <rounding Mode>
__attribute__((noinline)) __m512d scalar_lanes(__m512d y, const vformat& F, bool saturate, vflags& fl, __m512i word) {
  alignas(64) double v[8];
  alignas(64) std::uint64_t w[8];
  _mm512_store_pd(v, y);
  _mm512_store_si512(w, word);
  for (int l = 0; l < 8; ++l) {
    unsigned f = 0;
    v[l] = scalar_round(Mode, v[l], F.lanes->fmt[l], saturate, f, w[l]);
    const auto bit = static_cast<__mmask8>(1u << l);
    if (f & flag::inexact) fl.inexact |= bit;
    if (f & flag::underflow) fl.underflow |= bit;
    if (f & flag::overflow) fl.overflow |= bit;
    if (f & flag::invalid) fl.invalid |= bit;
    if (f & flag::saturated) fl.saturated |= bit;
  }
  return _mm512_load_pd(v);
}

// Rounds y lane by lane to the lane's format in mode Mode: r0 = fl_R(y + c) - c
// with c = +-2^(q+52) carrying y's sign, q from y's exponent field 2^e (clamped
// to 2^(emax+1)) as in sim::round_array, and R the embedded rounding of the mode.
// Odd sets the last bit of fl_RZ(y + c) when inexact (its last bit is the
// parity of the truncation); nearest-away moves a tie that went toward zero
// one quantum away; stochastic adds one quantum to the truncation when the top
// d bits of the word are below the d dropped bits of y (d = q - quantum of y),
// as detail::round_core does. Accumulates the flags. NaN lanes stay NaN and
// raise nothing.
template <rounding Mode, bool Subnormals, bool Unclamped = false>
[[gnu::always_inline]] inline __m512d round_vec(__m512d y, const vformat& F, bool saturate, vflags& fl,
                                                __m512i word = _mm512_setzero_si512()) {
  constexpr int R = embedded_rounding<Mode>();
  const __m512i exp_mask = _mm512_set1_epi64(0x7ff0000000000000LL);
  const __m512i sign_mask = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ULL));
  const __m512i one = _mm512_set1_epi64(1);
  // 2^e as its encoding (the exponent field of y); integer min/add/max on
  // encodings of positive powers of two are exact and have 1-cycle latency:
  // c = max(min(2^e, 2^(emax+1)) * 2^(53-p), 2^(emin-p+53))
  const __m512i e2 = _mm512_and_si512(_mm512_castpd_si512(y), exp_mask);
  // (no clamp needed in tasks proven to stay below 2^(970): Unclamped)
  __m512i c =
      _mm512_max_epi64(_mm512_add_epi64(Unclamped ? e2 : _mm512_min_epi64(e2, F.top_bits), F.shift_bits), F.cmin_bits);
  if constexpr (!Subnormals)
    c = _mm512_mask_blend_epi64(_mm512_cmp_epi64_mask(e2, F.thr_nosub_bits, _MM_CMPINT_LT), c, F.c_nosub_bits);
  if constexpr (Mode == rounding::stochastic) {
    // the scalar code decides when y may overflow or is not finite (y >= 2^floor(log2 max)),
    // and for quanta below 2^-959 (2^(64-q) would overflow)
    if (_mm512_cmp_epi64_mask(e2, F.emax_bits, _MM_CMPINT_NLT) |
        _mm512_cmp_epi64_mask(c, _mm512_set1_epi64((1075LL - 959) << 52), _MM_CMPINT_LT)) [[unlikely]] {
      vflags nf;  // (fl itself must not escape: it lives in mask registers)
      const __m512d r = scalar_lanes<Mode>(y, F, saturate, nf, word);
      or_flags(fl, nf);
      return r;
    }
  }
  // cs = c with y's sign: bit select (sign_mask ? y : c)
  const __m512d cs = _mm512_castsi512_pd(_mm512_ternarylogic_epi64(sign_mask, _mm512_castpd_si512(y), c, 0xCA));
  const __m512d t = _mm512_add_round_pd(y, cs, R);
  __m512d r0 = _mm512_sub_pd(t, cs);  // the subtraction is exact
  if constexpr (Mode == rounding::odd) {
    const __mmask8 inexact = _mm512_cmp_pd_mask(r0, y, _CMP_NEQ_OQ);
    const __m512i tb = _mm512_castpd_si512(t);
    r0 = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_mask_or_epi64(tb, inexact, tb, one)), cs);
  } else if constexpr (Mode == rounding::nearest_away) {
    // a tie rounded toward zero: y - r0 = +-2^(q-1) with y's sign
    const __m512d diff = _mm512_sub_pd(y, r0);                        // exact
    const __m512d half = _mm512_mul_pd(cs, _mm512_set1_pd(0x1p-53));  // exact
    const __mmask8 tie = _mm512_cmp_pd_mask(diff, half, _CMP_EQ_OQ);
    r0 = _mm512_mask_add_pd(r0, tie, r0, _mm512_add_pd(diff, diff));
  } else if constexpr (Mode == rounding::stochastic) {
    // round_core's rule: the magnitude rounds up iff the top d bits of the word
    // (d = q - quantum of y) are below the d dropped bits, i.e. iff word <
    // (|y| - |RZ(y)|) 2^(64-q); below the quantum 2^q (d > 52) iff word <
    // ceil(|y| 2^(64-q)). Both are word < V, V = ceil(|y - RZ(y)| 2^(64-q)): the
    // difference is exact, the scaling by a power of two too (rounded upward, so
    // a product below 2^-1074 still gives 1), and V < 2^64 converts exactly.
    const __m512d rz = _mm512_sub_pd(t, cs);
    const __m512d diff = _mm512_castsi512_pd(_mm512_andnot_si512(sign_mask, _mm512_castpd_si512(_mm512_sub_pd(y, rz))));
    // 2^(64-q) from c = 2^(q+52): biased exponent 1023 + 64 - q = 2162 - (q + 1075)
    const __m512d scale = _mm512_castsi512_pd(_mm512_sub_epi64(_mm512_set1_epi64(2162LL << 52), c));
    const __m512i v = _mm512_cvt_roundpd_epu64(_mm512_mul_round_pd(diff, scale, kRU), kRU);
    const __mmask8 up = _mm512_cmp_epu64_mask(word, v, _MM_CMPINT_LT);
    const __m512i tb = _mm512_castpd_si512(t);
    r0 = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_mask_add_epi64(tb, up, tb, one)), cs);
  }
  // A result of zero is t - cs = +0 whatever y's sign: give it y's sign (a
  // negative value rounded to zero is -0). Other results already have y's
  // sign, so OR-ing it in changes nothing there.
  r0 = _mm512_castsi512_pd(
      _mm512_or_si512(_mm512_castpd_si512(r0), _mm512_and_si512(_mm512_castpd_si512(y), sign_mask)));
  const __mmask8 changed = _mm512_cmp_pd_mask(r0, y, _CMP_NEQ_OQ);
  fl.inexact |= changed;
  // tiny before rounding: |y| < 2^emin, i.e. 2^e < 2^emin
  fl.underflow |= _mm512_mask_cmp_epi64_mask(changed, e2, F.min_normal_bits, _MM_CMPINT_LT);
  // overflow is only possible when |y| >= 2^floor(log2 max): one integer compare on the
  // exponent field screens the lanes, the precise test runs only then
  const __mmask8 high = _mm512_cmp_epi64_mask(e2, F.emax_bits, _MM_CMPINT_NLT);
  if (high) [[unlikely]] {
    const __mmask8 big = _mm512_cmp_pd_mask(r0, F.max, _CMP_GT_OQ) | _mm512_cmp_pd_mask(r0, F.neg_max, _CMP_LT_OQ);
    if (big) {
      vflags nf;
      const __m512d r = replace_lanes<Mode>(y, r0, big, F, saturate, nf);
      or_flags(fl, nf);
      return r;
    }
  }
  return r0;
}

// Exact: every sum and product of this task is known to be exact in binary64
// (bit-span check in dense()), so one round-to-nearest operation gives the
// exact value and the round-to-odd step is skipped.
template <rounding Mode, bool Sub, bool Exact, int NS>
struct vkernel {
  static __m512d fma_x(__m512d w, __m512d x, __m512d s) {
    if constexpr (Exact) return _mm512_fmadd_round_pd(w, x, s, kRN);
    return fma_odd(w, x, s);
  }
  static __m512d add_x(__m512d a, __m512d b) {
    if constexpr (Exact) return _mm512_add_round_pd(a, b, kRN);
    return add_odd(a, b);
  }
  static __m512d mul_x(__m512d a, __m512d b) {
    if constexpr (Exact) return _mm512_mul_round_pd(a, b, kRN);
    return mul_odd(a, b);
  }

  const double* Wt;  // n_in x ldw, column i of W^T holds component i
  std::size_t ldw;
  const double* const* x;  // NS input rows
  const vformat& acc;
  const vformat* prod;  // null: exact products
  bool saturate;
  vflags* fl;  // NS
  __m512i* z;  // NS: stochastic pre-states

  // the term w_j x_j as it enters the sum, for sample k (product model)
  __m512d product(__m512d w, double xv, vflags& f, __m512i& zk) const {
    const __m512d p = mul_x(w, _mm512_set1_pd(xv));
    return round_vec<Mode, Sub, Exact>(p, *prod, saturate, f, next_word<Mode>(zk));
  }

  // recursive sum of terms [lo, hi) into s[k]. The hot loop works on local
  // copies (sums, flags, format constants, row pointers, random pre-states) so
  // that they live in registers rather than behind pointers the compiler must
  // assume aliased.
  void recursive(std::size_t lo, std::size_t hi, std::size_t i0, __m512d* s) const {
    const __m512d neg_zero = _mm512_set1_pd(-0.0);
    const vformat F = acc;
    const double* xr[NS];
    vflags lf[NS];
    __m512d sl[NS];
    __m512i zl[NS];
    for (int k = 0; k < NS; ++k) {
      xr[k] = x[k];
      zl[k] = z[k];
    }
    const double* wp = Wt + lo * ldw + i0;
    {
      const __m512d w = _mm512_loadu_pd(wp);
      for (int k = 0; k < NS; ++k) {
        const __m512d t = prod ? product(w, xr[k][lo], lf[k], zl[k]) : fma_x(w, _mm512_set1_pd(xr[k][lo]), neg_zero);
        sl[k] = round_vec<Mode, Sub, Exact>(prod ? add_x(t, neg_zero) : t, F, saturate, lf[k], next_word<Mode>(zl[k]));
      }
    }
    if (prod) {
      for (std::size_t j = lo + 1; j < hi; ++j) {
        wp += ldw;
        const __m512d w = _mm512_loadu_pd(wp);
        for (int k = 0; k < NS; ++k) {
          const __m512d p = product(w, xr[k][j], lf[k], zl[k]);
          sl[k] = round_vec<Mode, Sub, Exact>(add_x(sl[k], p), F, saturate, lf[k], next_word<Mode>(zl[k]));
        }
      }
    } else {
      for (std::size_t j = lo + 1; j < hi; ++j) {
        wp += ldw;
        const __m512d w = _mm512_loadu_pd(wp);
        for (int k = 0; k < NS; ++k)
          sl[k] = round_vec<Mode, Sub, Exact>(fma_x(w, _mm512_set1_pd(xr[k][j]), sl[k]), F, saturate, lf[k],
                                              next_word<Mode>(zl[k]));
      }
    }
    for (int k = 0; k < NS; ++k) {
      s[k] = sl[k];
      z[k] = zl[k];
      fl[k].inexact |= lf[k].inexact;
      fl[k].underflow |= lf[k].underflow;
      fl[k].overflow |= lf[k].overflow;
      fl[k].invalid |= lf[k].invalid;
      fl[k].saturated |= lf[k].saturated;
    }
  }

  __m512d round_acc(__m512d y, int k) const {
    return round_vec<Mode, Sub, Exact>(y, acc, saturate, fl[k], next_word<Mode>(z[k]));
  }

  void pairwise(std::size_t lo, std::size_t n, std::size_t i0, __m512d* s) const {
    if (n == 1) {
      recursive(lo, lo + 1, i0, s);
      return;
    }
    const std::size_t m = n / 2;
    __m512d right[NS];
    pairwise(lo, m, i0, s);
    pairwise(lo + m, n - m, i0, right);
    for (int k = 0; k < NS; ++k) s[k] = round_acc(add_x(s[k], right[k]), k);
  }

  void run(std::size_t n, const order& ord, std::size_t i0, const double* bias, __m512d* out) const {
    __m512d s[NS];
    if (n > 0) {
      switch (ord.type) {
        case order::kind::recursive:
          recursive(0, n, i0, s);
          break;
        case order::kind::pairwise:
          pairwise(0, n, i0, s);
          break;
        case order::kind::blocked: {
          const auto B = static_cast<std::size_t>(ord.block);
          recursive(0, std::min(B, n), i0, s);
          for (std::size_t start = B; start < n; start += B) {
            __m512d t[NS];
            recursive(start, std::min(start + B, n), i0, t);
            for (int k = 0; k < NS; ++k) s[k] = round_acc(add_x(s[k], t[k]), k);
          }
          break;
        }
      }
    }
    const __m512d b = _mm512_loadu_pd(bias + i0);
    for (int k = 0; k < NS; ++k) {
      const __m512d y = n > 0 ? add_x(s[k], b) : add_x(b, _mm512_set1_pd(-0.0));
      out[k] = round_acc(y, k);
    }
  }
};

unsigned to_flags(const vflags& f, int lane) {
  const auto bit = [lane](__mmask8 m) { return (m >> lane) & 1u; };
  return (bit(f.inexact) ? flag::inexact : 0u) | (bit(f.underflow) ? flag::underflow : 0u) |
         (bit(f.overflow) ? flag::overflow : 0u) | (bit(f.invalid) ? flag::invalid : 0u) |
         (bit(f.saturated) ? flag::saturated : 0u);
}

// NS samples of the task from sample k0 on.
template <rounding Mode, bool Sub, bool Exact, int NS>
void run_samples(block_task& T, int k0) {
  const vformat acc(*T.acc);
  const vformat* prod = nullptr;
  alignas(64) unsigned char prod_storage[sizeof(vformat)];
  if (T.prod) prod = new (prod_storage) vformat(*T.prod);
  const double* rows[NS];
  vflags fl[NS];
  __m512i z[NS];
  for (int k = 0; k < NS; ++k) {
    rows[k] = T.rows[k0 + k];
    alignas(64) std::uint64_t zs[8];
    for (int l = 0; l < 8; ++l)
      zs[l] = T.seed + (T.first_word[k0 + k] + static_cast<std::uint64_t>(l) * T.words + 1) * 0x9e3779b97f4a7c15ULL;
    z[k] = _mm512_load_si512(zs);
  }
  const vkernel<Mode, Sub, Exact, NS> kern{T.Wt, T.ldw, rows, acc, prod, T.saturate, fl, z};
  __m512d out[NS];
  kern.run(T.n, T.ord, T.i0, T.bias, out);
  for (int k = 0; k < NS; ++k) {
    _mm512_storeu_pd(T.out[k0 + k], out[k]);
    for (int lane = 0; lane < 8; ++lane) T.flags[k0 + k][lane] = to_flags(fl[k], lane);
  }
}

template <rounding Mode, bool Sub, bool Exact>
void run_mode3(block_task& T) {
  if (T.ns == 4)
    run_samples<Mode, Sub, Exact, 4>(T, 0);
  else
    for (int k = 0; k < T.ns; ++k) run_samples<Mode, Sub, Exact, 1>(T, k);
}

template <rounding Mode>
void run_mode(block_task& T) {
  if (T.all_sub) {
    if (T.exact)
      run_mode3<Mode, true, true>(T);
    else
      run_mode3<Mode, true, false>(T);
  } else {
    if (T.exact)
      run_mode3<Mode, false, true>(T);
    else
      run_mode3<Mode, false, false>(T);
  }
}

void run_block(block_task& T) {
  switch (T.mode) {
    case rounding::nearest_even:
      run_mode<rounding::nearest_even>(T);
      break;
    case rounding::nearest_away:
      run_mode<rounding::nearest_away>(T);
      break;
    case rounding::toward_zero:
      run_mode<rounding::toward_zero>(T);
      break;
    case rounding::upward:
      run_mode<rounding::upward>(T);
      break;
    case rounding::downward:
      run_mode<rounding::downward>(T);
      break;
    case rounding::odd:
      run_mode<rounding::odd>(T);
      break;
    case rounding::stochastic:
      run_mode<rounding::stochastic>(T);
      break;
  }
}

// ---------------------------------------------------------------------------
// The binary32 AVX-512 kernel (avx512-b32): 16 output components per vector,
// each lane a binary32 value. It covers layers with exact products (no
// product format), no `via`, every mode but stochastic, and accumulator
// formats with p <= 22, -100 <= emin and emax <= 100 (b32_format_ok), on
// tasks whose weights, biases and inputs are binary32 values with
// |w| max |x| <= 2^100 and |b| <= 2^100 (checked per task; other tasks run on
// the binary64 kernel above). Each step s + w x (or a + b) is computed as
// RO24, the round-to-odd value at binary32's 24 bits: the FMA (or addition)
// rounded downward and upward with embedded rounding gives the two binary32
// neighbours of the exact value (equal when it is exact), and the one whose
// encoding is odd is RO24 (consecutive binary32 values have consecutive
// encodings, so exactly one of two neighbours is odd; an exact zero is taken
// from the upward result, IEEE 754's +0 for x + (-x)). RO24 then rounds to the
// lane's format by fl(y + c) - c as in the binary64 kernel, c = +-2^(q+23)
// (toward zero, nearest-away) or c = 1.5 2^(q+23) whatever y's sign (the other
// modes: one operation less, see round32).
// Why that is one correct rounding of the exact value v (docs/design.md,
// "Binary32 AVX-512 kernel"): with p <= 22 and the format's smallest quantum
// 2^(emin-p+1) >= 2^-121, every quantum Q of the format near v is at least 4
// binary32 quanta there, so the format's values and the midpoints between
// them are even binary32 values. If v is not a binary32 value, its binary32
// neighbours d < v < u are consecutive, so every such point m has m <= d or
// m >= u, and RO24(v), the odd one of d and u, is not m: RO24(v) lies on the
// same side of every format value and midpoint as v. So every rounding
// mode (directed, nearest with either tie rule, odd) gives the same result
// from RO24(v) as from v, v is exact iff RO24(v) is, and |RO24(v)| < 2^emin iff
// |v| < 2^emin (2^emin is an even binary32 value): the inexact and underflow
// flags are those of v. No binary32 operation overflows: |s| <= max < 2^101
// (or s is infinite or NaN) and |w x| <= 2^100. Overflow of the format: as in
// the binary64 kernel, an integer compare of the exponent field against
// 2^floor(log2 max) screens the lanes, and the lanes whose rounded value is
// above max are replaced by replace_lanes32 (the rules of docs/semantics.md §2).
// The terms of a sum run in chunks of 32 steps without that compare and branch,
// keeping only the largest exponent field seen (one vpmaxud per step); a chunk
// that reached the screen is redone from its saved sums and flags with the
// screen on, and so is the rest of that task. (Before the chunks: a step
// costs one compare, a mask test and a branch more.) Until the screen is
// reached no lane can overflow, so the chunk's values are those of the
// screened steps; after it they may not be (a value above max is not
// replaced), hence the redo, flags included.

namespace b32 {

// The modes whose rounding of y + c depends on c's sign: c takes y's sign
// (one more operation). The others add c = 1.5 2^(q+23) whatever y's sign (see
// round32).
template <rounding Mode>
constexpr bool signed_c() {
  return Mode == rounding::toward_zero || Mode == rounding::nearest_away;
}

struct vfmt32 {
  __m512i shift, cmin, thr_nosub, c_nosub, min_normal, screen;
  const lane_formats32* lanes;
  vfmt32(const lane_formats32& L, bool signed_c)
      : shift(_mm512_load_si512(signed_c ? L.shift : L.shift15)),
        cmin(_mm512_load_si512(signed_c ? L.cmin : L.cmin15)),
        thr_nosub(_mm512_load_si512(L.thr_nosub)),
        c_nosub(_mm512_load_si512(signed_c ? L.c_nosub : L.c_nosub15)),
        min_normal(_mm512_load_si512(L.min_normal)),
        screen(_mm512_load_si512(L.screen)),
        lanes(&L) {}
};

// RO24 of w x + s and of a + b: the downward or the upward result, whichever is odd.
[[gnu::always_inline]] inline __m512 odd_pick(__m512 d, __m512 u) {
  return _mm512_mask_blend_ps(_mm512_test_epi32_mask(_mm512_castps_si512(d), _mm512_set1_epi32(1)), u, d);
}
[[gnu::always_inline]] inline __m512 fma_ro24(__m512 w, __m512 x, __m512 s) {
  return odd_pick(_mm512_fmadd_round_ps(w, x, s, kRD), _mm512_fmadd_round_ps(w, x, s, kRU));
}
[[gnu::always_inline]] inline __m512 add_ro24(__m512 a, __m512 b) {
  return odd_pick(_mm512_add_round_ps(a, b, kRD), _mm512_add_round_ps(a, b, kRU));
}

// Per lane: inexact and underflow bits (non-zero: raised); the rare flags.
struct state32 {
  __m512i inexact, underflow;
  __mmask16 overflow, invalid, saturated;
};
// The flags raised by replace_lanes32. (It is inlined: a call in the loop
// would make the compiler keep the sums and flags in memory, since every
// vector register is call-clobbered.)
struct rare32 {
  __mmask16 inexact = 0, overflow = 0, invalid = 0, saturated = 0;
};

// The lanes whose rounded value r0 is above the format's largest value (or
// whose y is infinite): the rules of docs/semantics.md §2, as replace_lanes
// (the binary64 kernel) applies them. y is RO24 of the exact value v, and r0
// the correct rounding of v with an unbounded exponent, so r0 > max iff v
// overflows in this mode.
template <rounding Mode>
[[gnu::always_inline]] inline __m512 replace_lanes32(__m512 y, __m512 r0, __mmask16 big, const lane_formats32& L,
                                                     bool saturate, rare32& st) {
  const __m512i sign_mask = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512 max = _mm512_load_ps(L.max);
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(y), sign_mask);
  const __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(sign_mask, _mm512_castps_si512(y)));
  const __mmask16 is_inf = _mm512_cmp_ps_mask(a, inf, _CMP_EQ_OQ);
  const auto finite_big = static_cast<__mmask16>(big & ~is_inf);
  st.overflow = finite_big;
  st.inexact = finite_big;
  __mmask16 to_max = 0;
  const __mmask16 negative = _mm512_test_epi32_mask(sign, sign);
  if constexpr (Mode == rounding::toward_zero || Mode == rounding::odd) to_max = finite_big;
  if constexpr (Mode == rounding::upward) to_max = static_cast<__mmask16>(finite_big & negative);
  if constexpr (Mode == rounding::downward) to_max = static_cast<__mmask16>(finite_big & ~negative);
  __m512 mag = _mm512_castsi512_ps(_mm512_andnot_si512(sign_mask, _mm512_castps_si512(r0)));
  if (saturate) {
    mag = _mm512_mask_blend_ps(big, mag, max);
    st.saturated = big;
  } else {
    const auto rest = static_cast<__mmask16>(big & ~to_max);
    const auto to_inf = static_cast<__mmask16>(rest & L.has_inf);
    const auto to_nan = static_cast<__mmask16>(rest & ~L.has_inf);
    mag = _mm512_mask_blend_ps(to_max, mag, max);
    mag = _mm512_mask_blend_ps(to_inf, mag, inf);
    mag = _mm512_mask_blend_ps(to_nan, mag, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
    st.invalid = to_nan;
  }
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), sign));
}

// Rounds y (= RO24 of the exact value) to the lane's format in mode Mode; see
// round_vec for the binary64 version of the same steps. Screen: lanes that may
// overflow are found and replaced here (a branch per call); without it, the
// largest exponent field seen is kept in emax instead, and the caller redoes
// the steps with Screen when it reaches F.screen (kernel32::terms).
template <rounding Mode, bool Sub, bool Screen, bool Flags>
[[gnu::always_inline]] inline __m512 round32(__m512 y, const vfmt32& F, bool saturate, state32& st, __m512i& emax) {
  constexpr int R = embedded_rounding<Mode>();
  const __m512i sign_mask = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i yb = _mm512_castps_si512(y);
  const __m512i e2 = _mm512_and_si512(yb, _mm512_set1_epi32(0x7f800000));
  // c = max(2^e 2^(24-p), 2^(emin-p+24)) (no clamp at 2^(emax+1): |y| <= 2^102,
  // so c stays a finite binary32 number, and lanes above max are replaced below),
  // times 1.5 unless signed_c: then y + c lies in [2^k, 2^(k+1)), k = q + 23,
  // for either sign of y (|y| < 2^(e+1) <= 2^(k-1) as p <= 22), its binary32
  // quantum there is 2^q, and c / 2^q = 3 2^22 is even: fl(y + c) - c is y
  // rounded to a multiple of 2^q, downward, upward or to nearest-even as the
  // embedded rounding says, and fl(y + c) has the parity of that multiple
  // (which odd uses). Toward zero and nearest-away need c with y's sign.
  __m512i c = _mm512_max_epi32(_mm512_add_epi32(e2, F.shift), F.cmin);
  if constexpr (!Sub) c = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(e2, F.thr_nosub), c, F.c_nosub);
  // c with y's sign: sign_mask ? y : c, bit by bit (c first: it is the operand overwritten)
  const __m512 cs = signed_c<Mode>() ? _mm512_castsi512_ps(_mm512_ternarylogic_epi32(c, yb, sign_mask, 0xD8))
                                     : _mm512_castsi512_ps(c);
  const __m512 t = _mm512_add_round_ps(y, cs, R);
  __m512 r0 = _mm512_sub_ps(t, cs);  // exact
  if constexpr (Mode == rounding::odd) {
    const __mmask16 inexact = _mm512_cmp_ps_mask(r0, y, _CMP_NEQ_OQ);
    const __m512i tb = _mm512_castps_si512(t);
    r0 = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_mask_or_epi32(tb, inexact, tb, _mm512_set1_epi32(1))), cs);
  } else if constexpr (Mode == rounding::nearest_away) {
    const __m512 diff = _mm512_sub_ps(y, r0);                         // exact
    const __m512 half = _mm512_mul_ps(cs, _mm512_set1_ps(0x1p-24f));  // +-2^(q-1), exact
    const __mmask16 tie = _mm512_cmp_ps_mask(diff, half, _CMP_EQ_OQ);
    r0 = _mm512_mask_add_ps(r0, tie, r0, _mm512_add_ps(diff, diff));
  }
  // r0 | (y & sign): a result of zero takes y's sign
  const __m512i rb = _mm512_ternarylogic_epi32(_mm512_castps_si512(r0), yb, sign_mask, 0xF8);
  // inexact |= r0 ^ y; underflow |= r0 ^ y where |y| < 2^emin (Flags: the caller wants them)
  if constexpr (Flags) {
    st.inexact = _mm512_ternarylogic_epi32(st.inexact, rb, yb, 0xF6);
    st.underflow =
        _mm512_mask_ternarylogic_epi32(st.underflow, _mm512_cmplt_epi32_mask(e2, F.min_normal), rb, yb, 0xF6);
  }
  if constexpr (!Screen) {
    emax = _mm512_max_epu32(emax, e2);
    return _mm512_castsi512_ps(rb);
  }
  // overflow is only possible when |y| >= 2^floor(log2 max) (or y is not finite)
  const __mmask16 high = _mm512_cmp_epi32_mask(e2, F.screen, _MM_CMPINT_NLT);
  if (high) [[unlikely]] {
    const __m512 max = _mm512_load_ps(F.lanes->max);
    const __m512 r = _mm512_castsi512_ps(rb);
    const auto big = static_cast<__mmask16>(_mm512_cmp_ps_mask(r, max, _CMP_GT_OQ) |
                                            _mm512_cmp_ps_mask(r, _mm512_sub_ps(_mm512_setzero_ps(), max), _CMP_LT_OQ));
    if (big) {
      rare32 nf;
      const __m512 res = replace_lanes32<Mode>(y, r, big, *F.lanes, saturate, nf);
      st.inexact = _mm512_mask_mov_epi32(st.inexact, nf.inexact, _mm512_set1_epi32(1));
      st.overflow = static_cast<__mmask16>(st.overflow | nf.overflow);
      st.invalid = static_cast<__mmask16>(st.invalid | nf.invalid);
      st.saturated = static_cast<__mmask16>(st.saturated | nf.saturated);
      return res;
    }
  }
  return _mm512_castsi512_ps(rb);
}

template <rounding Mode, bool Sub, int NS, bool Flags>
struct kernel32 {
  const float* Wt;  // n_in x ldw, column i of W^T holds component i
  std::size_t ldw, i0;
  const float* const* x;  // NS input rows
  const vfmt32& F;
  bool saturate;
  state32* st;  // NS

  // Steps [j, stop) of the recursive sum (state in locals, see the binary64 kernel).
  template <bool Screen>
  [[gnu::always_inline]] void steps(std::size_t j, std::size_t stop, const vfmt32& f, const float* const* xr,
                                    __m512* sl, state32* ls, __m512i& emax) const {
    const bool sat = saturate;
    for (const float* wp = Wt + j * ldw + i0; j < stop; ++j, wp += ldw) {
      const __m512 w = _mm512_loadu_ps(wp);
      for (int k = 0; k < NS; ++k)
        sl[k] = round32<Mode, Sub, Screen, Flags>(fma_ro24(w, _mm512_set1_ps(xr[k][j]), sl[k]), f, sat, ls[k], emax);
    }
  }

  // Adds terms [j, end) to sl[k] one by one. Chunks of 32 steps run without
  // the overflow screen's branch (round32 without Screen); a chunk whose values
  // reached the screen is redone with it from its saved start, and so is the
  // rest of the task (screened).
  [[gnu::always_inline]] void terms(std::size_t j, std::size_t end, const vfmt32& f, const float* const* xr, __m512* sl,
                                    state32* ls, bool& screened) const {
    constexpr std::size_t kChunk = 32;
    while (j < end) {
      const std::size_t stop = std::min(j + kChunk, end);
      __m512i emax = _mm512_setzero_si512();
      if (!screened) {
        __m512 s0[NS];
        state32 l0[NS];
        for (int k = 0; k < NS; ++k) {
          s0[k] = sl[k];
          l0[k] = ls[k];
        }
        steps<false>(j, stop, f, xr, sl, ls, emax);
        if (_mm512_cmp_epu32_mask(emax, f.screen, _MM_CMPINT_NLT) == 0) [[likely]] {
          j = stop;
          continue;
        }
        for (int k = 0; k < NS; ++k) {
          sl[k] = s0[k];
          ls[k] = l0[k];
        }
        screened = true;
      }
      steps<true>(j, stop, f, xr, sl, ls, emax);
      j = stop;
    }
  }

  // The blocked sum of terms [0, n) into s[k]: blocks of B terms, each summed
  // recursively from -0 (w x + -0 is w x exactly, -0 for a -0 product) and
  // added to the running total; B >= n is the recursive sum. The state stays
  // in locals for the whole sum (see the binary64 kernel).
  void blocked(std::size_t n, std::size_t B, __m512* s) const {
    const vfmt32 f = F;
    const float* xr[NS];
    state32 ls[NS];
    __m512 tot[NS], sl[NS];
    for (int k = 0; k < NS; ++k) {
      xr[k] = x[k];
      ls[k] = st[k];
    }
    const bool sat = saturate;
    bool screened = false;
    for (std::size_t start = 0; start < n; start += B) {
      for (int k = 0; k < NS; ++k) sl[k] = _mm512_set1_ps(-0.0f);
      terms(start, std::min(start + B, n), f, xr, sl, ls, screened);
      for (int k = 0; k < NS; ++k) {
        __m512i unused;
        tot[k] = start == 0 ? sl[k] : round32<Mode, Sub, true, Flags>(add_ro24(tot[k], sl[k]), f, sat, ls[k], unused);
      }
    }
    for (int k = 0; k < NS; ++k) {
      s[k] = tot[k];
      st[k] = ls[k];
    }
  }

  // The single term lo into s[k] (a leaf of the pairwise sum).
  void term(std::size_t lo, __m512* s) const {
    const float* xr[NS];
    state32 ls[NS];
    for (int k = 0; k < NS; ++k) {
      xr[k] = x[k];
      ls[k] = st[k];
      s[k] = _mm512_set1_ps(-0.0f);
    }
    bool screened = true;
    terms(lo, lo + 1, F, xr, s, ls, screened);
    for (int k = 0; k < NS; ++k) st[k] = ls[k];
  }

  __m512 round_acc(__m512 y, int k) const {
    __m512i unused;
    return round32<Mode, Sub, true, Flags>(y, F, saturate, st[k], unused);
  }

  void pairwise(std::size_t lo, std::size_t n, __m512* s) const {
    if (n == 1) {
      term(lo, s);
      return;
    }
    const std::size_t m = n / 2;
    __m512 right[NS];
    pairwise(lo, m, s);
    pairwise(lo + m, n - m, right);
    for (int k = 0; k < NS; ++k) s[k] = round_acc(add_ro24(s[k], right[k]), k);
  }

  void run(std::size_t n, const order& ord, const float* bias, __m512* out) const {
    __m512 s[NS];
    if (n > 0) sum_in_order(*this, n, ord, s);
    const __m512 b = _mm512_loadu_ps(bias + i0);
    for (int k = 0; k < NS; ++k) out[k] = round_acc(n > 0 ? add_ro24(s[k], b) : add_ro24(b, _mm512_set1_ps(-0.0f)), k);
  }
};

// Binary32 accumulators (every lane's format is binary32 itself): each step of
// sim::dot, RN32(w x + s) or RN32(a + b) with the product exact (or the
// directed roundings), is one binary32 FMA or addition with embedded rounding
// (MXCSR's rounding field is not read): the hardware's correct rounding, with
// the sign of an exact zero corrected in downward rounding (zero_sign).
// Values only. No overflow is possible: the task's operands satisfy
// |w x| <= 2^100 and |b| <= 2^100 (run_impl), and with n <= 2^20 terms every
// partial sum stays below 2^100 n (1 + 2^-23)^n + 2^100 < 2^122.
template <int R, int NS>
struct native32 {
  const float* Wt;  // n_in x ldw, column i of W^T holds component i
  std::size_t ldw, i0;
  const float* const* x;  // NS input rows

  // An exact zero is +0 unless both addends are -0 (sim::dot's rule, which
  // round-to-nearest follows); IEEE 754's downward rounding gives -0 for
  // addends of opposite signs. So downward takes the sign of the zeros it
  // returns from the same operation rounded to nearest (a positive value
  // below the smallest subnormal is +0 either way).
  [[gnu::always_inline]] static __m512 zero_sign(__m512 r, __m512 rn) {
    if constexpr (R != kRD) return r;
    const __mmask16 z = _mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_EQ_OQ);
    return _mm512_mask_and_ps(r, z, rn, _mm512_set1_ps(-0.0f));
  }
  [[gnu::always_inline]] static __m512 fma(__m512 w, __m512 x, __m512 s) {
    const __m512 r = _mm512_fmadd_round_ps(w, x, s, R);
    if constexpr (R != kRD) return r;
    return zero_sign(r, _mm512_fmadd_round_ps(w, x, s, kRN));
  }
  [[gnu::always_inline]] static __m512 add(__m512 a, __m512 b) {
    const __m512 r = _mm512_add_round_ps(a, b, R);
    if constexpr (R != kRD) return r;
    return zero_sign(r, _mm512_add_round_ps(a, b, kRN));
  }

  // terms [j, end) added to s[k] one by one
  [[gnu::always_inline]] void terms(std::size_t j, std::size_t end, __m512* s) const {
    for (const float* wp = Wt + j * ldw + i0; j < end; ++j, wp += ldw) {
      const __m512 w = _mm512_loadu_ps(wp);
      for (int k = 0; k < NS; ++k) s[k] = fma(w, _mm512_set1_ps(x[k][j]), s[k]);
    }
  }
  // blocks of B terms, each summed from -0 (w x + -0 is w x, -0 for a -0
  // product) and added to the running total; B >= n: the recursive sum
  void blocked(std::size_t n, std::size_t B, __m512* s) const {
    __m512 sl[NS];
    for (std::size_t start = 0; start < n; start += B) {
      for (int k = 0; k < NS; ++k) sl[k] = _mm512_set1_ps(-0.0f);
      terms(start, std::min(start + B, n), sl);
      for (int k = 0; k < NS; ++k) s[k] = start == 0 ? sl[k] : add(s[k], sl[k]);
    }
  }
  void pairwise(std::size_t lo, std::size_t n, __m512* s) const {
    if (n == 1) {
      for (int k = 0; k < NS; ++k) s[k] = _mm512_set1_ps(-0.0f);
      terms(lo, lo + 1, s);
      return;
    }
    const std::size_t m = n / 2;
    __m512 right[NS];
    pairwise(lo, m, s);
    pairwise(lo + m, n - m, right);
    for (int k = 0; k < NS; ++k) s[k] = add(s[k], right[k]);
  }
  void run(std::size_t n, const order& ord, const float* bias, float (*out)[16]) const {
    __m512 s[NS];
    for (int k = 0; k < NS; ++k) s[k] = _mm512_set1_ps(-0.0f);  // n = 0: the bias alone, b + -0 = b
    if (n > 0) sum_in_order(*this, n, ord, s);
    const __m512 b = _mm512_loadu_ps(bias + i0);
    for (int k = 0; k < NS; ++k) _mm512_storeu_ps(out[k], add(s[k], b));
  }
};

template <int R>
void run_native32(task32& T) {
  if (T.ns == 4) {
    native32<R, 4>{T.Wt, T.ldw, T.i0, T.rows}.run(T.n, T.ord, T.bias, T.out);
    return;
  }
  for (int k = 0; k < T.ns; ++k) native32<R, 1>{T.Wt, T.ldw, T.i0, T.rows + k}.run(T.n, T.ord, T.bias, T.out + k);
}

// NS samples of the task from sample k0 on; false when a lane reached the screen.
template <rounding Mode, bool Sub, int NS, bool Flags>
bool run_samples32(task32& T, int k0) {
  const vfmt32 F(*T.acc, signed_c<Mode>());
  const float* rows[NS];
  state32 st[NS];
  for (int k = 0; k < NS; ++k) {
    rows[k] = T.rows[k0 + k];
    st[k] = {_mm512_setzero_si512(), _mm512_setzero_si512(), 0, 0, 0};
  }
  const kernel32<Mode, Sub, NS, Flags> kern{T.Wt, T.ldw, T.i0, rows, F, T.saturate, st};
  __m512 out[NS];
  kern.run(T.n, T.ord, T.bias, out);
  for (int k = 0; k < NS; ++k) {
    _mm512_storeu_ps(T.out[k0 + k], out[k]);
    if constexpr (!Flags) continue;
    const __mmask16 inexact = _mm512_test_epi32_mask(st[k].inexact, st[k].inexact);
    const __mmask16 underflow = _mm512_test_epi32_mask(st[k].underflow, st[k].underflow);
    for (int lane = 0; lane < 16; ++lane) {
      const auto bit = [lane](unsigned m, unsigned f) { return ((m >> lane) & 1u) ? f : 0u; };
      T.flags[k0 + k][lane] = bit(inexact, flag::inexact) | bit(underflow, flag::underflow) |
                              bit(st[k].overflow, flag::overflow) | bit(st[k].invalid, flag::invalid) |
                              bit(st[k].saturated, flag::saturated);
    }
  }
  return true;
}

template <rounding Mode, bool Sub, bool Flags>
bool run_mode32(task32& T) {
  if (T.ns == 4) return run_samples32<Mode, Sub, 4, Flags>(T, 0);
  for (int k = 0; k < T.ns; ++k)
    if (!run_samples32<Mode, Sub, 1, Flags>(T, k)) return false;
  return true;
}

template <rounding Mode, bool Sub>
bool run_mode32(task32& T) {
  return T.flags_wanted ? run_mode32<Mode, Sub, true>(T) : run_mode32<Mode, Sub, false>(T);
}

template <rounding Mode>
bool run_mode32(task32& T) {
  return T.all_sub ? run_mode32<Mode, true>(T) : run_mode32<Mode, false>(T);
}

// Runs the task; false for a mode it does not cover (stochastic, which never
// comes here) and for the binary32-accumulator tasks native32 does not take
// (flags wanted, more than 2^20 terms, FTZ/DAZ set): the caller then runs the
// binary64 kernel on the task.
bool run_block32(task32& T) {
  if (T.native) {
    // values only, at most 2^20 terms (no overflow, see native32), and not
    // with flush-to-zero or denormals-are-zero set (they would change the
    // hardware's subnormal results)
    if (T.flags_wanted || T.n > (std::size_t{1} << 20) || (_mm_getcsr() & 0x8040u) != 0) return false;
    switch (T.mode) {
      case rounding::nearest_even:
        run_native32<kRN>(T);
        return true;
      case rounding::toward_zero:
        run_native32<kRZ>(T);
        return true;
      case rounding::upward:
        run_native32<kRU>(T);
        return true;
      case rounding::downward:
        run_native32<kRD>(T);
        return true;
      default:
        return false;
    }
  }
  switch (T.mode) {
    case rounding::nearest_even:
      return run_mode32<rounding::nearest_even>(T);
    case rounding::nearest_away:
      return run_mode32<rounding::nearest_away>(T);
    case rounding::toward_zero:
      return run_mode32<rounding::toward_zero>(T);
    case rounding::upward:
      return run_mode32<rounding::upward>(T);
    case rounding::downward:
      return run_mode32<rounding::downward>(T);
    case rounding::odd:
      return run_mode32<rounding::odd>(T);
    case rounding::stochastic:
      break;
  }
  return false;
}

// Row x[0, n) in binary32 into xf; true when every value is a binary32
// value (each conversion exact); mx = max |x[j]| (meaningless when false:
// a NaN compares unequal to its conversion).
bool convert_row32(const double* x, float* xf, std::size_t n, double& mx) {
  __m512d vmax = _mm512_setzero_pd();
  __mmask8 bad = 0;
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m512d v = _mm512_loadu_pd(x + j);
    const __m256 f = _mm512_cvtpd_ps(v);
    _mm256_storeu_ps(xf + j, f);
    bad |= _mm512_cmp_pd_mask(_mm512_cvtps_pd(f), v, _CMP_NEQ_UQ);
    vmax = _mm512_max_pd(vmax, _mm512_abs_pd(v));
  }
  double tail = 0;
  for (; j < n; ++j) {  // (a masked 256-bit store would need AVX-512VL)
    xf[j] = static_cast<float>(x[j]);
    bad |= static_cast<double>(xf[j]) == x[j] ? 0 : 1;
    tail = std::max(tail, std::fabs(x[j]));
  }
  mx = std::max(_mm512_reduce_max_pd(vmax), tail);
  return bad == 0;
}

}  // namespace b32

}  // namespace avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // MPACC_X86

bool cpu_has_avx512() noexcept {
#ifdef MPACC_X86
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx2() noexcept {
#ifdef MPACC_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// Exponent of the lowest set bit of v (v finite, non-zero), and of the
// largest magnitude bound: used to prove that all sums of a task are exact.
int lsb_exponent(double v) noexcept {
  const std::uint64_t b = std::bit_cast<std::uint64_t>(v) & 0x7fffffffffffffffULL;
  const int E = static_cast<int>(b >> 52);
  std::uint64_t m = b & 0x000fffffffffffffULL;
  if (E) m |= 0x0010000000000000ULL;
  return (E ? E : 1) - 1075 + std::countr_zero(m);
}

// Bit-span summary of a set of values: the lowest set bit over all non-zero
// values and the largest magnitude. Non-finite values make it unusable.
struct span_info {
  int lo = 100000;  // min lsb exponent (100000: no non-zero value)
  double max = 0;   // max |v|
  bool finite = true;
  void add(double v) noexcept {
    if (!std::isfinite(v)) {
      finite = false;
      return;
    }
    if (v != 0) {
      lo = std::min(lo, lsb_exponent(v));
      max = std::max(max, std::fabs(v));
    }
  }
};

// The span of a row, as span_info::add over its values, without branches
// (the input rows of a layer are summarized once per run; for a convolution
// lowered by im2col there are as many rows as output pixels).
span_info row_span(const double* x, std::size_t n) noexcept {
  int lo = 100000;
  double mx = 0;
  bool bad = false;
  for (std::size_t j = 0; j < n; ++j) {
    const std::uint64_t b = std::bit_cast<std::uint64_t>(x[j]) & 0x7fffffffffffffffULL;
    const std::uint64_t E = b >> 52;
    bad |= E == 0x7ff;
    const std::uint64_t m = (b & 0x000fffffffffffffULL) | (E ? 0x0010000000000000ULL : 0);
    const int l = static_cast<int>(E ? E : 1) - 1075 + std::countr_zero(m | (std::uint64_t{1} << 63));
    lo = std::min(lo, b ? l : 100000);
    mx = std::max(mx, std::bit_cast<double>(b));
  }
  span_info r;
  if (bad) {
    r.finite = false;
  } else {
    r.lo = lo;
    r.max = mx;
  }
  return r;
}

// Smallest quantum exponent of f's grid: the spacing of the subnormals, and of the
// binade [2^emin, 2^(emin+1)) without subnormals, is 2^(emin-p+1) either way.
int grid_lsb(const format& f) noexcept { return f.emin - f.p + 1; }

}  // namespace

namespace {

bool kernel_available(dense_kernel k) noexcept {
  switch (k) {
    case dense_kernel::scalar:
    case dense_kernel::portable:
      return true;
    case dense_kernel::avx2:
      return cpu_has_avx2();
    case dense_kernel::avx512:
    case dense_kernel::avx512_b32:
      return cpu_has_avx512();
  }
  return false;
}

std::string available_kernels() {
  std::string s = "scalar, portable";
  if (cpu_has_avx2()) s += ", avx2";
  if (cpu_has_avx512()) s += ", avx512, avx512-b32";
  return s;
}

constexpr dense_kernel all_kernels[] = {dense_kernel::scalar, dense_kernel::portable, dense_kernel::avx2,
                                        dense_kernel::avx512, dense_kernel::avx512_b32};

// The forced kernel, or -1 for "auto"; and why MPACC_KERNEL could not be honoured.
std::atomic<int> forced_kernel{-1};
// tasks completed by the binary32 kernel (diagnostics)
std::atomic<std::uint64_t> b32_task_count{0};
std::string env_error;  // set once at start-up, cleared by set_dense_kernel_choice

// Empty when `choice` can be used on this processor, else the reason.
std::string check_choice(std::string_view choice, int& forced) {
  if (choice.empty() || choice == "auto") {
    forced = -1;
    return {};
  }
  for (dense_kernel k : all_kernels)
    if (choice == to_string(k)) {
      if (!kernel_available(k))
        return "kernel '" + std::string(choice) + "' is not available on this processor (it lacks " +
               (k == dense_kernel::avx512 || k == dense_kernel::avx512_b32 ? "AVX-512F/DQ" : "AVX2 or FMA") +
               "; available: auto, " + available_kernels() + ")";
      forced = static_cast<int>(k);
      return {};
    }
  return "unknown kernel choice '" + std::string(choice) + "' (auto, scalar, portable, avx2, avx512, avx512-b32)";
}

const bool env_read = [] {
  const char* env = std::getenv("MPACC_KERNEL");
  int forced = -1;
  if (env) {
    const std::string err = check_choice(env, forced);
    if (!err.empty()) env_error = "MPACC_KERNEL: " + err;
  }
  forced_kernel = forced;
  return true;
}();

void throw_if_env_error() {
  if (!env_error.empty()) throw std::invalid_argument(env_error);
}

// Whether the vector kernels can compute this spec (any of them).
bool vectorizable(const layer_spec& spec) noexcept {
  if (spec.base.via) return false;  // double rounding through `via`: sim::dot per component
  if (spec.acc.formats.empty())
    return vector_format_ok(spec.base.acc) && (!spec.base.product || vector_format_ok(*spec.base.product));
  for (const auto& f : spec.acc.formats)
    if (!vector_format_ok(f)) return false;
  return !spec.base.product || vector_format_ok(*spec.base.product);
}

// Whether the binary32 kernel covers this spec (else avx512 runs it): exact
// products, no via, not stochastic, every accumulator b32_format_ok.
bool b32_applies(const layer_spec& spec) noexcept {
  if (spec.base.product || spec.base.via || spec.base.mode == rounding::stochastic) return false;
  if (native32_applies(spec)) return true;
  if (spec.acc.formats.empty()) return b32_format_ok(spec.base.acc);
  return std::all_of(spec.acc.formats.begin(), spec.acc.formats.end(), b32_format_ok);
}

}  // namespace

std::string_view to_string(dense_kernel k) noexcept {
  switch (k) {
    case dense_kernel::scalar:
      return "scalar";
    case dense_kernel::portable:
      return "portable";
    case dense_kernel::avx2:
      return "avx2";
    case dense_kernel::avx512:
      return "avx512";
    case dense_kernel::avx512_b32:
      return "avx512-b32";
  }
  return "?";
}

void set_dense_kernel_choice(std::string_view choice) {
  int forced = -1;
  const std::string err = check_choice(choice, forced);
  if (!err.empty()) throw std::invalid_argument(err);
  forced_kernel = forced;
  env_error.clear();
}

std::string dense_kernel_choice() {
  throw_if_env_error();
  const int f = forced_kernel;
  return f < 0 ? "auto" : std::string(to_string(static_cast<dense_kernel>(f)));
}

dense_kernel dense_kernel_for(const layer_spec& spec) noexcept {
  if (!vectorizable(spec)) return dense_kernel::scalar;
  const int f = forced_kernel;
  if (f >= 0) {
    const auto k = static_cast<dense_kernel>(f);
    return k == dense_kernel::avx512_b32 && !b32_applies(spec) ? dense_kernel::avx512 : k;
  }
  if (cpu_has_avx512()) return b32_applies(spec) ? dense_kernel::avx512_b32 : dense_kernel::avx512;
  if (cpu_has_avx2()) return dense_kernel::avx2;
  return dense_kernel::portable;
}

std::uint64_t dense_b32_tasks() noexcept { return b32_task_count; }

bool dense_vector_kernel_applies(const layer_spec& spec) noexcept {
  return dense_kernel_for(spec) != dense_kernel::scalar;
}

#ifdef MPACC_X86
namespace {
// Row x[0, n) in binary32 into xf (b32::convert_row32 without AVX-512).
bool convert_row32(const double* x, float* xf, std::size_t n, double& mx) {
  bool ok = true;
  mx = 0;
  for (std::size_t j = 0; j < n; ++j) {
    xf[j] = static_cast<float>(x[j]);
    ok = ok && static_cast<double>(xf[j]) == x[j];
    mx = std::max(mx, std::fabs(x[j]));
  }
  return ok;
}
}  // namespace
#endif

struct prepared_dense::impl {
  layer_spec spec;
  std::size_t n_in = 0, n_out = 0;
  std::vector<double> W, b;  // row-major copy (scalar path only)
  bool vector = false;
  dense_kernel kernel = dense_kernel::scalar;
  // vector kernel data
  std::size_t blocks = 0, ldw = 0;
  std::vector<double> Wt, bias;
  std::vector<lane_formats> accL;
  lane_formats prodL{};
  std::vector<span_info> wspan, bspan;
  std::vector<int> grid_lo;
  std::vector<double> acc_max;
  bool all_sub = true;
  // binary32 kernel data: blocks of 16 components
  std::size_t blocks32 = 0, ldw32 = 0;
  std::vector<float> Wt32, bias32;
  std::vector<lane_formats32> accL32;
  std::vector<std::uint8_t> ok32;  // per block: W and b are binary32 values, |w|, |b| <= 2^100
  std::vector<double> wmax32;      // per block: max |w|
  bool native32 = false;           // binary32 accumulators: b32::native32 runs the values-only calls
};

prepared_dense::prepared_dense(matrix_view W, std::span<const double> b, const layer_spec& spec_in)
    : p_(std::make_shared<impl>()) {
  const layer_spec spec = spec_in.resolved();
  const std::size_t n_in = W.cols, n_out = W.rows;
  if (b.size() != n_out)
    throw std::invalid_argument("dense: bias has " + std::to_string(b.size()) + " entries, W has " +
                                std::to_string(n_out) + " rows");
  if (!spec.acc.index.empty() && spec.acc.index.size() != n_out)
    throw std::invalid_argument("dense: precision map has " + std::to_string(spec.acc.index.size()) + " entries for " +
                                std::to_string(n_out) + " components");
  for (auto i : spec.acc.index)
    if (i >= spec.acc.formats.size()) throw std::invalid_argument("dense: precision map index out of range");
  for (const auto& f : spec.acc.formats) {
    accumulation a = spec.base;
    a.acc = f;
    if (!fast_path_applies(a))
      throw std::invalid_argument("dense: accumulator " + to_string(f) + " is outside the exact fast path (p <= 51)");
  }
  throw_if_env_error();
  impl& P = *p_;
  P.spec = spec;
  P.n_in = n_in;
  P.n_out = n_out;
  P.kernel = n_out > 0 ? dense_kernel_for(spec) : dense_kernel::scalar;
  P.vector = P.kernel != dense_kernel::scalar;
  if (!P.vector) {  // the scalar path reads W and b as given; the vector kernel its own layout
    P.W.assign(W.data, W.data + n_in * n_out);
    P.b.assign(b.begin(), b.end());
    return;
  }
  // W^T padded to a multiple of 8 components, bias padded likewise
  P.blocks = (n_out + 7) / 8;
  P.ldw = P.blocks * 8;
  P.Wt.assign(n_in * P.ldw, 0.0);
  P.bias.assign(P.ldw, 0.0);
  const auto n_in_s = static_cast<std::ptrdiff_t>(n_in);
#pragma omp parallel for schedule(static) if (n_in * n_out >= 32768)
  for (std::ptrdiff_t j = 0; j < n_in_s; ++j)
    for (std::size_t i = 0; i < n_out; ++i) P.Wt[static_cast<std::size_t>(j) * P.ldw + i] = W.row(i)[j];
  for (std::size_t i = 0; i < n_out; ++i) P.bias[i] = b[i];
  P.accL.assign(P.blocks, lane_formats{});
  for (std::size_t blk = 0; blk < P.blocks; ++blk)
    for (int lane = 0; lane < 8; ++lane) {
      const std::size_t i = std::min(blk * 8 + static_cast<std::size_t>(lane), n_out - 1);
      fill_lane(P.accL[blk], lane, spec.acc.of(i));
    }
  if (spec.base.product)
    for (int lane = 0; lane < 8; ++lane) fill_lane(P.prodL, lane, *spec.base.product);
  // Bit spans for the exactness proof, per block of 8 components
  P.wspan.assign(P.blocks, span_info{});
  P.bspan.assign(P.blocks, span_info{});
  P.grid_lo.assign(P.blocks, 100000);
  P.acc_max.assign(P.blocks, 0.0);
  const auto blocks_s = static_cast<std::ptrdiff_t>(P.blocks);
#pragma omp parallel for schedule(static) if (n_in * n_out >= 32768)
  for (std::ptrdiff_t blk = 0; blk < blocks_s; ++blk) {
    const auto bk = static_cast<std::size_t>(blk);
    for (std::size_t i = bk * 8; i < std::min(bk * 8 + 8, n_out); ++i) {
      for (std::size_t j = 0; j < n_in; ++j) P.wspan[bk].add(W.row(i)[j]);
      P.bspan[bk].add(b[i]);
      P.grid_lo[bk] = std::min(P.grid_lo[bk], grid_lsb(spec.acc.of(i)));
      P.acc_max[bk] = std::max(P.acc_max[bk], spec.acc.of(i).max_finite);
    }
  }
  P.all_sub = !spec.base.product || spec.base.product->subnormals;
  for (const auto& f : spec.acc.formats) P.all_sub = P.all_sub && f.subnormals;
  // the binary32 lanes: the avx512-b32 kernel, and avx2's binary32
  // accumulators in nearest-even (avx2::native32, values-only calls)
  const bool avx2_native =
      P.kernel == dense_kernel::avx2 && spec.base.mode == rounding::nearest_even && native32_applies(spec);
  if (P.kernel != dense_kernel::avx512_b32 && !avx2_native) return;
  P.native32 = native32_applies(spec);
  P.blocks32 = (n_out + 15) / 16;
  P.ldw32 = P.blocks32 * 16;
  P.Wt32.assign(n_in * P.ldw32, 0.0f);
  P.bias32.assign(P.ldw32, 0.0f);
  P.accL32.assign(P.blocks32, lane_formats32{});
  P.ok32.assign(P.blocks32, 1);
  P.wmax32.assign(P.blocks32, 0.0);
  // a binary32 value (so the conversion is exact) of magnitude <= 2^100
  const auto is32 = [](double v) { return static_cast<double>(static_cast<float>(v)) == v && std::fabs(v) <= 0x1p100; };
  const auto blocks32_s = static_cast<std::ptrdiff_t>(P.blocks32);
#pragma omp parallel for schedule(static) if (n_in * n_out >= 32768)
  for (std::ptrdiff_t blk = 0; blk < blocks32_s; ++blk) {
    const auto bk = static_cast<std::size_t>(blk);
    for (int lane = 0; lane < 16; ++lane)
      fill_lane32(P.accL32[bk], lane, spec.acc.of(std::min(bk * 16 + static_cast<std::size_t>(lane), n_out - 1)));
    for (std::size_t i = bk * 16; i < std::min(bk * 16 + 16, n_out); ++i) {
      bool ok = is32(b[i]);
      P.bias32[i] = static_cast<float>(b[i]);
      for (std::size_t j = 0; j < n_in; ++j) {
        const double w = W.row(i)[j];
        ok = ok && is32(w);
        P.Wt32[j * P.ldw32 + i] = static_cast<float>(w);
        P.wmax32[bk] = std::max(P.wmax32[bk], std::fabs(w));
      }
      if (!ok) P.ok32[bk] = 0;
    }
  }
}

std::size_t prepared_dense::inputs() const noexcept { return p_->n_in; }
std::size_t prepared_dense::outputs() const noexcept { return p_->n_out; }
const layer_spec& prepared_dense::spec() const noexcept { return p_->spec; }

layer_flags prepared_dense::run(matrix_view X, std::vector<double>& Y, int threads, std::vector<unsigned>* out_flags,
                                std::size_t first_row, matrix_view span_rows, std::size_t rows_per_span) const {
  return run_impl(X, nullptr, Y, threads, out_flags, first_row, span_rows, rows_per_span);
}

layer_flags prepared_dense::run_selected(matrix_view X, std::span<const std::uint8_t> need, std::vector<double>& Y,
                                         int threads, std::vector<unsigned>* flags, std::size_t first_row) const {
  if (need.size() != X.rows * p_->n_out)
    throw std::invalid_argument("dense: the selection has " + std::to_string(need.size()) + " entries for " +
                                std::to_string(X.rows) + " x " + std::to_string(p_->n_out) + " outputs");
  return run_impl(X, need.data(), Y, threads, flags, first_row, {}, 1);
}

void prepared_dense::run_values(matrix_view X, std::vector<double>& Y, int threads, std::size_t first_row) const {
  run_impl(X, nullptr, Y, threads, nullptr, first_row, {}, 1, false);
}

void prepared_dense::run_selected_values(matrix_view X, std::span<const std::uint8_t> need, std::vector<double>& Y,
                                         int threads, std::size_t first_row) const {
  if (need.size() != X.rows * p_->n_out)
    throw std::invalid_argument("dense: the selection has " + std::to_string(need.size()) + " entries for " +
                                std::to_string(X.rows) + " x " + std::to_string(p_->n_out) + " outputs");
  run_impl(X, need.data(), Y, threads, nullptr, first_row, {}, 1, false);
}

layer_flags prepared_dense::run_impl(matrix_view X, const std::uint8_t* need, std::vector<double>& Y, int threads,
                                     std::vector<unsigned>* out_flags, std::size_t first_row, matrix_view span_rows,
                                     std::size_t rows_per_span, bool want_flags) const {
  const impl& P = *p_;
  const layer_spec& spec = P.spec;
  const std::size_t batch = X.rows, n_in = P.n_in, n_out = P.n_out;
  if (X.cols != n_in)
    throw std::invalid_argument("dense: W has " + std::to_string(n_in) + " columns but X has " +
                                std::to_string(X.cols));
  if (span_rows.data && (rows_per_span == 0 || span_rows.rows * rows_per_span < batch))
    throw std::invalid_argument("dense: span_rows does not cover every row of X");
  // outputs not selected are NaN (never read as values by mistake)
  Y.assign(batch * n_out, need ? std::numeric_limits<double>::quiet_NaN() : 0.0);
  // each output's flags, kept only when asked for; the counts are taken as
  // the outputs are stored
  std::vector<unsigned> flags(out_flags ? batch * n_out : 0, 0);
  unsigned* const fl = out_flags ? flags.data() : nullptr;
  std::size_t c_inexact = 0, c_underflow = 0, c_overflow = 0, c_invalid = 0, c_saturated = 0;
  const int nt = thread_count(threads);
  if (P.vector) {
    // the bit span of each row (or of the row of span_rows that covers it)
    const bool own = span_rows.data == nullptr;
    if (own) {
      span_rows = X;
      rows_per_span = 1;
    }
    const std::size_t nspan = (batch + rows_per_span - 1) / rows_per_span;
    // binary32 lanes: the avx512-b32 kernel, or avx2's binary32 accumulators
    // in a values-only call (else the avx2 kernel runs the layer)
    const bool avx2_native =
        P.kernel == dense_kernel::avx2 && P.native32 && !want_flags && n_in <= (std::size_t{1} << 20);
    const bool b32 = P.kernel == dense_kernel::avx512_b32 || avx2_native;
    std::vector<span_info> sspan(nspan);
    // The binary32 kernel needs no span: there, a row's span is measured when a
    // task that covers it first falls back to the binary64 kernel (state 0: not
    // measured, 1: being stored by another thread, 2: stored)
    std::unique_ptr<std::atomic<std::uint8_t>[]> span_state;
    if (b32) {
      span_state = std::make_unique<std::atomic<std::uint8_t>[]>(nspan);
    } else {
      const auto nspan_s = static_cast<std::ptrdiff_t>(nspan);
#pragma omp parallel for num_threads(nt) schedule(static) if (nspan * span_rows.cols >= 32768)
      for (std::ptrdiff_t s = 0; s < nspan_s; ++s)
        sspan[static_cast<std::size_t>(s)] = row_span(span_rows.row(static_cast<std::size_t>(s)), span_rows.cols);
    }
    auto xspan = [&](std::size_t r) -> span_info {
      const std::size_t i = r / rows_per_span;
      if (!b32) return sspan[i];
      std::atomic<std::uint8_t>& state = span_state[i];
      if (state.load(std::memory_order_acquire) == 2) return sspan[i];
      const span_info v = row_span(span_rows.row(i), span_rows.cols);
      std::uint8_t expected = 0;
      if (state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        sspan[i] = v;
        state.store(2, std::memory_order_release);
      }
      return v;
    };
    auto task_exact = [&](std::size_t blk, const std::size_t* rows, int ns) {
      if (!P.wspan[blk].finite || !P.bspan[blk].finite) return false;
      int lo = std::min(P.grid_lo[blk], P.bspan[blk].lo);
      double xmax = 0;
      int xlo = 100000;
      for (int k = 0; k < ns; ++k) {
        const span_info sp = xspan(rows[k]);
        if (!sp.finite) return false;
        xlo = std::min(xlo, sp.lo);
        xmax = std::max(xmax, sp.max);
      }
      if (P.wspan[blk].lo < 100000 && xlo < 100000) lo = std::min(lo, P.wspan[blk].lo + xlo);
      if (spec.base.product) lo = std::min(lo, grid_lsb(*spec.base.product));
      // every exact intermediate is a multiple of 2^lo and below 2 * bound in magnitude
      const double bound = 2 * P.acc_max[blk] + P.wspan[blk].max * xmax + P.bspan[blk].max +
                           (spec.base.product ? spec.base.product->max_finite : 0.0);
      if (!(bound < 0x1p+1000)) return false;
      const int hi = std::ilogb(bound) + 2;
      // hi <= 970 also lets the kernel skip the exponent clamp (2^(e+53-p) finite)
      return hi - lo <= 53 && hi <= 970;
    };
    const lane_formats* prodP = spec.base.product ? &P.prodL : nullptr;
    // The tasks: block-major, each block's samples in groups of 4. All samples
    // (no selection): task t = (block t / groups, samples 4g .. 4g + 3). With a
    // selection, a block runs only on the samples that need one of its
    // components, in increasing order, 4 at a time (any 4 rows make a task:
    // each output is computed alone, so its bits do not depend on the others).
    // Blocks are of 8 components (16 for the binary32 kernel).
    const std::size_t width = b32 ? 16 : 8, nblocks = b32 ? P.blocks32 : P.blocks;
    const std::size_t sample_groups = (batch + 3) / 4;
    std::vector<std::uint32_t> sel_rows;             // per block, its samples
    std::vector<std::size_t> sel_start, task_start;  // per block: first of sel_rows, first task
    std::size_t n_tasks = sample_groups * nblocks;
    if (need) {
      sel_start.assign(nblocks + 1, 0);
      task_start.assign(nblocks + 1, 0);
      for (std::size_t blk = 0; blk < nblocks; ++blk) {
        const std::size_t lo = blk * width, hi = std::min(lo + width, n_out);
        for (std::size_t r = 0; r < batch; ++r) {
          const std::uint8_t* nr = need + r * n_out;
          bool any = false;
          for (std::size_t i = lo; i < hi; ++i) any |= nr[i] != 0;
          if (any) sel_rows.push_back(static_cast<std::uint32_t>(r));
        }
        sel_start[blk + 1] = sel_rows.size();
        task_start[blk + 1] = task_start[blk] + (sel_start[blk + 1] - sel_start[blk] + 3) / 4;
      }
      n_tasks = task_start[nblocks];
    }
    const auto tasks = static_cast<std::ptrdiff_t>(n_tasks);
    const double* Wt = P.Wt.data();
    const double* bias = P.bias.data();
    const std::size_t ldw = P.ldw;
    const bool all_sub = P.all_sub;
    const std::uint64_t words = words_per_dot(n_in, spec.base);
    void (*kernel_fn)(block_task&) = portable::run_block;
#ifdef MPACC_X86
    if (P.kernel == dense_kernel::avx2) kernel_fn = avx2::run_block;
    if (P.kernel == dense_kernel::avx512 || P.kernel == dense_kernel::avx512_b32) kernel_fn = avx512::run_block;
#endif
    // stores one output and counts its flags
    auto store = [&](std::size_t o, double v, unsigned f, std::size_t(&c)[5]) {
      Y[o] = v;
      if (fl) fl[o] = f;
      c[0] += f & flag::inexact;
      c[1] += (f / flag::underflow) & 1;
      c[2] += (f / flag::overflow) & 1;
      c[3] += (f / flag::invalid) & 1;
      c[4] += (f / flag::saturated) & 1;
    };
    // block blk of 8 components on the ns samples `rows`, binary64 kernel
    auto run8 = [&](std::size_t blk, const std::size_t* rows, int ns, std::size_t(&c)[5]) {
      block_task T;
      T.Wt = Wt;
      T.ldw = ldw;
      T.n = n_in;
      T.i0 = blk * 8;
      T.ns = ns;
      for (int k = 0; k < ns; ++k) {
        T.rows[k] = X.row(rows[k]);
        T.first_word[k] = ((first_row + rows[k]) * n_out + T.i0) * words;
      }
      T.bias = bias;
      T.acc = &P.accL[blk];
      T.prod = prodP;
      T.ord = spec.base.ord;
      T.mode = spec.base.mode;
      T.saturate = spec.base.saturate;
      T.exact = task_exact(blk, rows, ns);
      T.all_sub = all_sub;
      T.seed = spec.base.seed;
      T.words = words;
      kernel_fn(T);
      for (int k = 0; k < ns; ++k)
        for (std::size_t lane = 0; lane < 8 && T.i0 + lane < n_out; ++lane) {
          const std::size_t o = rows[k] * n_out + T.i0 + lane;
          if (need && need[o] == 0) continue;
          store(o, T.out[k][lane], T.flags[k][lane], c);
        }
    };
    // the binary32 kernel's inputs: X in binary32, and per row whether every
    // value is a binary32 value of magnitude <= 2^100, and its largest magnitude
    // (not zeroed: every element is written before it is read)
    const auto Xf = std::make_unique_for_overwrite<float[]>(b32 ? batch * n_in : 0);
    std::vector<std::uint8_t> row_ok32(b32 ? batch : 0);
    std::vector<double> row_max32(b32 ? batch : 0);
#ifdef MPACC_X86
    if (b32) {
      const auto batch_s = static_cast<std::ptrdiff_t>(batch);
#pragma omp parallel for num_threads(nt) schedule(static) if (batch * n_in >= 32768)
      for (std::ptrdiff_t r = 0; r < batch_s; ++r) {
        const auto ru = static_cast<std::size_t>(r);
        double mx = 0;
        const bool ok = avx2_native ? convert_row32(X.row(ru), Xf.get() + ru * n_in, n_in, mx)
                                    : avx512::b32::convert_row32(X.row(ru), Xf.get() + ru * n_in, n_in, mx);
        row_ok32[ru] = ok && mx <= 0x1p100;
        row_max32[ru] = mx;
      }
    }
#endif
    std::size_t c_b32 = 0;
#pragma omp parallel for num_threads(nt) schedule(static) \
    reduction(+ : c_inexact, c_underflow, c_overflow, c_invalid, c_saturated, c_b32)
    for (std::ptrdiff_t t = 0; t < tasks; ++t) {
      // block-major: consecutive tasks of a thread reuse the same strip of W^T
      const auto tu = static_cast<std::size_t>(t);
      std::size_t blk = 0, rows[4] = {};
      int ns = 0;
      if (need) {
        blk =
            static_cast<std::size_t>(std::upper_bound(task_start.begin(), task_start.end(), tu) - task_start.begin()) -
            1;
        const std::size_t first = sel_start[blk] + (tu - task_start[blk]) * 4;
        ns = static_cast<int>(std::min<std::size_t>(4, sel_start[blk + 1] - first));
        for (int k = 0; k < ns; ++k) rows[k] = sel_rows[first + static_cast<std::size_t>(k)];
      } else {
        blk = tu / sample_groups;
        const std::size_t s0 = (tu % sample_groups) * 4;
        ns = static_cast<int>(std::min<std::size_t>(4, batch - s0));
        for (int k = 0; k < ns; ++k) rows[k] = s0 + static_cast<std::size_t>(k);
      }
      std::size_t c[5] = {};
      bool done = false;
#ifdef MPACC_X86
      if (b32) {
        bool ok = P.ok32[blk] != 0;
        double xmax = 0;
        for (int k = 0; k < ns; ++k) {
          ok = ok && row_ok32[rows[k]] != 0;
          xmax = std::max(xmax, row_max32[rows[k]]);
        }
        if (ok && P.wmax32[blk] * xmax <= 0x1p100) {
          task32 T;
          T.Wt = P.Wt32.data();
          T.ldw = P.ldw32;
          T.n = n_in;
          T.i0 = blk * 16;
          T.ns = ns;
          for (int k = 0; k < ns; ++k) T.rows[k] = Xf.get() + rows[k] * n_in;
          T.bias = P.bias32.data();
          T.acc = &P.accL32[blk];
          T.ord = spec.base.ord;
          T.mode = spec.base.mode;
          T.saturate = spec.base.saturate;
          T.all_sub = all_sub;
          T.flags_wanted = want_flags;
          T.native = P.native32;
          done = avx2_native ? avx2::native_task(T) : avx512::b32::run_block32(T);
          if (done) {
            ++c_b32;
            for (int k = 0; k < ns; ++k)
              for (std::size_t lane = 0; lane < 16 && T.i0 + lane < n_out; ++lane) {
                const std::size_t o = rows[k] * n_out + T.i0 + lane;
                if (need && need[o] == 0) continue;
                store(o, static_cast<double>(T.out[k][lane]), T.flags[k][lane], c);
              }
          }
        }
        if (!done)  // its two blocks of 8 on the binary64 kernel
          for (std::size_t b8 = blk * 2; b8 < std::min(blk * 2 + 2, P.blocks); ++b8) run8(b8, rows, ns, c);
        done = true;
      }
#endif
      if (!done) run8(blk, rows, ns, c);
      c_inexact += c[0];
      c_underflow += c[1];
      c_overflow += c[2];
      c_invalid += c[3];
      c_saturated += c[4];
    }
    if (c_b32) b32_task_count += c_b32;
  } else {
    const std::uint64_t words = words_per_dot(n_in, spec.base);
    const auto tasks = static_cast<std::ptrdiff_t>(batch * n_out);
#pragma omp parallel for num_threads(nt) schedule(static) \
    reduction(+ : c_inexact, c_underflow, c_overflow, c_invalid, c_saturated)
    for (std::ptrdiff_t t = 0; t < tasks; ++t) {
      const std::size_t s = static_cast<std::size_t>(t) / n_out, i = static_cast<std::size_t>(t) % n_out;
      if (need && need[static_cast<std::size_t>(t)] == 0) continue;
      accumulation a = spec.base;
      a.acc = spec.acc.of(i);
      const auto r = dot({P.W.data() + i * n_in, n_in}, {X.row(s), n_in}, P.b[i], a,
                         (first_row * n_out + static_cast<std::uint64_t>(t)) * words);
      Y[static_cast<std::size_t>(t)] = r.value;
      const unsigned f = r.flags;
      if (fl) fl[static_cast<std::size_t>(t)] = f;
      c_inexact += f & flag::inexact;
      c_underflow += (f / flag::underflow) & 1;
      c_overflow += (f / flag::overflow) & 1;
      c_invalid += (f / flag::invalid) & 1;
      c_saturated += (f / flag::saturated) & 1;
    }
  }
  layer_flags lf;
  lf.outputs =
      need ? static_cast<std::size_t>(std::count_if(need, need + batch * n_out, [](std::uint8_t v) { return v != 0; }))
           : batch * n_out;
  lf.inexact = c_inexact;
  lf.underflow = c_underflow;
  lf.overflow = c_overflow;
  lf.invalid = c_invalid;
  lf.saturated = c_saturated;
  if (out_flags) *out_flags = std::move(flags);
  return lf;
}

layer_flags dense(matrix_view X, matrix_view W, std::span<const double> b, const layer_spec& spec,
                  std::vector<double>& Y, int threads) {
  if (W.cols != X.cols)
    throw std::invalid_argument("dense: W has " + std::to_string(W.cols) + " columns but X has " +
                                std::to_string(X.cols));
  return prepared_dense(W, b, spec).run(X, Y, threads);
}

}  // namespace mpacc::sim
