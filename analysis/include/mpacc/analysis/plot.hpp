// SPDX-License-Identifier: MIT
// Output helpers shared by the reports: atomic file writes, full-precision
// numbers, and gnuplot figures drawn through gnuplot-iostream.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mpacc::analysis {

// Writes `text` to `file` through a temporary file renamed into place.
void write_atomic(const std::filesystem::path& file, const std::string& text);

// Creates `dir` if needed and checks that a file can be written in it, so that
// a long run does not fail at its end; throws std::runtime_error naming it.
void ensure_writable_dir(const std::filesystem::path& dir);

// Appends v in shortest round-trip form (std::to_chars); "inf", "-inf", "nan".
void put_number(std::string& s, double v);

// `text` as a gnuplot string literal that no input can escape from:
// single-quoted (no backquote or backslash substitution), quotes doubled,
// control characters replaced by '?'. Every user-supplied text in a script
// (titles, file names) goes through it.
std::string gnuplot_quote(std::string_view text);

// Whether a gnuplot executable is on the PATH (figures are optional: without
// it, draw_plot writes the .gp script and warns once).
bool gnuplot_available();

// Writes <dir>/<name>.gp (a script that redraws <name>.png and <name>.pdf from
// the data files beside it) and draws both with gnuplot (pngcairo at width x
// height pixels, pdfcairo at width/100 x height/100 inches), each through a
// temporary name renamed into place. Throws, naming the figure and gnuplot's
// message, if gnuplot exits with an error or draws an empty image (the
// temporary images are removed).
void draw_plot(const std::filesystem::path& dir, const std::string& name, const std::string& script_body,
               int width = 1000, int height = 700);

}  // namespace mpacc::analysis
