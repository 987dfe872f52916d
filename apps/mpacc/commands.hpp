// SPDX-License-Identifier: MIT
// The subcommands of the mpacc program. Each registers its options on the
// CLI11 app and returns the function to run after parsing.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <vector>
#include <stdexcept>
#include <string>
#include <string_view>

#include "mpacc/nn/cnn.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/vit.hpp"

namespace mpacc::app {

using command = std::function<int()>;

command add_formats_command(CLI::App& app);
command add_round_command(CLI::App& app);
command add_dot_command(CLI::App& app);
command add_train_command(CLI::App& app);
command add_eval_command(CLI::App& app);
command add_validate_command(CLI::App& app);
command add_calibrate_command(CLI::App& app);
command add_sweep_command(CLI::App& app);
command add_cnn_sweep_command(CLI::App& app);
command add_vit_sweep_command(CLI::App& app);
command add_merge_command(CLI::App& app);
command add_reproduce_command(CLI::App& app);

// Exit statuses, documented in `mpacc --help` and the README.
inline constexpr int exit_usage = 2, exit_violation = 3, exit_uncovered = 4, exit_bad_input = 5, exit_internal = 70;

// A user error: main prints "mpacc <what>" on one line and exits 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// parse() with its std::invalid_argument turned into a usage_error that names
// the option: option_value("--format", [&] { return sim::parse_format(text); }).
template <class Parse>
auto option_value(std::string_view option, Parse&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string(option) + ": " + e.what());
  }
}

// "on"/"off" (also true/false, 1/0); throws usage_error naming the option.
bool parse_switch(std::string_view option, std::string_view value);

// `token` for a message: control characters and NUL bytes as \xNN, so that a
// message is one whole line whatever the input held.
std::string printable(std::string_view token);

// The precision of a simulated pass from --precision (compact form) or
// --precision-file (JSON): nullopt when neither is given; usage_error when both
// are, or when one of `single` (the single-choice options they replace, named
// in `single_names`) was given too; a file that cannot be read or parsed is a
// runtime_error naming it.
std::optional<nn::precision_config> precision_from_options(const std::string& compact, const std::string& file,
                                                           const std::vector<CLI::Option*>& single,
                                                           const std::string& single_names);

// C99 hex float of a double as the README's interface prints it: "0x1.8p+3", "nan", "inf", "-inf".
std::string hex(double v);

// --npz-arch: the architecture whose weights an .npz file holds in PyTorch's
// layouts (io::import_npz_cnn); only "lenet5" (nn::make_lenet5 with the
// hidden activation `act`). usage_error for another name or a model file that
// is not .npz.
nn::cnn npz_cnn(const std::string& model, const std::string& npz_arch, sim::activation_fn act);
// --npz-arch vit:HEADS[:EPS]: a vision transformer from timm's state_dict
// names (io::import_npz_vit; EPS the layer norms' epsilon, 1e-6 by default);
// nullopt when npz_arch does not start with "vit".
std::optional<nn::vit> npz_vit(const std::string& model, const std::string& npz_arch);

}  // namespace mpacc::app
