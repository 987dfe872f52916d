// SPDX-License-Identifier: MIT
#include "mpacc/sim/accumulate.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace mpacc::sim {

order parse_order(std::string_view text) {
  if (text == "recursive") return {order::kind::recursive, 8};
  if (text == "pairwise") return {order::kind::pairwise, 8};
  if (text.starts_with("blocked:")) {
    const std::string_view b = text.substr(8);
    int v = 0;
    auto [ptr, ec] = std::from_chars(b.data(), b.data() + b.size(), v);
    if (ec == std::errc() && ptr == b.data() + b.size() && v >= 1) return {order::kind::blocked, v};
    throw std::invalid_argument("order '" + std::string(text) + "': the block size must be an integer >= 1");
  }
  throw std::invalid_argument("unknown order '" + std::string(text) + "' (orders: recursive, pairwise, blocked:B)");
}

std::string to_string(const order& o) {
  switch (o.type) {
    case order::kind::recursive:
      return "recursive";
    case order::kind::pairwise:
      return "pairwise";
    case order::kind::blocked:
      return "blocked:" + std::to_string(o.block);
  }
  return "?";
}

namespace {

bool format_ok(const format& f) noexcept { return f.p <= 51 && (f.subnormals ? f.emin - f.p + 1 : f.emin) >= -1072; }

// Error-free transformations (Knuth's TwoSum; FMA-based TwoProd).
inline void two_sum(double a, double b, double& s, double& e) noexcept {
  s = a + b;
  const double bb = s - a;
  e = (a - (s - bb)) + (b - bb);
}

// X = v + r with r strictly inside the gap between v and its binary64
// neighbour in the direction of sign(r) (r given by its sign only, 0 if X = v):
// returns X rounded to odd at 53 bits. Rounding that to any format of at most
// 51 bits gives the correct rounding of X (round-to-odd property).
inline double to_odd(double v, double r) noexcept {
  if (r == 0 || v == 0) return v;
  const double inf = std::numeric_limits<double>::infinity();
  double rz = ((r > 0) == (v > 0)) ? v : std::nextafter(v, 0.0);
  if ((std::bit_cast<std::uint64_t>(rz) & 1) == 0) rz = std::nextafter(rz, std::copysign(inf, v));
  return rz;
}

// RO53(a + b), exact inputs.
inline double sum2_odd(double a, double b) noexcept {
  double s, e;
  two_sum(a, b, s, e);
  if (!std::isfinite(s)) return s;
  return to_odd(s, e);
}

// RO53(s + ph + pl) where ph + pl = w x exactly (|pl| <= ulp(ph)/2).
// (t, e) = TwoSum(s, ph); (u, f) = TwoSum(e, pl); (v, g) = TwoSum(t, u):
// X = v + g + f exactly; when g != 0, |f| <= ulp(u)/2 < |g| (g is a non-zero
// multiple of ulp(u)), so sign(g + f) = sign(g), and |g + f| stays inside the
// gap next to v (docs/design.md, "Exact accumulation").
inline double sum3_odd(double s, double ph, double pl) noexcept {
  double t, e, u, f, v, g;
  two_sum(s, ph, t, e);
  if (!std::isfinite(t)) return t;
  two_sum(e, pl, u, f);
  two_sum(t, u, v, g);
  if (v == 0) {
    // t = -u exactly, so X = f. An exact zero gets IEEE 754's round-to-nearest
    // sign: -0 only when both operands are -0.
    if (f != 0) return f;
    return (s == 0 && ph == 0 && pl == 0 && std::signbit(s) && std::signbit(ph)) ? -0.0 : 0.0;
  }
  return to_odd(v, g != 0 ? g : f);
}

// TwoProd is exact unless the product underflows (its low part would fall
// below 2^-1074) or overflows.
inline bool product_in_exact_range(double ph, double w, double x) noexcept {
  const double a = std::fabs(ph);
  if (a == 0) return w == 0 || x == 0;
  return !std::isfinite(a) || (a >= 0x1p-960 && a <= 0x1p+1000);
}

struct stepper {
  const accumulation& a;
  std::uint64_t counter;
  unsigned flags = 0;
  bool exact = true;

  std::uint64_t word() noexcept { return a.mode == rounding::stochastic ? random_bits(a.seed, counter++) : 0; }
  double round_acc(double ro) noexcept {
    const std::uint64_t w = word();
    // ro is the exact value rounded to odd at 53 bits: rounding it to `via`
    // (p <= 51) is the correct rounding of the exact value, and the result is
    // exact in binary64
    if (a.via) ro = round(ro, *a.via, rounding::nearest_even, false, flags, 0);
    return round(ro, a.acc, a.mode, a.saturate, flags, w);
  }

