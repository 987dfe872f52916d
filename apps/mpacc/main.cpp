// SPDX-License-Identifier: MIT
// mpacc: command-line front end. Thin: parses arguments and calls the library.
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <optional>
#include <stdexcept>

#include "commands.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/sim/text.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

bool parse_switch(std::string_view option, std::string_view value) {
  if (value == "on" || value == "true" || value == "1") return true;
  if (value == "off" || value == "false" || value == "0") return false;
  throw usage_error(std::string(option) + ": '" + std::string(value) + "' must be on or off");
}

std::string printable(std::string_view token) { return sim::printable(token, 200); }

std::optional<nn::precision_config> precision_from_options(const std::string& compact, const std::string& file,
                                                           const std::vector<CLI::Option*>& single,
                                                           const std::string& single_names) {
  if (compact.empty() && file.empty()) return std::nullopt;
  if (!compact.empty() && !file.empty()) throw usage_error("--precision and --precision-file exclude each other");
  for (const auto* opt : single)
    if (opt->count() > 0)
      throw usage_error("--precision/--precision-file replace " + single_names + ": give one or the other");
  if (!compact.empty()) return option_value("--precision", [&] { return nn::parse_precision(compact); });
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file + ": cannot open");
  std::string text;
  constexpr std::size_t cap = std::size_t{1} << 26;
  text.resize(cap + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > cap) throw std::runtime_error(file + ": larger than 64 MiB, not a precision configuration");
  try {
    return nn::parse_precision_json(text);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(file + ": " + e.what());
  }
}

std::string hex(double v) {
  if (v != v) return "nan";
  if (v == __builtin_inf()) return "inf";
  if (v == -__builtin_inf()) return "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

nn::cnn npz_cnn(const std::string& model, const std::string& npz_arch, sim::activation_fn act) {
  if (npz_arch != "lenet5")
    throw usage_error("--npz-arch: '" + printable(npz_arch) + "' is not an architecture (lenet5, vit:HEADS[:EPS])");
  if (std::filesystem::path(model).extension() != ".npz")
    throw usage_error("--npz-arch: the model must be an .npz file, not '" + printable(model) + "'");
  return io::import_npz_cnn(model, nn::make_lenet5(act));
}

// --- vit .npz import (issue 15) ---
std::optional<nn::vit> npz_vit(const std::string& model, const std::string& npz_arch) {
  if (!npz_arch.starts_with("vit")) return std::nullopt;
  // vit:HEADS or vit:HEADS:EPS
  const std::string bad = "--npz-arch: '" + printable(npz_arch) + "' is not vit:HEADS[:EPS] (e.g. vit:4, vit:4:1e-5)";
  if (npz_arch.size() < 5 || npz_arch[3] != ':') throw usage_error(bad);
  const std::string rest = npz_arch.substr(4);
  const std::size_t colon = rest.find(':');
  const std::string h = rest.substr(0, colon), e = colon == std::string::npos ? "" : rest.substr(colon + 1);
  std::size_t heads = 0;
  double eps = 1e-6;
  try {
    std::size_t pos = 0;
    if (h.empty() || h[0] < '0' || h[0] > '9') throw std::invalid_argument("heads");
    heads = std::stoul(h, &pos);
    if (pos != h.size() || heads == 0) throw std::invalid_argument("heads");
    if (colon != std::string::npos) {
      eps = std::stod(e, &pos);
      if (pos != e.size() || !(eps > 0) || !std::isfinite(eps)) throw std::invalid_argument("eps");
    }
  } catch (const std::exception&) {
    throw usage_error(bad);
  }
  if (std::filesystem::path(model).extension() != ".npz")
    throw usage_error("--npz-arch: the model must be an .npz file, not '" + printable(model) + "'");
  return io::import_npz_vit(model, heads, eps);
}

// The command line, parsed and run; main() adds the last safety net.
int run_main(int argc, char** argv) {
  CLI::App app{
      "mpacc: floating-point error analysis of neural-network inference\n"
      "Exit status: 0 success; 2 bad usage (an option or a value on the command line); 3 a\n"
      "deterministic bound was violated (validate: a bug); 4 components not covered by the analysis\n"
      "(validate: overflow, saturation, NaN); 5 bad input data (a file, data set, model,\n"
      "configuration or shard that cannot be used); 70 internal error."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mpacc " MPACC_VERSION);
  std::map<CLI::App*, command> commands;
  auto add = [&](command (*registrar)(CLI::App&)) {
    const std::size_t before = app.get_subcommands({}).size();
    command c = registrar(app);
    commands[app.get_subcommands({})[before]] = std::move(c);
  };
  add(add_formats_command);
  add(add_round_command);
  add(add_dot_command);
  add(add_train_command);
  add(add_eval_command);
  add(add_validate_command);
  add(add_calibrate_command);
  add(add_sweep_command);
  add(add_cnn_sweep_command);
  add(add_vit_sweep_command);
  add(add_merge_command);
  add(add_reproduce_command);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "mpacc: %s (see mpacc --help)\n", e.what());
    return exit_usage;
  }
  // exit statuses (mpacc --help): 2 usage, 3 and 4 validate's findings, 5 bad
  // input data, 70 an internal error (a bug: please report it)
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const usage_error& e) {
    std::fprintf(stderr, "mpacc: %s\n", e.what());
    return exit_usage;
  } catch (const std::runtime_error& e) {  // files, data sets, models, configurations, shards, I/O
    std::fprintf(stderr, "mpacc: %s\n", e.what());
    return exit_bad_input;
  } catch (const std::invalid_argument& e) {  // a model or data value the library refuses
    std::fprintf(stderr, "mpacc: %s\n", e.what());
    return exit_bad_input;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mpacc: out of memory\n");
    return exit_bad_input;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpacc: internal error: %s (please report it)\n", e.what());
    return exit_internal;
  }
  return exit_usage;
}

}  // namespace mpacc::app

int main(int argc, char** argv) {
  // run_main reports every error itself; this catches what escapes it (an
  // allocation failure while the command line is being set up)
  try {
    return mpacc::app::run_main(argc, argv);
  } catch (...) {
    std::fputs("mpacc: internal error while setting up the command line (please report it)\n", stderr);
    return mpacc::app::exit_internal;
  }
}
