# SPDX-License-Identifier: MIT
# The bindings compute the bits of the C++ API: every result is compared with the
# C++ oracle program (oracle.cpp), which calls the library directly and, where the
# library has two paths, the other one (scalar sim::round per element against
# round_array; sim::dot per component against the dense kernels).
import os

import numpy as np
import pytest

import mpacc
from conftest import bits, u64

FORMATS = ["binary32", "tf32", "binary16", "bfloat16", "e5m2", "e4m3", "e4m3-ieee", "e3m2", "e2m1",
           "p=5,emin=-7,emax=8,inf=off,max=480"]
MODES = mpacc.rounding_modes()


def round_inputs(fmt, n=4000, seed=7):
    """Values around every binade of the format, its midpoints and boundaries, specials."""
    f = mpacc.Format(fmt)
    rng = np.random.default_rng(seed)
    e = rng.integers(f.emin - f.p - 3, f.emax + 3, size=n)
    x = rng.uniform(1, 2, size=n) * np.exp2(e.astype(float))
    x[rng.random(n) < 0.5] *= -1
    grid = mpacc.round(x[: n // 4], f, mode="toward_zero")
    ulp = np.exp2(np.floor(np.log2(np.maximum(np.abs(grid), f.min_normal))) - (f.p - 1))
    mid = grid + np.sign(grid) * ulp / 2  # exact midpoints: the ties
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.max_finite, -f.max_finite, f.max_finite * 1.5,
                        f.min_positive, f.min_positive / 2, f.min_positive * 0.75, f.min_normal,
                        5e-324, 1.0, 0.1, -0.1, 1e300])
    return np.concatenate([x, mid, special])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_every_mode(oracle, fmt):
    x = round_inputs(fmt)
    for mode in MODES:
        for sat in (False, True):
            for sub in (None, False):
                seed = 12345
                y, each = mpacc.round(x, fmt, mode=mode, saturate=sat, subnormals=sub, seed=seed, flags="each")
                y2, all_flags = mpacc.round(x, fmt, mode=mode, saturate=sat, subnormals=sub, seed=seed, flags=True)
                sub_arg = "default" if sub is None else ("on" if sub else "off")
                out = oracle(["round", fmt, mode, int(sat), sub_arg, seed], x.tobytes())
                n = x.size
                ref_y = np.frombuffer(out[: 8 * n], dtype=np.float64)
                ref_f = np.frombuffer(out[8 * n:], dtype=np.uint32)
                what = "%s %s sat=%s sub=%s" % (fmt, mode, sat, sub)
                assert np.array_equal(bits(y), bits(ref_y)), what
                assert np.array_equal(bits(y2), bits(ref_y)), what + " (round_array path)"
                assert np.array_equal(each, ref_f), what
                assert all_flags == int(np.bitwise_or.reduce(ref_f)), what


def test_round_stochastic_large_multithreaded(oracle):
    # large enough for round_array to split the work over threads
    rng = np.random.default_rng(3)
    x = rng.standard_normal(400_000)
    y = mpacc.round(x, "bfloat16", mode="stochastic", seed=99, threads=2)
    out = oracle(["round", "bfloat16", "stochastic", 0, "default", 99], x.tobytes())
    assert np.array_equal(bits(y), bits(np.frombuffer(out[: 8 * x.size], dtype=np.float64)))
    # a piece of the stream: first_index continues it
    z = mpacc.round(x[1000:], "bfloat16", mode="stochastic", seed=99, first_index=1000)
    assert np.array_equal(bits(z), bits(y[1000:]))
    # a different seed gives different bits (the seed is really passed)
    assert not np.array_equal(bits(mpacc.round(x, "bfloat16", mode="stochastic", seed=98)), bits(y))


def test_round_shapes_scalars_and_out():
    x = np.linspace(-3, 3, 60).reshape(3, 4, 5)
    y = mpacc.round(x, "e4m3")
    assert y.shape == x.shape and y.dtype == np.float64
    assert mpacc.round(0.1, "e4m3") == 0.1015625
    assert isinstance(mpacc.round(0.1, "e4m3"), float)
    assert mpacc.round([0.1], "e4m3").tolist() == [0.1015625]
    z = x.copy()
    r = mpacc.round(z, "binary16", out=z)  # in place, no copy
    assert r is z and np.array_equal(z, mpacc.round(x, "binary16"))
    f32 = x.astype(np.float32)  # converted input
    assert np.array_equal(mpacc.round(f32, "e4m3"), mpacc.round(f32.astype(np.float64), "e4m3"))


def dot_cases():
    for acc in ["e4m3-ieee", "binary16", "bfloat16", "binary32", "binary64"]:
        for mode in ["nearest_even", "toward_zero", "stochastic", "odd"]:
            for product in [None, "bfloat16"]:
                for order in ["recursive", "pairwise", "blocked:4"]:
                    yield acc, mode, product, order


