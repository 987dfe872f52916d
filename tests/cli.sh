#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# End-to-end checks of the mpacc program: round, dot, formats, eval, validate, train and sweep errors.
set -u
MPACC=${1:?usage: cli.sh path/to/mpacc}
fails=0
expect() {  # expect "description" "expected output" command...
  local what=$1 want=$2; shift 2
  local got
  got=$("$@" 2>&1)
  if [[ "$got" != "$want" ]]; then
    echo "FAIL: $what"; echo "  want: $(printf %q "$want")"; echo "  got:  $(printf %q "$got")"
    fails=$((fails + 1))
  fi
}
expect_error() {  # expect_error "description" "substring of the message" stdin-text args...
  local what=$1 needle=$2 input=$3; shift 3
  local out err rc
  out=$(printf '%s' "$input" | "$MPACC" "$@" 2>/tmp/mpacc_cli_err.$$); rc=$?
  err=$(cat /tmp/mpacc_cli_err.$$); rm -f /tmp/mpacc_cli_err.$$
  if [[ $rc -eq 0 || -n "$out" || "$err" != *"$needle"* || $(printf '%s\n' "$err" | wc -l) -ne 1 ]]; then
    echo "FAIL: $what (rc=$rc, stdout=$(printf %q "$out"), stderr=$(printf %q "$err"))"
    fails=$((fails + 1))
  fi
}
r() { local input=$1; shift; printf '%s\n' "$input" | "$MPACC" round "$@"; }

expect "binary16 basics" $'0x1.998p-4\n0x1p+0\n-0x1.4p+1\n0x1.8p+3\nnan\n-inf\ninf\n0x0p+0\n-0x0p+0' \
  r "0.1 1 -2.5 0x1.8p3 nan -inf inf 0 -0" --format binary16
# exact decimal ties: 1 + 2^-11 is a binary16 midpoint; a decimal a hair above it rounds up
expect "decimal tie" "0x1p+0" r "1.00048828125" --format binary16
expect "decimal above tie (binary64 would round it to the tie)" "0x1.004p+0" \
  r "1.0004882812500000000000001" --format binary16
expect "decimal below tie, nearest-away" "0x1p+0" \
  r "1.0004882812499999999999999" --format binary16 --rounding nearest-away
expect "nearest-away tie" "0x1.004p+0" r "1.00048828125" --format binary16 --rounding nearest-away
expect "tiny decimal beyond binary64" $'0x1p-24\n-0x0p+0' r "1e-400 -1e-400" --format binary16 --rounding upward --subnormals on
expect "e4m3 464 ties to 448" "0x1.cp+8" r "464" --format e4m3
expect "e4m3 overflow is NaN" "nan" r "470" --format e4m3
expect "e4m3 saturation" $'0x1.cp+8\n-0x1.cp+8' r "1e9 -inf" --format e4m3 --saturate on
expect "e4m3-ieee overflow is inf" "inf" r "250" --format e4m3-ieee
expect "toward-zero never overflows" "0x1.ffcp+15" r "1e300" --format binary16 --rounding toward-zero
expect "subnormals off" $'0x1p-14\n0x0p+0' r "0x1.3333333333333p-15 0x1p-15" --format binary16 --subnormals off
expect "custom format" "0x1.8p+1" r "2.9" --format "p=2,emin=-2,emax=4"
expect "round to odd" "0x1.004p+0" r "1.0001" --format binary16 --rounding odd
a=$(printf '1.0001 %.0s' {1..50} | "$MPACC" round --format binary16 --rounding stochastic --seed 3)
b=$(printf '1.0001 %.0s' {1..50} | "$MPACC" round --format binary16 --rounding stochastic --seed 3)
[[ "$a" == "$b" ]] || { echo "FAIL: stochastic not reproducible"; fails=$((fails + 1)); }
[[ $(sort -u <<<"$a" | wc -l) -eq 2 ]] && grep -qx "0x1p+0" <<<"$a" && grep -qx "0x1.004p+0" <<<"$a" || { echo "FAIL: stochastic neighbours: $(sort -u <<<"$a" | tr '\n' ' ')"; fails=$((fails + 1)); }

