// SPDX-License-Identifier: MIT
#include "mpacc/sim/conv.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "mpacc/sim/random.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::sim {

namespace {

// below this many elements (or terms) a loop runs on the calling thread: a
// parallel region costs more than the work
constexpr std::size_t parallel_min = std::size_t{1} << 15;
// im2col rows per piece of a batch (the lowered piece then stays in cache)
constexpr std::size_t default_piece_rows = 4096;

}  // namespace

// ---------------------------------------------------------------------------
// im2col

void conv_patch(const conv2d_shape& s, const double* image, std::size_t oy, std::size_t ox, double* out) {
  // signed coordinates: the top-left corner of the window may lie in the padding
  const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
  const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
  const auto H = static_cast<std::ptrdiff_t>(s.h), Wd = static_cast<std::ptrdiff_t>(s.w);
  const auto KW = static_cast<std::ptrdiff_t>(s.kw);
  // the kernel columns that fall inside the image: [kx_lo, kx_hi)
  const std::ptrdiff_t kx_lo = std::max<std::ptrdiff_t>(0, -x0), kx_hi = std::min<std::ptrdiff_t>(KW, Wd - x0);
  for (std::size_t ci = 0; ci < s.c_in; ++ci) {
    const double* plane = image + ci * s.h * s.w;
    for (std::size_t ky = 0; ky < s.kh; ++ky, out += s.kw) {
      const std::ptrdiff_t iy = y0 + static_cast<std::ptrdiff_t>(ky);
      if (iy < 0 || iy >= H || kx_lo >= kx_hi) {
        std::fill(out, out + s.kw, 0.0);
        continue;
      }
      const double* row = plane + iy * Wd + x0;
      for (std::ptrdiff_t kx = 0; kx < kx_lo; ++kx) out[kx] = 0.0;
      for (std::ptrdiff_t kx = kx_lo; kx < kx_hi; ++kx) out[kx] = row[kx];
      for (std::ptrdiff_t kx = std::max(kx_hi, kx_lo); kx < KW; ++kx) out[kx] = 0.0;
    }
  }
}

namespace {

// rows [r0, r0 + nrows) of the im2col matrix of X (rows numbered from X's first sample)
void im2col_rows(const conv2d_shape& s, const double* X, std::size_t r0, std::size_t nrows, double* cols, int threads) {
  const std::size_t ohw = s.out_h() * s.out_w(), ow = s.out_w(), K = s.patch(), in = s.in_size();
  const auto n = static_cast<std::ptrdiff_t>(nrows);
#pragma omp parallel for num_threads(thread_count(threads)) schedule(static) if (nrows * K >= parallel_min)
  for (std::ptrdiff_t t = 0; t < n; ++t) {
    const std::size_t r = r0 + static_cast<std::size_t>(t);
    const std::size_t smp = r / ohw, pix = r % ohw;
    conv_patch(s, X + smp * in, pix / ow, pix % ow, cols + static_cast<std::size_t>(t) * K);
  }
}

}  // namespace

void im2col(const conv2d_shape& s, const double* X, std::size_t batch, std::vector<double>& cols) {
  s.validate();
  const std::size_t rows = batch * s.out_h() * s.out_w();
  cols.resize(rows * s.patch());
  im2col_rows(s, X, 0, rows, cols.data(), 0);
}

std::uint64_t conv_first_word(const conv2d_shape& s, const accumulation& a, std::size_t sample, std::size_t c,
                              std::size_t oy, std::size_t ox) noexcept {
  const std::uint64_t row = (static_cast<std::uint64_t>(sample) * s.out_h() + oy) * s.out_w() + ox;
  return (row * s.c_out + c) * words_per_dot(s.patch(), a);
}

// ---------------------------------------------------------------------------
// prepared_conv2d

struct prepared_conv2d::impl {
  conv2d_shape shape;
  layer_spec spec;
  std::vector<double> W, b;
  // one dense pass per format of a per-(channel, pixel) map, else one pass
  std::vector<prepared_dense> passes;
  std::vector<std::uint8_t> pass_of;  // per (channel, pixel): which pass; empty: pass 0 everywhere
};