  // The term p_j as it enters the sum: either the exact product (hi, lo) or
  // the product rounded to the product format (lo = 0).
  void term(double w, double x, double& hi, double& lo) noexcept {
    hi = w * x;
    if (!product_in_exact_range(hi, w, x)) exact = false;
    lo = std::isfinite(hi) ? std::fma(w, x, -hi) : 0.0;
    if (a.product) {
      hi = round(std::isfinite(hi) ? to_odd(hi, lo) : hi, *a.product, a.mode, a.saturate, flags, word());
      lo = 0;
    }
  }
  // round(p_j)
  double first(double w, double x) noexcept {
    double hi, lo;
    term(w, x, hi, lo);
    // hi = RN(w x) keeps the product's sign (also for -0), lo = w x - hi
    return round_acc(std::isfinite(hi) ? to_odd(hi, lo) : hi);
  }
  // round(s + p_j)
  double add_term(double s, double w, double x) noexcept {
    double hi, lo;
    term(w, x, hi, lo);
    if (!std::isfinite(s) || !std::isfinite(hi)) return round_acc(s + hi);
    return round_acc(sum3_odd(s, hi, lo));
  }
  // round(s + t) for two accumulator values
  double add(double s, double t) noexcept {
    if (!std::isfinite(s) || !std::isfinite(t)) return round_acc(s + t);
    return round_acc(sum2_odd(s, t));
  }

  double recursive(const double* w, const double* x, std::size_t n) noexcept {
    double s = first(w[0], x[0]);
    for (std::size_t j = 1; j < n; ++j) s = add_term(s, w[j], x[j]);
    return s;
  }
  double pairwise(const double* w, const double* x, std::size_t n) noexcept {
    if (n == 1) return first(w[0], x[0]);
    const std::size_t m = n / 2;
    const double left = pairwise(w, x, m);
    const double right = pairwise(w + m, x + m, n - m);
    return add(left, right);
  }
};

}  // namespace

bool fast_path_applies(const accumulation& a) noexcept {
  return format_ok(a.acc) && (!a.product || format_ok(*a.product)) && (!a.via || format_ok(*a.via));
}

dot_result dot(std::span<const double> w, std::span<const double> x, double bias, const accumulation& a,
               std::uint64_t first_random) {
  if (w.size() != x.size())
    throw std::invalid_argument("dot: " + std::to_string(w.size()) + " weights but " + std::to_string(x.size()) +
                                " inputs");
  if (!fast_path_applies(a))
    throw std::invalid_argument("dot: accumulator or product format " + to_string(a.acc) +
                                " is outside the fast exact path (p <= 51, emin-p+1 >= -1072); "
                                "use ref::dot_mpfr");
  stepper st{a, first_random};
  const std::size_t n = w.size();
  double s = 0;
  bool have_sum = n > 0;
  if (n > 0) {
    switch (a.ord.type) {
      case order::kind::recursive:
        s = st.recursive(w.data(), x.data(), n);
        break;
      case order::kind::pairwise:
        s = st.pairwise(w.data(), x.data(), n);
        break;
      case order::kind::blocked: {
        const auto B = static_cast<std::size_t>(a.ord.block);
        for (std::size_t start = 0; start < n; start += B) {
          const double t = st.recursive(w.data() + start, x.data() + start, std::min(B, n - start));
          s = start == 0 ? t : st.add(s, t);
        }
        break;
      }
    }
  }
  // bias last: v = round(s + b); with no terms, v = round(b)
  const double v = have_sum ? st.add(s, bias) : st.round_acc(bias);
  return {v, st.flags, st.exact};
}

std::vector<int> rounding_counts(std::size_t n, const order& o) {
  std::vector<int> k(n, 0);
  switch (o.type) {
    case order::kind::recursive:
      // s_1 = round(p_1), s_k = round(s_{k-1} + p_k): p_1 goes through n roundings, p_k (k >= 2) through n - k + 1
      for (std::size_t j = 0; j < n; ++j) k[j] = static_cast<int>(n - (j == 0 ? 0 : j));
      break;
    case order::kind::blocked: {
      const auto B = static_cast<std::size_t>(o.block);
      const std::size_t blocks = (n + B - 1) / B;
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t b = j / B, start = b * B, len = std::min(B, n - start), i = j - start;
        const int inner = static_cast<int>(len - (i == 0 ? 0 : i));
        const int outer = static_cast<int>(blocks - (b == 0 ? 1 : b));
        k[j] = inner + outer;
      }
      break;
    }
    case order::kind::pairwise: {
      // depth of each leaf in the recursion tree, plus its own rounding
      struct rec {
        static void go(std::vector<int>& k, std::size_t lo, std::size_t n, int depth) {
          if (n == 1) {
            k[lo] = depth + 1;
            return;
          }
          const std::size_t m = n / 2;
          go(k, lo, m, depth + 1);
          go(k, lo + m, n - m, depth + 1);
        }
      };
      if (n > 0) rec::go(k, 0, n, 0);
      break;
    }
  }
  for (auto& c : k) ++c;  // the bias rounding round(s + b)
  return k;
}

}  // namespace mpacc::sim