expect_error "malformed number" "'abc' is not a number" $'1\n2 abc\n' round --format binary16
expect_error "malformed number position" "line 2, column 3" $'1\n2 abc\n' round --format binary16
expect_error "unknown format" "unknown format 'fp7'" "1" round --format fp7
expect_error "unknown mode" "unknown rounding mode 'up'" "1" round --format binary16 --rounding up
expect_error "bad switch" "--saturate: 'maybe' must be on or off" "1" round --format binary16 --saturate maybe
expect_error "bad custom format" "p=0 is out of range" "1" round --format "p=0,emin=-2,emax=3"
expect_error "missing format" "format" "1" round
expect_error "unknown option" "--colour" "1" round --format binary16 --colour red
expect_error "trailing garbage" "'1.5x' is not a number" "1.5x" round --format binary16
expect_error "half a hex float" "'0x' is not a number" "0x" round --format binary16
# found by tests/fuzz/fuzz_token (issue 16): MPFR's own syntax is not a number here, and
# exponents beyond a long keep a tiny value tiny
expect_error "binary prefix" "'0b101' is not a number" "0b101" round --format binary16
expect_error "@ exponent" "'1@3' is not a number" "1@3" round --format binary16
expect "exponent beyond a long" $'0x0.0000000000001p-1022\n-0x0p+0\ninf' \
  r ".0001e-999999999999999999991 -1e-99999999999999999999 1e99999999999999999999" --format binary64 --rounding upward

# mpacc dot
d() { local input=$1; shift; printf '%b' "$input" | "$MPACC" dot "$@" | grep -E "^(simulated|exact|error_abs) "; }
expect "dot recursive binary16" $'simulated 0x1.ep+3\nexact 0x1.ep+3\nerror_abs 0' d "3 5\n" --acc binary16
# 1 + 2^-11 + 2^-11 in binary16: recursive rounds 1 + 2^-11 to 1 (tie to even) twice; pairwise keeps 2^-10
expect "dot recursive tie" $'simulated 0x1p+0\nexact 0x1.004p+0\nerror_abs 0.0009765625' d "1 1\n0x1p-11 1\n0x1p-11 1\n" --acc binary16
expect "dot pairwise" $'simulated 0x1.004p+0\nexact 0x1.004p+0\nerror_abs 0' d "0x1p-11 1\n0x1p-11 1\n1 1\n0 1\n" --acc binary16 --order pairwise
expect "dot bias last" $'simulated 0x1.8p+0\nexact 0x1.8p+0\nerror_abs 0' d "1 1\n" --acc e4m3-ieee --bias 0.5
expect_error "dot malformed pair" "line 2: expected a pair" $'1 1\n1\n' dot --acc binary16
expect_error "dot bad number" "line 1, value 2: 'x'" $'1 x\n' dot --acc binary16
expect_error "dot inexact decimal" "not a number exactly representable" $'0.1 1\n' dot --acc binary16
nul_in() { printf '1\0x 2\n' | "$MPACC" round --format binary16 2>&1; }
got=$(nul_in); [[ "$got" == *"'1\\x00x' is not a number"* ]] || { echo "FAIL: NUL in a token: $got"; fails=$((fails + 1)); }
expect_error "dot bad order" "unknown order 'zigzag'" $'1 1\n' dot --acc binary16 --order zigzag
expect_error "dot bad block" "block size" $'1 1\n' dot --acc binary16 --order blocked:0
expect_error "dot bad product" "unknown format 'fp9'" $'1 1\n' dot --acc binary16 --product fp9

# mpacc eval on a tiny data set (2 images of 1x3 pixels) with the .npz fixture
evaldir=$(mktemp -d)
mkdir -p "$evaldir/mnist"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x03\x00\x80\xff\xff\x10\x00' > "$evaldir/mnist/t10k-images-idx3-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01' > "$evaldir/mnist/t10k-labels-idx1-ubyte"
fixture=$(dirname "$0")/data/tiny.npz
out=$("$MPACC" eval --model "$fixture" --act tanh --data "$evaldir" --acc e4m3-ieee 2>&1)
grep -q "accuracy binary32: " <<<"$out" && grep -q "precision: weights=none;biases=none;inputs=binary32;product=exact;acc=e4m3-ieee;" <<<"$out" &&
  grep -q "accuracy simulated: " <<<"$out" && grep -q "3-4-2" <<<"$out" ||
  { echo "FAIL: eval output: $out"; fails=$((fails + 1)); }
