# SPDX-License-Identifier: MIT
# The GIL is released during long calls; repeated calls do not grow memory.
import gc
import threading
import time

import numpy as np

import mpacc


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def python_progress_during(call):
    """How far a pure-Python counting thread gets while `call` runs, relative to
    its rate when running alone over the same time."""
    state = {"n": 0, "stop": False}

    def count():
        while not state["stop"]:
            state["n"] += 1

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    n0, t0 = state["n"], time.perf_counter()
    time.sleep(0.2)  # the thread alone (the main thread sleeps, GIL free)
    rate = (state["n"] - n0) / (time.perf_counter() - t0)
    n0, t0 = state["n"], time.perf_counter()
    call()
    during = (state["n"] - n0) / (time.perf_counter() - t0)
    state["stop"] = True
    t.join()
    return during / rate


def test_gil_released_in_long_calls():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((512, 512))
    b = np.zeros(512)
    # a batch large enough that one call lasts over 0.05 s on this machine (a fast,
    # idle processor needs more rows than a loaded one)
    rows = 300
    while True:
        X = rng.standard_normal((rows, 512))
        start = time.perf_counter()
        mpacc.dense(X, W, b, acc="binary16", threads=1)
        if time.perf_counter() - start > 0.1 or rows >= 300 * 64:
            break
        rows *= 2

    def dense():
        start = time.perf_counter()
        while time.perf_counter() - start < 0.3:
            mpacc.dense(X, W, b, acc="binary16", threads=1)

    def dense_once():
        mpacc.dense(X, W, b, acc="binary16", threads=1)

    # One long call: the counting thread must run during it. With the GIL held it
    # could only run within the switch interval (5 ms) around the call.
    start = time.perf_counter()
    dense_once()
    single = time.perf_counter() - start
    assert single > 0.05, "the call is too short to tell (%.3f s)" % single
    assert python_progress_during(dense_once) > 0.25
    assert python_progress_during(dense) > 0.25


def test_no_memory_growth_under_repeated_calls():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(50_000)
    X = rng.standard_normal((20, 30))
    W = rng.standard_normal((16, 30))
    b = np.zeros(16)
    net = mpacc.Network([(W, b, "relu"), (rng.standard_normal((10, 16)), np.zeros(10), "identity")])
    labels = np.zeros(20, dtype=np.uint8)
    mpacc.register_indicator("test-mem", lambda v: np.abs(v.v_low) < 0.5, lambda v: 1.0)
    # a CNN whose simulate() results are 125 kB per array (20 x 4 x 14 x 14 doubles: 19 MB if leaked)
    cnn = mpacc.CNN((1, 16, 16), [{"type": "conv", "W": rng.standard_normal((4, 1, 3, 3)), "act": "relu"},
                                  {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
                                  {"type": "dense", "W": rng.standard_normal((3, 196))}])
    Xc = rng.standard_normal((20, 1, 16, 16))

    def work():
        y, f = mpacc.round(x, "e4m3", flags="each", threads=1)
        mpacc.round(x, "binary16", mode="stochastic", seed=3, threads=1)
        mpacc.dot(W[0], X[0], 0.5, acc="bfloat16")
        mpacc.dense(X, W, b, acc="e4m3-ieee", flags=True, threads=1)
        mpacc.simulate(net, X, "acc=bfloat16", threads=1)
        mpacc.reference(net, X[:2], bits=100, threads=1)
        mpacc.simulate(cnn, Xc, "acc=e4m3-ieee", threads=1)
        mpacc.reference(cnn, Xc[:2], bits=100, threads=1)
        cnn.layers
        p = mpacc.PrecisionConfig(mpacc.PrecisionConfig("acc=e4m3").to_dict())
        p.to_json()
        r = mpacc.MixedRunner(net, X, labels, threads=1).run("algorithm1", indicator="test-mem", keep_trace=True)
        r.logits, r.trace, r.counts
        try:
            mpacc.Format("bogus")
        except ValueError:
            pass

    for _ in range(20):
        work()
    gc.collect()
    before = rss_bytes()
    for _ in range(150):
        work()
    gc.collect()
    growth = rss_bytes() - before
    # one leaked 50,000-element array per call would be 150 * 400 kB = 60 MB
    assert growth < 8 * 2**20, "RSS grew by %.1f MB over 150 iterations" % (growth / 2**20)


def test_input_not_copied_and_not_referenced():
    import sys
    x = np.linspace(-1, 1, 1000)
    before = sys.getrefcount(x)
    for _ in range(100):
        mpacc.round(x, "e4m3")
    assert sys.getrefcount(x) == before
