# SPDX-License-Identifier: MIT
# The Python surface: docstrings that explain every argument, the precision
# configuration's round trips, formats, networks.
import json
import pickle
import re

import numpy as np
import pytest

import mpacc


@pytest.mark.parametrize("fn", [mpacc.round, mpacc.dot, mpacc.dense])
def test_docstrings_explain_every_argument(fn):
    doc = fn.__doc__
    signature = doc.splitlines()[0]
    names = re.findall(r"(\w+):", signature[signature.index("(") + 1: signature.rindex(")")])
    assert len(names) >= 3
    body = doc[doc.index("Arguments:"):]
    for name in names:
        # each argument has its own entry, or shares a line of entries ("w, x:", "acc, mode, ...:")
        assert re.search(r"^\s+(\w+, )*%s(, \w+)*:" % name, body, re.M), "%s: argument '%s' not explained" % (
            fn.__name__, name)


def test_precision_config_round_trips():
    p = mpacc.PrecisionConfig("acc=e4m3-ieee,binary16;order=blocked:8;saturate=on;weights=none;"
                              "rounding=stochastic;seed=7;act=bfloat16;via=binary32")
    d = p.to_dict()
    assert d["acc"] == ["e4m3-ieee", "binary16"] and d["order"] == "blocked:8" and d["weights"] == "none"
    assert mpacc.PrecisionConfig(d) == p
    assert mpacc.PrecisionConfig(p.to_json()) == p
    assert mpacc.PrecisionConfig(json.dumps(d)) == p
    assert mpacc.PrecisionConfig(p.to_string()) == p
    assert pickle.loads(pickle.dumps(p)) == p
    assert p.weights is None and p.biases == mpacc.Format("e4m3-ieee") and p.via.name == "binary32"
    q = mpacc.PrecisionConfig(p)
    q.acc = ["binary16"]
    q.rounding = "toward_zero"
    q.weights = "bfloat16"
    q.set_map(2, 1, ["e4m3-ieee", "binary16", "e4m3-ieee"])
    assert q != p and p.acc == [mpacc.Format("e4m3-ieee"), mpacc.Format("binary16")]
    d = q.to_dict()
    assert d["acc"] == "binary16" or d["acc"] == ["binary16"]
    assert d["rounding"] == "toward-zero" and d["weights"] == "bfloat16"
    assert mpacc.PrecisionConfig(d) == q
    with pytest.raises(ValueError, match="e9"):
        q.act = "e9"


def test_formats():
    table = mpacc.formats()
    assert list(table)[:2] == ["binary64", "binary32"]
    e4 = mpacc.Format("e4m3")
    assert (e4.p, e4.emin, e4.emax, e4.max_finite, e4.has_inf) == (4, -6, 8, 448.0, False)
    assert e4 == table["e4m3"] and e4.unit_roundoff == 2.0 ** -4 and e4.name == "e4m3"
    custom = mpacc.Format(p=5, emin=-7, emax=8)
    assert custom == mpacc.Format("p=5,emin=-7,emax=8") and custom.max_finite == (2 - 2 ** -4) * 2 ** 8
    assert pickle.loads(pickle.dumps(e4)) == e4
    assert len({mpacc.Format("e4m3"), mpacc.Format("e4m3"), mpacc.Format("bfloat16")}) == 2
    assert mpacc.flags_to_string(mpacc.flag.inexact | mpacc.flag.overflow) == "inexact,overflow"


def test_network_and_passes(tmp_path):
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((6, 5)), rng.standard_normal(6), "relu"),
              (rng.standard_normal((3, 6)), rng.standard_normal(3), "identity")]
    net = mpacc.Network(layers)
    assert net.arch == "5-6-3" and len(net) == 2 and net.inputs == 5 and net.outputs == 3
    path = str(tmp_path / "n.mpnn")
    net.save(path)
    back = mpacc.Network.load(path)
    for k in range(2):
        for a, b in zip(net.layer(k)[:2], back.layer(k)[:2]):
            assert np.array_equal(a, b)
    X = rng.standard_normal((4, 5))
    exact = mpacc.reference(net, X, exact=True)
    assert all(np.all(l["v_bound"] == 0) for l in exact)  # ReLU network: exact values
    fast = mpacc.fast_reference(net, X)
    assert np.all(np.abs(fast[1]["y"] - exact[1]["y"]) <= fast[1]["y_bound"])
    b64 = {"weights": "none", "biases": "none", "inputs": "binary64", "acc": "binary64", "act": "binary64"}
    sim = mpacc.simulate(net, X, b64)
    # binary64 accumulation (the MPFR path) is within its bound of the exact value
    W0, b0, _, _ = net.layer(0)
    for s in range(4):
        for i in range(6):
            r = mpacc.dot(W0[i], X[s], b0[i], acc="binary64")
            assert r.value == sim[0]["v"][s, i]
            assert abs(r.value - exact[0]["v"][s, i]) <= r.bound
    v = mpacc.validate(net, X, "acc=bfloat16;weights=none;biases=none", bits=100, component_samples=2)
    assert v.violations == 0 and v.total["components"] == 4 * 9
    assert v.components["v_sim"].shape == (2, 9)
    assert len(v.layers) == 2