# the one-line precision gives the same pass as the single options
out2=$("$MPACC" eval --model "$fixture" --act tanh --data "$evaldir" --precision "weights=none;biases=none;acc=e4m3-ieee;order=blocked:8" 2>&1)
[[ "$out" == "$out2" ]] || { echo "FAIL: eval --precision differs: $out2"; fails=$((fails + 1)); }
expect_error "eval: --precision with --acc" "give one or the other" "" eval --model "$fixture" --act tanh --data "$evaldir" --precision "acc=binary16" --acc e4m3-ieee
expect_error "eval: bad precision key" "--precision: precision: key 'acc'" "" eval --model "$fixture" --act tanh --data "$evaldir" --precision "acc=fp7"
expect_error "eval: precision for another depth" "3 accumulator formats for a network of 2 layers" "" eval --model "$fixture" --act tanh --data "$evaldir" --precision "acc=binary16,binary16,binary16"
printf '{"acc": ["binary16"], "colour": 1}' > "$evaldir/p.json"
expect_error "eval: precision file with an unknown key" "p.json: precision: key 'colour': unknown key" "" eval --model "$fixture" --act tanh --data "$evaldir" --precision-file "$evaldir/p.json"
expect_error "eval: missing model" "cannot open" "" eval --model "$evaldir/none.mpnn" --data "$evaldir"
printf 'garbage-garbage-garbage' > "$evaldir/bad.mpnn"
expect_error "eval: garbage model" "bad magic" "" eval --model "$evaldir/bad.mpnn" --data "$evaldir"
expect_error "eval: missing data" "not found" "" eval --model "$fixture" --dataset fashion-mnist --data "$evaldir"
printf '\x00\x00\x08\x01\x00\x00\x00\x05\x00\x01' > "$evaldir/mnist/t10k-labels-idx1-ubyte"
expect_error "eval: size mismatch" "size does not match its header" "" eval --model "$fixture" --data "$evaldir"
expect_error "train: bad arch" "--arch" "" train --arch 784-x-10 --out "$evaldir/m.mpnn" --data "$evaldir"
expect_error "train: huge architecture" "is wider than the limit" "" train --arch 99999999999-10 --out "$evaldir/m.mpnn" --data "$evaldir"
expect_error "train: too many weights" "weights are more than the limit" "" train --arch 784-9999999-10 --out "$evaldir/m.mpnn" --data "$evaldir"
expect_error "train: bad activation" "unknown activation 'relu6'" "" train --act relu6 --out "$evaldir/m.mpnn" --data "$evaldir"
# mpacc validate on the same data: exit status 0 (all bounded), 4 (uncovered: an
# activation or an input overflows its format), 2 (usage, unstorable reference inputs)
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01' > "$evaldir/mnist/t10k-labels-idx1-ubyte"
v() { "$MPACC" validate --model "$fixture" --act tanh --data "$evaldir" --out "$evaldir/v" --no-plots "$@"; }
expect_status() {  # expect_status "description" status "substring of stdout+stderr" command...
  local what=$1 want=$2 needle=$3; shift 3
  local got rc
  got=$("$@" 2>&1); rc=$?
  if [[ $rc -ne $want || "$got" != *"$needle"* ]]; then
    echo "FAIL: $what (rc=$rc, want $want; output: $got)"; fails=$((fails + 1))
  fi
}
expect_status "exit status 5: a missing model" 5 "cannot open" "$MPACC" eval --model "$evaldir/none.mpnn" --data "$evaldir"
expect_status "exit status 2: a bad option value" 2 "--acc" "$MPACC" eval --model "$fixture" --act tanh --data "$evaldir" --acc fp7
expect_status "validate: clean run" 0 "deterministic violations: 0 propagated (v 0, y 0), 0 per inner product (of 12 checked)" v
grep -q "^0,1,0,.*,none,inexact" "$evaldir/v/e4m3-ieee_blocked_8/components.csv" ||
  { echo "FAIL: validate CSV lacks the cause and flags columns"; fails=$((fails + 1)); }
expect_status "validate: activation overflow (tanh > 0.75)" 4 "9 of 12: 4 inherited, 5 activation" v --act-format p=2,emin=-2,emax=-1
expect_status "validate: input overflow, exact reference inputs" 4 "12 of 12: 8 input, 4 inherited" \
  v --input-format p=2,emin=-1,emax=0 --reference-inputs exact
cp "$fixture" "$evaldir/we\"ird.npz"
expect_status "validate: a model path with a quote" 0 "deterministic violations: 0" \
  "$MPACC" validate --model "$evaldir/we\"ird.npz" --act tanh --data "$evaldir" --out "$evaldir/q" --no-plots
grep -qF '"model": "'"$evaldir"'/we\"ird.npz"' "$evaldir/q/e4m3-ieee_blocked_8/summary.json" ||
  { echo "FAIL: validate manifest lacks the escaped model path"; fails=$((fails + 1)); }
