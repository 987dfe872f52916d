// SPDX-License-Identifier: MIT
// Counter-based random bits for stochastic rounding.
#pragma once

#include <cstdint>

namespace mpacc::sim {

// The i-th output of the SplitMix64 sequence started at `seed`: a pure function
// of (seed, i), so element i of an array gets the same bits whatever the number
// of threads or the order of evaluation. SplitMix64 (Steele, Lea, Flood 2014)
// passes BigCrush; its output function is a bijection of the 64-bit state.
[[nodiscard]] constexpr std::uint64_t random_bits(std::uint64_t seed, std::uint64_t i) noexcept {
  std::uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A reproducible stream of random words: the same seed gives the same stream.
class random_stream {
 public:
  explicit constexpr random_stream(std::uint64_t seed = 0, std::uint64_t counter = 0) noexcept
      : seed_(seed), counter_(counter) {}
  constexpr std::uint64_t operator()() noexcept { return random_bits(seed_, counter_++); }
  [[nodiscard]] constexpr std::uint64_t seed() const noexcept { return seed_; }
  [[nodiscard]] constexpr std::uint64_t counter() const noexcept { return counter_; }
  // Uniform double in [0, 1) from the top 53 bits.
  double uniform() noexcept { return static_cast<double>((*this)() >> 11) * 0x1p-53; }

 private:
  std::uint64_t seed_;
  std::uint64_t counter_;
};

}  // namespace mpacc::sim