prepared_conv2d::prepared_conv2d(const conv2d_shape& shape, std::span<const double> W, std::span<const double> b,
                                 const layer_spec& spec_in)
    : p_(std::make_shared<impl>()) {
  const layer_spec spec = spec_in.resolved();
  shape.validate();
  impl& P = *p_;
  P.shape = shape;
  P.spec = spec;
  if (W.size() != shape.weights())
    throw std::invalid_argument("conv2d: " + std::to_string(W.size()) +
                                " weights, the shape needs c_out*c_in*kh*kw = " + std::to_string(shape.weights()));
  if (b.size() != shape.c_out)
    throw std::invalid_argument("conv2d: bias of " + std::to_string(b.size()) + " values for " +
                                std::to_string(shape.c_out) + " output channels");
  const std::size_t ohw = shape.out_h() * shape.out_w();
  const std::size_t nidx = spec.acc.index.size();
  if (nidx != 0 && nidx != shape.c_out && nidx != shape.c_out * ohw)
    throw std::invalid_argument("conv2d: the precision map has " + std::to_string(nidx) +
                                " entries; it needs 0, c_out = " + std::to_string(shape.c_out) +
                                " or c_out*oh*ow = " + std::to_string(shape.c_out * ohw));
  for (auto i : spec.acc.index)
    if (i >= spec.acc.formats.size()) throw std::invalid_argument("conv2d: precision map index out of range");
  P.W.assign(W.begin(), W.end());
  P.b.assign(b.begin(), b.end());
  const matrix_view Wm{P.W.data(), shape.c_out, shape.patch()};
  // (when c_out == c_out * oh * ow, i.e. a 1x1 output, both readings agree)
  if (nidx == shape.c_out * ohw && ohw > 1) {
    P.pass_of.assign(nidx, 0);
    std::vector<int> pass_of_format(spec.acc.formats.size(), -1);
    for (std::size_t k = 0; k < nidx; ++k) {
      const std::uint8_t f = spec.acc.index[k];
      if (pass_of_format[f] < 0) {
        pass_of_format[f] = static_cast<int>(P.passes.size());
        layer_spec one = spec;
        one.acc = precision_map::uniform(spec.acc.formats[f]);
        P.passes.emplace_back(Wm, P.b, one);
      }
      P.pass_of[k] = static_cast<std::uint8_t>(pass_of_format[f]);
    }
  } else {
    P.passes.emplace_back(Wm, P.b, spec);
  }
}

const conv2d_shape& prepared_conv2d::shape() const noexcept { return p_->shape; }
const layer_spec& prepared_conv2d::spec() const noexcept { return p_->spec; }
dense_kernel prepared_conv2d::kernel() const noexcept { return dense_kernel_for(p_->passes.front().spec()); }

layer_flags prepared_conv2d::run(const double* X, std::size_t batch, std::vector<double>& Y, int threads,
                                 std::vector<unsigned>* out_flags, std::size_t first_sample,
                                 std::size_t rows_per_piece) const {
  const impl& P = *p_;
  const conv2d_shape& s = P.shape;
  const std::size_t ohw = s.out_h() * s.out_w(), K = s.patch(), C = s.c_out;
  Y.assign(batch * C * ohw, 0.0);
  // per-output flags are needed to select among passes, or when asked for
  const bool keep_flags = out_flags || !P.pass_of.empty();
  std::vector<unsigned> flags(keep_flags ? Y.size() : 0, 0);
  layer_flags lf;
  if (rows_per_piece == 0) rows_per_piece = default_piece_rows;
  const std::size_t samples_per_piece = std::max<std::size_t>(1, rows_per_piece / ohw);
  const std::size_t pieces = (batch + samples_per_piece - 1) / samples_per_piece;
  const int nt = thread_count(threads);
  const bool select = !P.pass_of.empty();
  struct buffers {
    std::vector<double> cols, Yp;
    std::vector<unsigned> Fp;
    layer_flags lf;
  };
  // one piece: lowered, run through each pass, its outputs put in place (NHWC
  // rows -> NCHW, keeping the outputs whose component uses that pass)
  auto piece = [&](std::size_t k, int inner, buffers& B) {
    const std::size_t s0 = k * samples_per_piece, ns = std::min(samples_per_piece, batch - s0), rows = ns * ohw;
    B.cols.resize(rows * K);
    im2col_rows(s, X, s0 * ohw, rows, B.cols.data(), inner);
    for (std::size_t pass = 0; pass < P.passes.size(); ++pass) {
      // the exactness proof summarizes each sample's image, not its oh*ow patches
      const layer_flags pf =
          P.passes[pass].run({B.cols.data(), rows, K}, B.Yp, inner, keep_flags ? &B.Fp : nullptr,
                             (first_sample + s0) * ohw, {X + s0 * s.in_size(), ns, s.in_size()}, ohw);
      if (!keep_flags) {
        B.lf.outputs += pf.outputs;
        B.lf.inexact += pf.inexact;
        B.lf.underflow += pf.underflow;
        B.lf.overflow += pf.overflow;
        B.lf.invalid += pf.invalid;
        B.lf.saturated += pf.saturated;
      }
      const auto nrows = static_cast<std::ptrdiff_t>(rows);
#pragma omp parallel for num_threads(inner) schedule(static) if (inner > 1 && rows * C >= parallel_min)
      for (std::ptrdiff_t t = 0; t < nrows; ++t) {
        const std::size_t r = static_cast<std::size_t>(t), smp = s0 + r / ohw, pix = r % ohw;
        for (std::size_t c = 0; c < C; ++c) {
          if (select && P.pass_of[c * ohw + pix] != pass) continue;
          const std::size_t o = (smp * C + c) * ohw + pix;
          Y[o] = B.Yp[r * C + c];
          if (keep_flags) flags[o] = B.Fp[r * C + c];
        }
      }
    }
  };
  auto merge = [&](const layer_flags& f) {
    lf.outputs += f.outputs;
    lf.inexact += f.inexact;
    lf.underflow += f.underflow;
    lf.overflow += f.overflow;
    lf.invalid += f.invalid;
    lf.saturated += f.saturated;
  };
  if (nt > 1 && pieces >= static_cast<std::size_t>(nt)) {
    // whole pieces per thread: one parallel region, no barrier inside a piece
    const auto np = static_cast<std::ptrdiff_t>(pieces);
#pragma omp parallel num_threads(nt)
    {
      buffers B;
#pragma omp for schedule(dynamic)
      for (std::ptrdiff_t k = 0; k < np; ++k) piece(static_cast<std::size_t>(k), 1, B);
#pragma omp critical(mpacc_conv_flags)
      merge(B.lf);
    }
  } else {
    buffers B;
    for (std::size_t k = 0; k < pieces; ++k) piece(k, nt, B);
    merge(B.lf);
  }
  if (keep_flags)
    for (unsigned f : flags) lf.add(f);
  if (out_flags) *out_flags = std::move(flags);
  return lf;
}