# one whole precision configuration: per-layer accumulators, activations rounded toward zero
expect_status "validate: --precision" 0 "deterministic violations: 0 propagated (v 0, y 0), 0 per inner product" \
  v --precision "weights=none;biases=none;acc=binary16,e5m2;order=recursive;act=bfloat16;act_rounding=toward-zero"
grep -q '"act_rounding": "toward-zero"' "$evaldir/v/binary16_e5m2_recursive/summary.json" ||
  { echo "FAIL: validate summary lacks the precision configuration"; fails=$((fails + 1)); }
expect_error "validate: --precision with --acc" "give one or the other" "" validate --model "$fixture" --precision "acc=binary16" --acc e4m3-ieee
expect_error "validate: old --precision bits" "--precision: precision: '200' is not key=value" "" validate --model "$fixture" --act tanh --data "$evaldir" --precision 200
# mpacc calibrate: a static configuration from the training images, taken by eval and validate
cp "$evaldir/mnist/t10k-images-idx3-ubyte" "$evaldir/mnist/train-images-idx3-ubyte"
cp "$evaldir/mnist/t10k-labels-idx1-ubyte" "$evaldir/mnist/train-labels-idx1-ubyte"
expect_status "calibrate: writes a configuration" 0 "written to $evaldir/static.json" \
  "$MPACC" calibrate --model "$fixture" --act tanh --data "$evaldir" --samples 2 --tau 0.5 --quantile 1 \
  --ladder bfloat16 --out "$evaldir/static.json"
grep -q '"maps"' "$evaldir/static.json" || { echo "FAIL: calibrate wrote no maps"; fails=$((fails + 1)); }
expect_status "calibrate: eval takes it" 0 "accuracy simulated" \
  "$MPACC" eval --model "$fixture" --act tanh --data "$evaldir" --precision-file "$evaldir/static.json"
expect_status "calibrate: validate takes it" 0 "deterministic violations: 0" \
  v --precision-file "$evaldir/static.json"
expect_error "calibrate: bad quantile" "--quantile: must be in [0, 1]" "" calibrate --model "$fixture" --act tanh --data "$evaldir" --quantile 2
expect_status "validate: binary64 accumulator (MPFR path)" 0 "uncovered (no bound: overflow, saturation, NaN): 0 of 12" v --acc binary64
expect_error "validate: stored inputs overflow" "is not finite once stored in p=2,emin=-1,emax=0" "" \
  validate --model "$fixture" --act tanh --data "$evaldir" --out "$evaldir/v" --no-plots --input-format p=2,emin=-1,emax=0
expect_error "validate: lambda nan" "--lambda: must be a positive number" "" validate --model "$fixture" --lambda nan
expect_error "validate: bad lambdas" "--lambdas: 'x' is not a positive number" "" validate --model "$fixture" --lambdas 1,x
expect_error "validate: bad reference inputs" "unknown reference inputs 'maybe'" "" validate --model "$fixture" --reference-inputs maybe
rm -rf "$evaldir"

# LeNet-5 (a convolutional network) on a tiny 28x28 data set: train, eval, validate
cnndir=$(mktemp -d)
mkdir -p "$cnndir/mnist"
idx_images() {  # idx_images FILE N: N 28x28 images of a fixed byte pattern (bash strings hold no NUL, tr drops 0x0a)
  { printf '\x00\x00\x08\x03\x00\x00\x00'; printf "\\x$(printf %02x "$2")"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
    yes $'\x10\x80\xff\x01\x40\x02\x03\xc8\x20\x04\x05' | tr -d '\n' | head -c $(($2 * 784)); } > "$1"
}
idx_labels() {
  { printf '\x00\x00\x08\x01\x00\x00\x00'; printf "\\x$(printf %02x "$2")"
    for ((i = 0; i < $2; i++)); do printf "\\x0$((i % 10))"; done; } > "$1"
}
idx_images "$cnndir/mnist/train-images-idx3-ubyte" 40
idx_labels "$cnndir/mnist/train-labels-idx1-ubyte" 40
idx_images "$cnndir/mnist/t10k-images-idx3-ubyte" 6
idx_labels "$cnndir/mnist/t10k-labels-idx1-ubyte" 6
expect_status "train: lenet5" 0 "model written to $cnndir/lenet.mpnn" \
  "$MPACC" train --arch lenet5 --epochs 2 --lr-steps 1 --batch 8 --threads 1 --data "$cnndir" --out "$cnndir/lenet.mpnn"
expect_status "eval: a CNN model file" 0 "1x28x28,conv1x6k5p2-relu,maxpool2,conv6x16k5-relu,maxpool2,flatten,dense400x120-relu,dense120x84-relu,dense84x10" \
  "$MPACC" eval --model "$cnndir/lenet.mpnn" --data "$cnndir" --precision "acc=e4m3-ieee"