@pytest.mark.parametrize("acc,mode,product,order", list(dot_cases()))
def test_dot(oracle, acc, mode, product, order):
    rng = np.random.default_rng(hash((acc, mode, str(product), order)) % 2**32)
    n = 37
    w = mpacc.round(rng.standard_normal(n), "e4m3-ieee")
    x = rng.standard_normal(n) * 4
    bias = 0.375
    for sat in (False, True):
        r = mpacc.dot(w, x, bias, acc=acc, mode=mode, product=product, order=order, saturate=sat, seed=5)
        out = oracle(["dot", acc, mode.replace("_", "-"), product or "exact", order, int(sat), 5],
                     u64(n) + np.float64(bias).tobytes() + w.tobytes() + x.tobytes())
        value = np.frombuffer(out[:8], dtype=np.float64)[0]
        flags = int(np.frombuffer(out[8:12], dtype=np.uint32)[0])
        assert bits(r.value) == bits(value), (acc, mode, product, order, sat)
        assert r.flags == flags
        if np.isfinite(r.value) and not r.flags & mpacc.flag.overflow:
            assert r.error <= r.bound


@pytest.mark.parametrize("mode", ["nearest_even", "stochastic", "upward"])
@pytest.mark.parametrize("use_map", [False, True])
def test_dense(oracle, mode, use_map):
    rng = np.random.default_rng(11)
    B, n_in, n_out = 9, 23, 13
    X = rng.standard_normal((B, n_in))
    W = mpacc.round(rng.standard_normal((n_out, n_in)) * 0.5, "e4m3-ieee")
    b = mpacc.round(rng.standard_normal(n_out) * 0.1, "e4m3-ieee")
    fmts = ["e4m3-ieee", "binary16", "bfloat16"]
    index = rng.integers(0, 3, size=n_out).astype(np.uint8)
    acc_map = [fmts[i] for i in index] if use_map else None
    for order in ["recursive", "blocked:8"]:
        Y, fl = mpacc.dense(X, W, b, acc="binary16", mode=mode, order=order, seed=21, acc_map=acc_map, flags=True)
        data = u64(B, n_in, n_out) + X.tobytes() + W.tobytes() + b.tobytes()
        if use_map:
            data += index.tobytes()
        out = oracle(["dense", "binary16", mode.replace("_", "-"), order, 21, ";".join(fmts) if use_map else "-"],
                     data)
        ref_y = np.frombuffer(out[: 8 * B * n_out], dtype=np.float64).reshape(B, n_out)
        ref_f = np.frombuffer(out[8 * B * n_out:], dtype=np.uint32).reshape(B, n_out)
        assert np.array_equal(bits(Y), bits(ref_y)), (mode, use_map, order)
        assert np.array_equal(fl, ref_f)
    # a 1-D X is one sample
    y1 = mpacc.dense(X[0], W, b, acc="binary16", mode=mode, seed=21, acc_map=acc_map)
    assert y1.shape == (n_out,)


def test_dense_from_precision_config():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 10))
    W = rng.standard_normal((6, 10))
    b = np.zeros(6)
    p = mpacc.PrecisionConfig("acc=e4m3-ieee,binary16;order=pairwise;rounding=toward-zero")
    for layer, acc in [(0, "e4m3-ieee"), (1, "binary16")]:
        got = mpacc.dense(X, W, b, precision=p, layer=layer)
        want = mpacc.dense(X, W, b, acc=acc, order="pairwise", mode="toward_zero")
        assert np.array_equal(bits(got), bits(want))
    with pytest.raises(ValueError, match="layer 2 of 2"):
        mpacc.dense(X, W, b, precision=p, layer=2)


def small_network(seed=1, sizes=(20, 16, 12, 10), act="relu"):
    rng = np.random.default_rng(seed)
    layers = []
    for k in range(len(sizes) - 1):
        W = rng.standard_normal((sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
        b = rng.standard_normal(sizes[k + 1]) * 0.1
        layers.append((W, b, act if k + 2 < len(sizes) else "identity"))
    return mpacc.Network(layers)


@pytest.mark.parametrize("indicator,tau", [("kappa", 0.5), ("kprime", 20.0), ("kappa-norm", 1.0)])
def test_algorithm1_decisions(oracle, tmp_path, indicator, tau):
    net = small_network()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 20))
    labels = rng.integers(0, 10, size=40).astype(np.uint8)
    model = os.path.join(tmp_path, "net.mpnn")
    net.save(model)
    precision = "acc=e4m3-ieee;weights=e4m3-ieee;biases=e4m3-ieee"
    runner = mpacc.MixedRunner(net, X, labels, precision=precision, high="binary16")
    r = runner.run("algorithm1", indicator=indicator, tau=tau, keep_trace=True)
    out = oracle(["alg1", model, precision, "binary16", indicator, tau],
                 u64(40, 20) + X.tobytes() + labels.tobytes())
    L = int(np.frombuffer(out[:8], dtype=np.uint64)[0])
    assert L == 3
    pos = 8
    for k, n_out in enumerate([16, 12, 10]):
        mask = np.frombuffer(out[pos: pos + 40 * n_out], dtype=np.uint8)
        pos += 40 * n_out
        assert np.array_equal(r.trace[k]["recomputed"], mask), (indicator, k)
    logits = np.frombuffer(out[pos:], dtype=np.float64).reshape(40, 10)
    assert np.array_equal(bits(r.logits), bits(logits))
    # a non-trivial selection: some components recomputed, not all
    assert 0 < r.fraction < 1


