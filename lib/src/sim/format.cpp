// SPDX-License-Identifier: MIT
#include "mpacc/sim/format.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mpacc::sim {

int format::bit_width() const noexcept {
  // sign + exponent field wide enough for emin..emax plus the reserved codes + fraction
  const long span = static_cast<long>(emax) - emin + 2;  // codes for exponents and 0/subnormal
  int ebits = 0;
  while ((1L << ebits) < span + (has_inf ? 1 : 0)) ++ebits;
  return 1 + ebits + (p - 1);
}

const std::vector<named_format>& named_formats() {
  static const std::vector<named_format> table = {
      {"binary64", formats::binary64, "IEEE 754 double"},
      {"binary32", formats::binary32, "IEEE 754 single"},
      {"tf32", formats::tf32, "NVIDIA TensorFloat-32"},
      {"binary16", formats::binary16, "IEEE 754 half"},
      {"bfloat16", formats::bfloat16, "brain float"},
      {"e5m2", formats::e5m2, "OCP FP8 E5M2"},
      {"e4m3", formats::e4m3, "OCP FP8 E4M3FN (top code is NaN)"},
      {"e4m3-ieee", formats::e4m3_ieee, "IEEE-like E4M3 (paper's companion code)"},
      {"e3m2", formats::e3m2, "OCP MX FP6"},
      {"e2m3", formats::e2m3, "OCP MX FP6"},
      {"e2m1", formats::e2m1, "OCP MX FP4"},
  };
  return table;
}

namespace {

bool is_value_of(const format& f, double v) {
  // v > 0 finite: is it m * 2^(e-p+1) with e in [emin, emax] (or subnormal)?
  if (!(v > 0) || !std::isfinite(v)) return false;
  int e = std::ilogb(v);
  if (e > f.emax) return false;
  if (e < f.emin && !f.subnormals) return false;
  const int q = (e > f.emin ? e : f.emin) - (f.p - 1);
  const double m = std::ldexp(v, -q);
  return m == std::floor(m);
}

}  // namespace

std::string validate(const format& f) {
  if (f.p < 1 || f.p > 53) return "p=" + std::to_string(f.p) + " is out of range: p must be in [1, 53]";
  if (f.emin < -1022 || f.emin > 1022)
    return "emin=" + std::to_string(f.emin) + " is out of range: emin must be in [-1022, 1022]";
  if (f.emax < -1021 || f.emax > 1023)
    return "emax=" + std::to_string(f.emax) + " is out of range: emax must be in [-1021, 1023]";
  if (f.emin >= f.emax)
    return "emin=" + std::to_string(f.emin) + " must be smaller than emax=" + std::to_string(f.emax);
  if (f.subnormals && f.emin - (f.p - 1) < -1074)
    return "emin-p+1=" + std::to_string(f.emin - f.p + 1) +
           " is out of range: subnormals below 2^-1074 are not representable in binary64";
  if (!is_value_of(f, f.max_finite) || f.max_finite < std::ldexp(1.0, f.emin)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", f.max_finite);
    return std::string("max=") + buf + " is not a normal value of the format (p=" + std::to_string(f.p) +
           ", emin=" + std::to_string(f.emin) + ", emax=" + std::to_string(f.emax) + ")";
  }
  return {};
}

namespace {

int parse_int_field(std::string_view key, std::string_view value, std::string_view text) {
  int v = 0;
  const char* first = value.data();
  const char* last = value.data() + value.size();
  if (!value.empty() && *first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || first == last)
    throw std::invalid_argument("format '" + std::string(text) + "': " + std::string(key) + "='" + std::string(value) +
                                "' is not an integer");
  return v;
}

bool parse_on_off(std::string_view key, std::string_view value, std::string_view text) {
  if (value == "on" || value == "true" || value == "1") return true;
  if (value == "off" || value == "false" || value == "0") return false;
  throw std::invalid_argument("format '" + std::string(text) + "': " + std::string(key) + "='" + std::string(value) +
                              "' must be on or off");
}

}  // namespace

format parse_format(std::string_view text) {
  for (const auto& nf : named_formats())
    if (nf.name == text) return nf.fmt;
  static const std::pair<std::string_view, std::string_view> aliases[] = {
      {"fp64", "binary64"}, {"double", "binary64"}, {"fp32", "binary32"}, {"float", "binary32"},
      {"fp16", "binary16"}, {"half", "binary16"},   {"bf16", "bfloat16"}, {"e4m3fn", "e4m3"}};
  for (const auto& [alias, name] : aliases)
    if (alias == text) return parse_format(name);

  if (text.find('=') == std::string_view::npos) {
    std::string known;
    for (const auto& nf : named_formats()) known += (known.empty() ? "" : ", ") + std::string(nf.name);
    throw std::invalid_argument("unknown format '" + std::string(text) + "' (named formats: " + known +
                                "; or p=P,emin=E,emax=E[,subnormals=off][,inf=off][,max=X])");
  }
  format f{};
  bool have_p = false, have_emin = false, have_emax = false, have_max = false;
  double max_value = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      throw std::invalid_argument("format '" + std::string(text) + "': '" + std::string(item) +
                                  "' is not of the form key=value");
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "p") {
      f.p = parse_int_field(key, value, text);
      have_p = true;
    } else if (key == "emin") {
      f.emin = parse_int_field(key, value, text);
      have_emin = true;
    } else if (key == "emax") {
      f.emax = parse_int_field(key, value, text);
      have_emax = true;
    } else if (key == "subnormals") {
      f.subnormals = parse_on_off(key, value, text);
    } else if (key == "inf") {
      f.has_inf = parse_on_off(key, value, text);
    } else if (key == "max") {
      std::string v(value);
      char* end = nullptr;
      max_value = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size())
        throw std::invalid_argument("format '" + std::string(text) + "': max='" + v + "' is not a number");
      have_max = true;
    } else {
      throw std::invalid_argument("format '" + std::string(text) + "': unknown field '" + std::string(key) +
                                  "' (fields: p, emin, emax, subnormals, inf, max)");
    }
  }
  if (!have_p || !have_emin || !have_emax)
    throw std::invalid_argument("format '" + std::string(text) + "': missing field " +
                                (!have_p      ? "p"
                                 : !have_emin ? "emin"
                                              : "emax") +
                                " (p, emin and emax are required)");
  f.max_finite = have_max ? max_value : format::default_max(f.p, f.emax);
  if (auto msg = validate(f); !msg.empty()) throw std::invalid_argument("format '" + std::string(text) + "': " + msg);
  return f;
}

std::string to_string(const format& f) {
  for (const auto& nf : named_formats())
    if (nf.fmt == f) return std::string(nf.name);
  std::string s = "p=" + std::to_string(f.p) + ",emin=" + std::to_string(f.emin) + ",emax=" + std::to_string(f.emax);
  if (!f.subnormals) s += ",subnormals=off";
  if (!f.has_inf) s += ",inf=off";
  if (f.max_finite != format::default_max(f.p, f.emax)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", f.max_finite);
    s += ",max=";
    s += buf;
  }
  return s;
}

}  // namespace mpacc::sim
