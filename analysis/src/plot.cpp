// SPDX-License-Identifier: MIT
#include "mpacc/analysis/plot.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <gnuplot-iostream.h>
#include <stdexcept>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <spawn.h>
#include <sys/wait.h>
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

void ensure_writable_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(dir.string() + ": cannot create the folder (" + ec.message() + ")");
  if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir.string() + ": not a folder");
  const fs::path probe = dir / (".mpacc-write-test." + std::to_string(::getpid()));
  {
    std::ofstream out(probe, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(dir.string() + ": cannot write in this folder");
  }
  fs::remove(probe, ec);
}

// writes `text` to `file` through a temporary file renamed into place
void write_atomic(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(file.string() + ": cannot create (" + std::strerror(errno) + ")");
    out << text;
    out.flush();
    if (!out) {
      fs::remove(tmp);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    throw std::runtime_error(file.string() + ": cannot write (" + why + ")");
  }
}

std::string gnuplot_quote(std::string_view text) {
  // single quotes: gnuplot substitutes neither backquotes nor backslash escapes
  // inside them; a quote is written twice; control characters (a newline
  // would end the command) become '?'
  std::string q = "'";
  for (char c : text) {
    if (c == '\'')
      q += "''";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      q += '?';
    else
      q += c;
  }
  return q + "'";
}

bool gnuplot_available() {
  static const bool found = [] {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/bin:/bin";
    while (true) {
      const auto colon = rest.find(':');
      const std::string dir(rest.substr(0, colon));
      if (!dir.empty() && ::access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
      if (colon == std::string_view::npos) return false;
      rest.remove_prefix(colon + 1);
    }
  }();
  return found;
}

namespace {

// Removes a file when it goes out of scope (unless released).
struct remove_on_exit {
  fs::path file;
  explicit remove_on_exit(fs::path f) : file(std::move(f)) {}
  remove_on_exit(const remove_on_exit&) = delete;
  remove_on_exit& operator=(const remove_on_exit&) = delete;
  ~remove_on_exit() {
    std::error_code ec;
    if (!file.empty()) fs::remove(file, ec);
  }
};

std::string first_line_of(const fs::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    // gnuplot echoes the offending command and a caret; keep the message
    const auto b = line.find_first_not_of(" \t^");
    if (b == std::string::npos) continue;
    last = line.substr(b);
    if (line.find("line ") != std::string::npos) break;
  }
  return last.empty() ? "no message" : last;
}

}  // namespace

// Draws through gnuplot-iostream on a gnuplot started without a shell (fixed
// argument list, working directory set by posix_spawn): no path or title can
// reach a command line. The figure is written to <name>.png.tmp and renamed
// into place only if gnuplot exited with status 0 and the image is not empty.
void draw_plot(const fs::path& dir, const std::string& name, const std::string& script_body, int width, int height) {
  const std::string png_term = "set terminal pngcairo size " + std::to_string(width) + "," + std::to_string(height) +
                               " noenhanced font 'sans,11'\n";
  char pdf_size[64];
  std::snprintf(pdf_size, sizeof pdf_size, "%.2fin,%.2fin", width / 100.0, height / 100.0);
  const std::string pdf_term = std::string("set terminal pdfcairo size ") + pdf_size + " noenhanced font 'sans,9'\n";
  std::string comment = "# redraw with: cd " + dir.string() + " && gnuplot " + name + ".gp";
  for (char& c : comment)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';  // a comment line must stay one line
  const std::string script = comment + "\n" + png_term + "set output " + gnuplot_quote(name + ".png") + "\n" +
                             script_body + "\nset output\nreset\n" + pdf_term + "set output " +
                             gnuplot_quote(name + ".pdf") + "\n" + script_body + "\nset output\n";
  write_atomic(dir / (name + ".gp"), script);
  if (!gnuplot_available()) {
    static bool warned = false;
    if (!warned)
      std::fprintf(
          stderr,
          "mpacc: warning: gnuplot not found; figures are not drawn (their .gp scripts and data are written)\n");
    warned = true;
    return;
  }
  const fs::path png = dir / (name + ".png"), tmp = dir / (name + ".png.tmp");
  const fs::path pdf = dir / (name + ".pdf"), pdf_tmp = dir / (name + ".pdf.tmp");
  remove_on_exit tmp_guard{tmp}, pdf_guard{pdf_tmp};
  char err_name[] = "/tmp/mpacc-gnuplot-XXXXXX";
  const int err_fd = ::mkstemp(err_name);
  if (err_fd < 0) throw std::runtime_error(std::string(err_name) + ": cannot create");
  remove_on_exit err_guard{err_name};
  int fds[2];
  if (::pipe(fds) != 0) {
    ::close(err_fd);
    throw std::runtime_error("cannot start gnuplot: pipe failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  char arg0[] = "gnuplot";
  char* argv[] = {arg0, nullptr};
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "gnuplot", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[0]);
  ::close(err_fd);
  if (rc != 0) {
    ::close(fds[1]);
    throw std::runtime_error("cannot start gnuplot: " + std::string(std::strerror(rc)));
  }
  // a gnuplot that stops early must not kill us with SIGPIPE
  std::signal(SIGPIPE, SIG_IGN);
  std::FILE* pipe = ::fdopen(fds[1], "w");
  if (!pipe) {
    ::close(fds[1]);
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error("cannot start gnuplot: fdopen failed");
  }
  try {
    Gnuplot gp(pipe);  // closes the pipe when it goes out of scope
    gp << png_term << "set output " << gnuplot_quote(name + ".png.tmp") << "\n";
    gp << script_body << "\nset output\nreset\n";
    gp << pdf_term << "set output " << gnuplot_quote(name + ".pdf.tmp") << "\n";
    gp << script_body << "\nset output\n";
  } catch (const std::exception&) {
    // gnuplot went away mid-script: its status and message say why
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::error_code ec;
  std::error_code ec2;
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::file_size(tmp, ec) > 0 && !ec &&
                  fs::file_size(pdf_tmp, ec2) > 0 && !ec2;
  if (!ok) throw std::runtime_error(png.string() + ": gnuplot failed (" + first_line_of(err_name) + ")");
  fs::rename(tmp, png, ec);
  if (ec) throw std::runtime_error(png.string() + ": " + ec.message());
  tmp_guard.file.clear();
  fs::rename(pdf_tmp, pdf, ec);
  if (ec) throw std::runtime_error(pdf.string() + ": " + ec.message());
  pdf_guard.file.clear();
}

}  // namespace mpacc::analysis