expect_status "eval: a CNN model, simulated" 0 "accuracy simulated" \
  "$MPACC" eval --model "$cnndir/lenet.mpnn" --data "$cnndir" --acc binary16
expect_error "eval: precision for another depth (CNN)" "2 accumulator formats for a network of 8 layers" "" \
  eval --model "$cnndir/lenet.mpnn" --data "$cnndir" --precision "acc=binary16,binary16"
expect_status "validate: a CNN model file" 0 "deterministic violations: 0 propagated (v 0, y 0), 0 per inner product" \
  "$MPACC" validate --model "$cnndir/lenet.mpnn" --data "$cnndir" --samples 3 --acc e4m3-ieee,binary16 \
  --order recursive,blocked:8 --out "$cnndir/v" --no-plots
grep -q '"kind": "maxpool"' "$cnndir/v/binary16_recursive/summary.json" ||
  { echo "FAIL: CNN validate summary lacks the layer kinds"; fails=$((fails + 1)); }
expect_status "validate: a CNN, --precision with per-layer accumulators" 0 "deterministic violations: 0 propagated" \
  "$MPACC" validate --model "$cnndir/lenet.mpnn" --data "$cnndir" --samples 2 --reference-bits 100 --out "$cnndir/v" --no-plots \
  --precision "acc=binary16,e4m3-ieee,bfloat16,e4m3-ieee,e4m3-ieee,binary16,e5m2,binary16;saturate=on;act=bfloat16"
expect_error "eval: --npz-arch names an architecture" "--npz-arch: 'vgg' is not an architecture (lenet5, vit:HEADS[:EPS])" "" \
  eval --model "$cnndir/lenet.npz" --data "$cnndir" --npz-arch vgg
expect_error "validate: --npz-arch takes an .npz file" "--npz-arch: the model must be an .npz file" "" \
  validate --model "$cnndir/lenet.mpnn" --data "$cnndir" --npz-arch lenet5
expect_error "eval: --npz-arch on a missing file" "$cnndir/none.npz" "" \
  eval --model "$cnndir/none.npz" --data "$cnndir" --npz-arch lenet5
expect_status "train: lenet5 with tanh" 0 "model written to $cnndir/lenet-tanh.mpnn" \
  "$MPACC" train --arch lenet5 --act tanh --epochs 1 --batch 8 --threads 1 --data "$cnndir" --out "$cnndir/lenet-tanh.mpnn"
expect_status "validate: a tanh CNN" 0 "deterministic violations: 0 propagated (v 0, y 0), 0 per inner product" \
  "$MPACC" validate --model "$cnndir/lenet-tanh.mpnn" --data "$cnndir" --samples 3 --acc bfloat16 --order pairwise \
  --out "$cnndir/v" --no-plots
expect_error "train: --lr-steps for an MLP" "--lr-steps: only for --arch lenet5" "" train --lr-steps 3 --out "$cnndir/m.mpnn" --data "$cnndir"
expect_status "cnn-sweep: Algorithm 1 on a CNN" 0 "results: $cnndir/s/results.csv" \
  "$MPACC" cnn-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir" --samples 4 --taus 1,0.1 \
  --indicators kprime-companion --baselines random-active,oracle-local --seeds 2 --out "$cnndir/s" --threads 1
# uniform-low, uniform-high, exact; per tau: algorithm1, 2 random-active seeds, oracle-local; the header
[[ $(wc -l < "$cnndir/s/results.csv") -eq 12 ]] && grep -q "^mnist-lenet,blocked:8,algorithm1,kprime-companion," "$cnndir/s/results.csv" ||
  { echo "FAIL: cnn-sweep results.csv"; fails=$((fails + 1)); }
# the report of mpacc sweep: conclusions, the table, the manifest, the figure data and (with gnuplot) the figures
grep -q "^mnist-lenet, blocked:8 (4 test images" "$cnndir/s/report.md" && grep -q "^## mnist-lenet, blocked:8" "$cnndir/s/report.md" &&
  grep -q '"command": "cnn-sweep"' "$cnndir/s/manifest.json" && [[ -s "$cnndir/s/mnist-lenet-blocked-8.dat" ]] &&
  grep -q "conv1" "$cnndir/s/mnist-lenet-blocked-8-fraction-tau.gp" &&
  { ! command -v gnuplot > /dev/null || [[ -s "$cnndir/s/mnist-lenet-blocked-8-pareto.png" ]]; } ||
  { echo "FAIL: cnn-sweep report.md, manifest.json and figures"; fails=$((fails + 1)); }
