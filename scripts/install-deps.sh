#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs every build, test and run dependency of mpacc from Debian 12 packages.
# Run as root (or through sudo). Safe to re-run: apt-get skips what is present.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libmpfr-dev libgmp-dev libboost-dev
  catch2 libbenchmark-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev libomp-dev libopenblas-dev
  libgnuplot-iostream-dev libboost-iostreams-dev libboost-system-dev libboost-filesystem-dev gnuplot-nox
  # the fuzz preset: clang and its compiler-rt (libFuzzer, ASan/UBSan runtimes for clang)
  clang libclang-rt-14-dev
  # the code style check and the static checks of scripts/test.sh
  clang-format clang-tidy
  # the Python module (lib/python) and its tests: pybind11, NumPy, pytest, PyTorch
  python3-dev python3-pybind11 pybind11-dev python3-numpy python3-pytest python3-torch
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#packages[@]} packages present"
