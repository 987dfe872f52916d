#include "mpacc/analysis/plot.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <gnuplot-iostream.h>
#include <stdexcept>
#include <unistd.h>

namespace mpacc::analysis {

namespace fs = std::filesystem;

// shortest round-trip decimal (std::to_chars), "inf"/"nan" spelled out
void put_number(std::string& s, double v) {
  if (std::isnan(v)) {
    s += "nan";
    return;
  }
  if (std::isinf(v)) {
    s += v > 0 ? "inf" : "-inf";
    return;
  }
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, p);
}

// writes `text` to `file` through a temporary file renamed into place
void write_atomic(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot create");
    out << text;
    out.flush();
    if (!out) {
      fs::remove(tmp);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  fs::rename(tmp, file);
}

// runs a gnuplot script through gnuplot-iostream; the script writes
// <png>.tmp, renamed into place once gnuplot has finished
void draw_plot(const fs::path& dir, const std::string& name, const std::string& script_body) {
  const std::string script = "# redraw with: cd " + dir.string() + " && gnuplot " + name + ".gp\n" +
                             "set terminal pngcairo size 1000,700 noenhanced\nset output '" + name + ".png'\n" +
                             script_body;
  write_atomic(dir / (name + ".gp"), script);
  {
    Gnuplot gp("cd '" + dir.string() + "' && gnuplot 2>/dev/null");
    gp << "set terminal pngcairo size 1000,700 noenhanced\nset output '" << name << ".png.tmp'\n";
    gp << script_body << "\nset output\n";
  }  // the destructor closes the pipe and waits for gnuplot
  std::error_code ec;
  fs::rename(dir / (name + ".png.tmp"), dir / (name + ".png"), ec);
  if (ec) throw std::runtime_error((dir / (name + ".png")).string() + ": gnuplot did not draw it");
}


}  // namespace mpacc::analysis