expect_error "cnn-sweep: an unknown baseline" "unknown baseline 'oracle'" "" \
  cnn-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir" --baselines oracle
expect_error "cnn-sweep: an MLP model" "is not a CNN model file" "" cnn-sweep --model "$fixture" --data "$cnndir"
expect_error "cnn-sweep: a NaN tolerance" "--taus: tolerance nan must be a finite number >= 0" "" \
  cnn-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir" --taus 1,nan
expect_error "cnn-sweep: a tolerance twice" "--taus: tolerance 0.1 is listed twice" "" \
  cnn-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir" --taus 0.1,1,0.1
expect_error "cnn-sweep: an indicator twice" "--indicators: kappa is listed twice" "" \
  cnn-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir" --indicators kappa,kprime,kappa
expect_error "cnn-sweep: a missing model" "--model: $cnndir/none.mpnn: no such file" "" \
  cnn-sweep --model "$cnndir/none.mpnn" --data "$cnndir"
# a vision transformer (docs/attention.md) on the same tiny data set: train, eval
expect_status "train: vit" 0 "model written to $cnndir/vit.mpnn" \
  "$MPACC" train --arch vit --blocks 1 --heads 2 --dim 8 --mlp 16 --epochs 1 --batch 8 --threads 1 --data "$cnndir" \
  --out "$cnndir/vit.mpnn"
expect_status "eval: a vit model, simulated" 0 "accuracy simulated" \
  "$MPACC" eval --model "$cnndir/vit.mpnn" --data "$cnndir" --precision "acc=binary16;weights=e4m3-ieee;act=bfloat16"
expect_status "eval: a vit model file names its architecture" 0 "vit28p7-d8-h2-b1-m16-c10" \
  "$MPACC" eval --model "$cnndir/vit.mpnn" --data "$cnndir"
expect_error "eval: precision for another depth (vit)" "2 accumulator formats for a network of 10 layers" "" \
  eval --model "$cnndir/vit.mpnn" --data "$cnndir" --precision "acc=binary16,binary16"
expect_error "train: vit heads that do not divide the width" "--heads: must divide --dim (8)" "" \
  train --arch vit --dim 8 --heads 3 --data "$cnndir" --out "$cnndir/v3.mpnn"
expect_status "validate: a vit model, every inner-product layer bounded" 0 "deterministic violations: 0 propagated (v 0, y 0)" \
  "$MPACC" validate --model "$cnndir/vit.mpnn" --data "$cnndir" --samples 2 --out "$cnndir/v" --no-plots \
  --precision "acc=binary16;order=blocked:4;weights=e4m3-ieee;biases=e4m3-ieee;act=bfloat16"
expect_status "vit-sweep: Algorithm 1 on a vision transformer" 0 "results: $cnndir/vs/results.csv" \
  "$MPACC" vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --samples 4 --taus 1,0.1 --indicators kappa \
  --baselines random-active,oracle-local --seeds 2 --kinds-high scores,fc1+fc2 --out "$cnndir/vs" --threads 1
# uniform-low, uniform-high, exact, 2 layer-kind runs; per tau: algorithm1, 2 random-active seeds, oracle-local; the header
[[ $(wc -l < "$cnndir/vs/results.csv") -eq 14 ]] && grep -q "^mnist-vit,blocked:8,algorithm1,kappa," "$cnndir/vs/results.csv" &&
  grep -q "^mnist-vit,blocked:8,high:fc1+fc2," "$cnndir/vs/results.csv" ||
  { echo "FAIL: vit-sweep results.csv"; fails=$((fails + 1)); }
grep -q "^## One layer kind in high" "$cnndir/vs/report.md" && grep -q "| scores |" "$cnndir/vs/report.md" &&
  grep -q '"command": "vit-sweep"' "$cnndir/vs/manifest.json" && grep -q "q/k/v" "$cnndir/vs/mnist-vit-blocked-8-fraction-tau.gp" ||
  { echo "FAIL: vit-sweep report.md, manifest.json and figures"; fails=$((fails + 1)); }
expect_status "vit-sweep: exit status 2 for a bad option value" 2 "--taus" \
  "$MPACC" vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --taus nan
expect_error "vit-sweep: a NaN tolerance" "--taus: tolerance nan must be a finite number >= 0" "" \
  vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --taus 1,nan
