// SPDX-License-Identifier: MIT
// mpacc: command-line front end. Thin: parses arguments and calls the library.
#include <cstdio>
#include <exception>
#include <map>
#include <new>
#include <stdexcept>

#include "commands.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

bool parse_switch(std::string_view option, std::string_view value) {
  if (value == "on" || value == "true" || value == "1") return true;
  if (value == "off" || value == "false" || value == "0") return false;
  throw usage_error(std::string(option) + ": '" + std::string(value) + "' must be on or off");
}

std::string printable(std::string_view token) {
  std::string r;
  for (char c : token) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", u);
      r += b;
    } else {
      r += c;
    }
  }
  return r;
}

std::string hex(double v) {
  if (v != v) return "nan";
  if (v == __builtin_inf()) return "inf";
  if (v == -__builtin_inf()) return "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

}  // namespace mpacc::app

int main(int argc, char** argv) {
  using namespace mpacc::app;
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
  add(add_sweep_command);
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