layer_flags conv2d(const conv2d_shape& shape, const double* X, std::size_t batch, std::span<const double> W,
                   std::span<const double> b, const layer_spec& spec, std::vector<double>& Y, int threads) {
  return prepared_conv2d(shape, W, b, spec).run(X, batch, Y, threads);
}

// ---------------------------------------------------------------------------
// pooling

void max_pool2d(const pool2d_shape& s, const double* X, std::size_t batch, std::vector<double>& Y,
                std::vector<std::uint32_t>* where) {
  s.validate();
  const std::size_t oh = s.out_h(), ow = s.out_w(), in = s.in_size();
  Y.assign(batch * s.out_size(), 0.0);
  if (where) where->assign(Y.size(), 0);
  const auto n = static_cast<std::ptrdiff_t>(batch * s.c);
  const auto H = static_cast<std::ptrdiff_t>(s.h), Wd = static_cast<std::ptrdiff_t>(s.w);
#pragma omp parallel for schedule(static) if (Y.size() * s.window() >= parallel_min)
  for (std::ptrdiff_t t = 0; t < n; ++t) {
    const std::size_t smp = static_cast<std::size_t>(t) / s.c, c = static_cast<std::size_t>(t) % s.c;
    const double* plane = X + smp * in + c * s.h * s.w;
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
        const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
        double best = 0;
        std::ptrdiff_t at = -1;
        for (std::ptrdiff_t ky = 0; ky < static_cast<std::ptrdiff_t>(s.kh); ++ky) {
          const std::ptrdiff_t iy = y0 + ky;
          if (iy < 0 || iy >= H) continue;
          for (std::ptrdiff_t kx = 0; kx < static_cast<std::ptrdiff_t>(s.kw); ++kx) {
            const std::ptrdiff_t ix = x0 + kx;
            if (ix < 0 || ix >= Wd) continue;
            const double v = plane[iy * Wd + ix];
            bool take = at < 0;
            if (!take && !std::isnan(best)) {
              take = std::isnan(v) || v > best || (v == 0 && best == 0 && std::signbit(best) && !std::signbit(v));
            }
            if (take) {
              best = v;
              at = iy * Wd + ix;
            }
          }
        }
        const std::size_t o = (smp * s.c + c) * oh * ow + oy * ow + ox;
        Y[o] = best;
        if (where) (*where)[o] = static_cast<std::uint32_t>(c * s.h * s.w + static_cast<std::size_t>(at));
      }
  }
}