expect_error "vit-sweep: a negative tolerance" "--taus: tolerance -1 must be a finite number >= 0" "" \
  vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --taus=-1
expect_error "vit-sweep: an unknown indicator" "unknown indicator 'kprime'" "" \
  vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --indicators kprime
expect_error "vit-sweep: an unknown layer kind" "--kinds-high: 'attn' is not a layer kind" "" \
  vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --kinds-high scores+attn
expect_error "vit-sweep: oracle-gain" "oracle-gain is not supported" "" \
  vit-sweep --model "$cnndir/vit.mpnn" --data "$cnndir" --baselines oracle-gain
expect_error "vit-sweep: a missing model" "--model: $cnndir/none.mpnn: no such file" "" \
  vit-sweep --model "$cnndir/none.mpnn" --data "$cnndir"
expect_error "vit-sweep: a CNN model" "is not a vision-transformer model file" "" \
  vit-sweep --model "$cnndir/lenet.mpnn" --data "$cnndir"
# a vit from timm's state_dict names (--npz-arch vit:HEADS[:EPS]); the .npz written by numpy
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  /usr/bin/python3 - "$cnndir" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(1)
d, T, h, c, p = 8, 17, 16, 10, 7
a = {"patch_embed.proj.weight": rng.normal(0, .1, (d, 1, p, p)), "patch_embed.proj.bias": rng.normal(0, .1, d),
     "cls_token": rng.normal(0, .1, (1, 1, d)), "pos_embed": rng.normal(0, .1, (1, T, d)),
     "norm.weight": np.ones(d), "norm.bias": np.zeros(d), "head.weight": rng.normal(0, .3, (c, d)), "head.bias": np.zeros(c)}
for k, s in [("norm1.weight", d), ("norm1.bias", d), ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", 3 * d),
             ("attn.proj.weight", (d, d)), ("attn.proj.bias", d), ("norm2.weight", d), ("norm2.bias", d),
             ("mlp.fc1.weight", (h, d)), ("mlp.fc1.bias", h), ("mlp.fc2.weight", (d, h)), ("mlp.fc2.bias", d)]:
    a["blocks.0." + k] = rng.normal(0, .3, s)
np.savez(sys.argv[1] + "/vit.npz", **{k: v.astype(np.float32) for k, v in a.items()})
del a["blocks.0.mlp.fc2.bias"]
np.savez(sys.argv[1] + "/vit-missing.npz", **a)
PY
  expect_status "eval: a vit .npz (timm names)" 0 "vit28p7-d8-h2-b1-m16-c10" \
    "$MPACC" eval --model "$cnndir/vit.npz" --npz-arch vit:2 --data "$cnndir" --precision "acc=binary16"
  expect_status "validate: a vit .npz" 0 "deterministic violations: 0 propagated (v 0, y 0)" \
    "$MPACC" validate --model "$cnndir/vit.npz" --npz-arch vit:2:1e-5 --data "$cnndir" --samples 2 --chunk 1 \
    --out "$cnndir/vn" --no-plots --storage e4m3-ieee
  expect_error "eval: a vit .npz without an array" "no array blocks.0.mlp.fc2.bias" "" \
    eval --model "$cnndir/vit-missing.npz" --npz-arch vit:2 --data "$cnndir"
  expect_error "eval: vit heads that do not divide d" "width d = 8 is not divisible by 3 heads" "" \
    eval --model "$cnndir/vit.npz" --npz-arch vit:3 --data "$cnndir"
  expect_error "eval: --npz-arch vit without heads" "is not vit:HEADS[:EPS]" "" \
    eval --model "$cnndir/vit.npz" --npz-arch vit --data "$cnndir"
fi
expect_status "validate: a negative --chunk" 2 "--chunk: Value -3 not in range" \
  "$MPACC" validate --model "$cnndir/vit.mpnn" --data "$cnndir" --chunk -3
rm -rf "$cnndir"