def test_simulate_equals_dense_layer_by_layer():
    net = small_network(seed=3, act="tanh")
    X = np.random.default_rng(5).standard_normal((7, 20))
    p = mpacc.PrecisionConfig({"acc": "bfloat16", "weights": "none", "biases": "none", "inputs": "binary64",
                               "act": "binary64", "order": "blocked:4"})
    layers = mpacc.simulate(net, X, p)
    x = X
    for k, l in enumerate(layers):
        W, b, act, slope = net.layer(k)
        v = mpacc.dense(x, W, b, precision=p, layer=k)
        assert np.array_equal(bits(l["v"]), bits(v))
        assert np.array_equal(bits(l["y"]), bits(mpacc.activation(act, v)))
        x = l["y"]


def py_kappa(view):
    """The built-in 'kappa' indicator written again in NumPy (algorithm1.cpp's
    kappa_score): num / |v| * kappa_act(v) * u_low, 0 where kappa_act is 0, +inf at
    v = 0 otherwise (kappa_act taken as 1 for ReLU at 0)."""
    v = view.v_low
    num = view.abs_numerator()
    ka = mpacc.kappa_act(view.act, v)
    if view.act == "relu":
        ka = np.where(v == 0, 1.0, ka)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = num / np.abs(v) * ka * view.u_low
    s = np.where(v == 0, np.inf, s)
    s = np.where(ka == 0, 0.0, s)
    view.score[:] = s  # in place (returning the array works too)


def test_python_indicator_matches_the_cpp_one():
    mpacc.register_indicator("py-kappa", py_kappa, lambda view: float(view.n_out * view.n_in))
    assert "py-kappa" in mpacc.indicator_names() and "kappa" in mpacc.indicator_names()
    net = small_network(seed=8)
    rng = np.random.default_rng(9)
    X = rng.standard_normal((50, 20))
    runner = mpacc.MixedRunner(net, X, np.zeros(50, dtype=np.uint8))
    for tau in (0.05, 0.5):
        a = runner.run("algorithm1", indicator="kappa", tau=tau, keep_trace=True)
        b = runner.run("algorithm1", indicator="py-kappa", tau=tau, keep_trace=True)
        for ta, tb in zip(a.trace, b.trace):
            assert np.array_equal(bits(ta["score"]), bits(tb["score"]))
            assert np.array_equal(ta["recomputed"], tb["recomputed"])
        assert np.array_equal(bits(a.logits), bits(b.logits))
        assert a.weighted_cost == b.weighted_cost  # the overhead callable is used as the C++ one
        assert 0 < a.fraction < 1
    # a different indicator gives different decisions (the name really selects it)
    c = runner.run("algorithm1", indicator="kprime", tau=0.5, keep_trace=True)
    assert not all(np.array_equal(x["recomputed"], y["recomputed"]) for x, y in zip(a.trace, c.trace))


@pytest.mark.parametrize("mode", ["nearest_even", "stochastic", "toward_zero"])
def test_dense_overflow_to_nan(oracle, mode):
    # e4m3 has no infinities: overflowing sums become NaN (flag 'invalid'). The NaNs
    # are where sim::dot puts them, with the same flags; their payload may differ (the
    # vector kernels' round-to-odd steps carry a NaN with payload 1 where sim::dot has
    # the default NaN; docs/python.md), every other value is bit for bit the same.
    rng = np.random.default_rng(1)
    B, n_in, n_out = 9, 23, 13
    X = rng.standard_normal((B, n_in)) * 100
    W = rng.standard_normal((n_out, n_in))
    b = np.zeros(n_out)
    Y, fl = mpacc.dense(X, W, b, acc="e4m3", mode=mode, seed=3, flags=True)
    out = oracle(["dense", "e4m3", mode.replace("_", "-"), "recursive", 3, "-"],
                 u64(B, n_in, n_out) + X.tobytes() + W.tobytes() + b.tobytes())
    ref_y = np.frombuffer(out[: 8 * B * n_out], dtype=np.float64).reshape(B, n_out)
    ref_f = np.frombuffer(out[8 * B * n_out:], dtype=np.uint32).reshape(B, n_out)
    nan = np.isnan(ref_y)
    assert np.array_equal(np.isnan(Y), nan)
    assert np.array_equal(bits(Y[~nan]), bits(ref_y[~nan]))
    assert np.array_equal(fl, ref_f)
    if mode != "toward_zero":  # toward zero saturates at the largest value instead
        assert nan.sum() > 10 and np.all(fl[nan] & mpacc.flag.invalid)