double round_quotient(double x, std::uint64_t k, const format& f, rounding mode, bool saturate, unsigned& flags,
                      std::uint64_t random_word) noexcept {
  if (k <= 1 || !std::isfinite(x) || x == 0) return round(x, f, mode, saturate, flags, random_word);
  const double kd = static_cast<double>(k);  // exact: k < 2^53
  // Quotients of tiny values are formed 2^200 higher, where q and the
  // remainder are normal binary64 values, and rounded on the grid 2^200 higher
  // (the same rounding, scaled exactly; nothing that small can overflow).
  const bool scaled = std::fabs(x) < 0x1p-900;
  const double xs = scaled ? x * 0x1p+200 : x;
  double q = xs / kd;
  const double r = std::fma(-q, kd, xs);  // the remainder xs - q k, exact
  if (r != 0) {
    // q = RN(xs / k) is inexact: truncate toward zero, then set the last bit
    // (round to odd at 53 bits, which any rounding to p <= 51 bits inherits)
    if ((r < 0) != (q < 0)) q = std::nextafter(q, 0.0);
    q = std::bit_cast<double>(std::bit_cast<std::uint64_t>(q) | 1u);
  }
  if (!scaled) return round(q, f, mode, saturate, flags, random_word);
  format g = f;
  g.emin = f.emin + 200;
  g.emax = std::max(g.emin, std::min(f.emax + 200, 1000));
  g.max_finite = format::default_max(g.p, g.emax);
  return round(q, g, mode, saturate, flags, random_word) * 0x1p-200;
}

layer_flags avg_pool2d(const pool2d_shape& s, const double* X, std::size_t batch, const accumulation& a,
                       std::vector<double>& Y, int threads, std::vector<unsigned>* out_flags,
                       std::size_t first_sample) {
  s.validate();
  if (!fast_path_applies(a)) throw std::invalid_argument("avg_pool2d: the accumulation model is outside the fast path");
  const std::size_t oh = s.out_h(), ow = s.out_w(), in = s.in_size(), k = s.window(), per = s.out_size();
  const std::uint64_t words = words_per_dot(k, a) + 1;
  Y.assign(batch * per, 0.0);
  std::vector<unsigned> flags(Y.size(), 0);
  const auto n = static_cast<std::ptrdiff_t>(Y.size());
  const auto H = static_cast<std::ptrdiff_t>(s.h), Wd = static_cast<std::ptrdiff_t>(s.w);
#pragma omp parallel num_threads(thread_count(threads)) if (Y.size() * k >= parallel_min / 8)
  {
    std::vector<double> win(k), ones(k, 1.0);
#pragma omp for schedule(static)
    for (std::ptrdiff_t t = 0; t < n; ++t) {
      const std::size_t o = static_cast<std::size_t>(t);
      const std::size_t smp = o / per, c = (o % per) / (oh * ow), pix = o % (oh * ow);
      const double* plane = X + smp * in + c * s.h * s.w;
      const auto y0 = static_cast<std::ptrdiff_t>((pix / ow) * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
      const auto x0 = static_cast<std::ptrdiff_t>((pix % ow) * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
      std::size_t j = 0;
      for (std::ptrdiff_t ky = 0; ky < static_cast<std::ptrdiff_t>(s.kh); ++ky)
        for (std::ptrdiff_t kx = 0; kx < static_cast<std::ptrdiff_t>(s.kw); ++kx, ++j) {
          const std::ptrdiff_t iy = y0 + ky, ix = x0 + kx;
          win[j] = iy < 0 || iy >= H || ix < 0 || ix >= Wd ? 0.0 : plane[iy * Wd + ix];
        }
      const std::uint64_t first = (static_cast<std::uint64_t>(first_sample) * per + o) * words;
      const dot_result sum = dot(ones, win, 0.0, a, first);
      unsigned f = sum.flags;
      const std::uint64_t word = a.mode == rounding::stochastic ? random_bits(a.seed, first + words - 1) : 0;
      double v;
      if (a.via) {
        // like every accumulator rounding: to `via` in nearest-even, then to acc
        const double t1 = round_quotient(sum.value, k, *a.via, rounding::nearest_even, false, f, 0);
        v = round(t1, a.acc, a.mode, a.saturate, f, word);
      } else {
        v = round_quotient(sum.value, k, a.acc, a.mode, a.saturate, f, word);
      }
      Y[o] = v;
      flags[o] = f;
    }
  }
  layer_flags lf;
  for (unsigned f : flags) lf.add(f);
  if (out_flags) *out_flags = std::move(flags);
  return lf;
}

}  // namespace mpacc::sim
