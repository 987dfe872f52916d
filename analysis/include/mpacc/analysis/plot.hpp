// Output helpers shared by the reports: atomic file writes, full-precision
// numbers, and gnuplot figures drawn through gnuplot-iostream.
#pragma once

#include <filesystem>
#include <string>

namespace mpacc::analysis {

// Writes `text` to `file` through a temporary file renamed into place.
void write_atomic(const std::filesystem::path& file, const std::string& text);

// Appends v in shortest round-trip form (std::to_chars); "inf", "-inf", "nan".
void put_number(std::string& s, double v);

// Writes <dir>/<name>.gp (a script that redraws <name>.png from the data files
// beside it) and draws <dir>/<name>.png with gnuplot (pngcairo), through a
// temporary name renamed into place. Throws if gnuplot did not draw it.
void draw_plot(const std::filesystem::path& dir, const std::string& name, const std::string& script_body);

}  // namespace mpacc::analysis