# sweeps: configuration errors name the file and the key
cfgdir=$(mktemp -d)
printf '{"networks": [], "taus": [1]}' > "$cfgdir/empty.json"
expect_error "sweep: no network" "key 'networks'" "" sweep --config "$cfgdir/empty.json"
printf '{"colour": 1}' > "$cfgdir/unknown.json"
expect_error "sweep: unknown key" "key 'colour': unknown key" "" sweep --config "$cfgdir/unknown.json"
printf '{"indicators": ["magic"]}' > "$cfgdir/ind.json"
expect_error "sweep: unknown indicator" "unknown indicator 'magic'" "" sweep --config "$cfgdir/ind.json"
printf '{"low": "fp7"}' > "$cfgdir/fmt.json"
expect_error "sweep: bad format" "key 'low'" "" sweep --config "$cfgdir/fmt.json"
printf '{not json' > "$cfgdir/bad.json"
expect_error "sweep: not JSON" "not valid JSON" "" sweep --config "$cfgdir/bad.json"
printf 'null' > "$cfgdir/null.json"
expect_error "sweep: null config" "must be a JSON object" "" sweep --config "$cfgdir/null.json"
printf '{"samples": -5}' > "$cfgdir/neg.json"
expect_error "sweep: negative samples" "key 'samples': must be a non-negative integer" "" sweep --config "$cfgdir/neg.json"
printf '{"samples": 2.7}' > "$cfgdir/frac.json"
expect_error "sweep: fractional samples" "key 'samples'" "" sweep --config "$cfgdir/frac.json"
printf '{"taus": [0.5, -1]}' > "$cfgdir/tau.json"
expect_error "sweep: negative tau" "key 'taus': tolerance -1" "" sweep --config "$cfgdir/tau.json"
printf '{"taus": [0.5, 0.5]}' > "$cfgdir/tau2.json"
expect_error "sweep: duplicate tau" "listed twice" "" sweep --config "$cfgdir/tau2.json"
printf '{"indicators": []}' > "$cfgdir/noind.json"
expect_error "sweep: no indicator" "key 'indicators': no indicator" "" sweep --config "$cfgdir/noind.json"
printf '{"term_cost": {"binary16": 0}}' > "$cfgdir/cost.json"
expect_error "sweep: zero cost" "key 'term_cost.binary16'" "" sweep --config "$cfgdir/cost.json"
printf '{"term_cost": {"fp7": 3}}' > "$cfgdir/cost2.json"
expect_error "sweep: cost of an unknown format" "key 'term_cost.fp7'" "" sweep --config "$cfgdir/cost2.json"
printf '{"networks": [{"dataset": "mnist`reboot`", "act": "relu"}]}' > "$cfgdir/ds.json"
expect_error "sweep: unknown data set" "key 'networks[0].dataset': unknown data set" "" sweep --config "$cfgdir/ds.json"
printf '{"networks": [{"dataset": "mnist", "colour": 1}]}' > "$cfgdir/nested.json"
expect_error "sweep: nested unknown key" "key 'networks[0].colour': unknown key" "" sweep --config "$cfgdir/nested.json"
printf '{"networks": [{"dataset": "mnist"}, {"dataset": "mnist"}]}' > "$cfgdir/dup.json"
expect_error "sweep: duplicate network" "listed twice" "" sweep --config "$cfgdir/dup.json"
printf '{"seed": "x"}' > "$cfgdir/type.json"
expect_error "sweep: type error names the key" "key 'seed'" "" sweep --config "$cfgdir/type.json"
expect_error "sweep: config is a directory" "is a directory" "" sweep --config "$cfgdir"
expect_error "sweep: bad shard" "--shard: '1/-2' is not of the form i/n" "" sweep --config "$(dirname "$0")/../apps/configs/spec8-quick.json" --shard 1/-2
expect_error "sweep: three-part shard" "is not of the form i/n" "" sweep --config "$(dirname "$0")/../apps/configs/spec8-quick.json" --shard 0/2/3
expect_error "sweep: threads capped" "--threads" "" sweep --config "$(dirname "$0")/../apps/configs/spec8-quick.json" --threads 1000000
expect_error "validate: threads capped" "--threads" "" validate --model x --threads 1000000
expect_error "validate: negative samples" "--samples" "" validate --model x --samples -1
expect_error "train: negative lr" "--lr: must be a positive number" "" train --lr -1 --out "$cfgdir/m.mpnn"
expect_error "train: unwritable output" "cannot create the folder" "" train --out /proc/no/such/m.mpnn
expect_error "reproduce: both modes" "exclude each other" "" reproduce --quick --full
expect_error "reproduce: bad shard" "--shard" "" reproduce --shard 3/2
rm -rf "$cfgdir"

formats=$("$MPACC" formats)
for name in binary64 binary32 tf32 binary16 bfloat16 e5m2 e4m3 e4m3-ieee e3m2 e2m3 e2m1; do
  grep -q "^$name " <<<"$formats" || { echo "FAIL: formats lacks $name"; fails=$((fails + 1)); }
done
grep -q "^e4m3 .* 448 " <<<"$formats" || { echo "FAIL: e4m3 max"; fails=$((fails + 1)); }

echo "cli: $fails failed"
[[ $fails -eq 0 ]]
