# SPDX-License-Identifier: MIT
# C++ exceptions reach Python as Python exceptions carrying the C++ message.
import numpy as np
import pytest

import mpacc


def test_unknown_format_message():
    with pytest.raises(ValueError) as e:
        mpacc.round([1.0], "e9m9")
    # the message of sim::parse_format, unchanged
    try:
        mpacc.Format("e9m9")
    except ValueError as direct:
        assert str(e.value) == str(direct)
    assert "e9m9" in str(e.value)


def test_messages_are_the_cpp_ones():
    cases = [
        (lambda: mpacc.round([1.0], "e4m3", mode="sideways"), "sideways"),
        (lambda: mpacc.dot([1.0], [1.0], order="blocked:0"), "blocked:0"),
        (lambda: mpacc.PrecisionConfig({"acc": "e4m3", "colour": "red"}), "colour"),
        (lambda: mpacc.PrecisionConfig("acc=nope"), "nope"),
        (lambda: mpacc.Format(p=60, emin=-10, emax=10), "p"),
        (lambda: mpacc.Network([(np.ones((3, 4)), np.zeros(3), "relu"), (np.ones((2, 5)), np.zeros(2), "identity")]),
         "layer 2"),
        (lambda: mpacc.Network([(np.ones((3, 4)), np.zeros(3), "swish")]), "swish"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError) as e:
            call()
        assert needle in str(e.value), str(e.value)


def test_parse_errors_match_the_cli(tmp_path):
    # the same C++ function's message through the command line and through Python
    import os
    import subprocess
    cli = os.path.join(os.path.dirname(os.environ["MPACC_ORACLE"]), "..", "apps", "mpacc")
    r = subprocess.run([cli, "round", "--format", "e9m9"], input=b"1\n", capture_output=True)
    assert r.returncode == 2
    with pytest.raises(ValueError) as e:
        mpacc.Format("e9m9")
    assert str(e.value) in r.stderr.decode(), (str(e.value), r.stderr.decode())


def test_missing_data_is_a_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match="fetch-data"):
        mpacc.load_dataset(str(tmp_path), "mnist")


def test_bad_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        mpacc.dot([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="columns"):
        mpacc.dense(np.ones((2, 3)), np.ones((4, 5)), np.zeros(4))
    with pytest.raises(ValueError, match="out"):
        mpacc.round(np.ones(4), "e4m3", out=np.ones(3))
    with pytest.raises(ValueError, match="out"):
        mpacc.round(np.ones(4), "e4m3", out=np.ones(4, dtype=np.float32))


def test_python_indicator_exception_propagates():
    rng = np.random.default_rng(0)
    net = mpacc.Network([(rng.standard_normal((5, 4)), np.zeros(5), "relu"),
                         (rng.standard_normal((3, 5)), np.zeros(3), "identity")])
    X = rng.standard_normal((6, 4))

    def broken(view):
        raise ZeroDivisionError("the indicator's own message")

    mpacc.register_indicator("test-broken", broken)
    runner = mpacc.MixedRunner(net, X, np.zeros(6, dtype=np.uint8))
    with pytest.raises(ZeroDivisionError, match="the indicator's own message"):
        runner.run("algorithm1", indicator="test-broken")
    mpacc.register_indicator("test-wrong-size", lambda view: np.zeros(3))
    with pytest.raises(ValueError, match="test-wrong-size"):
        runner.run("algorithm1", indicator="test-wrong-size")
    with pytest.raises(ValueError, match="unknown indicator 'nope'"):
        runner.run("algorithm1", indicator="nope")
    # the runner still works afterwards
    assert runner.run("uniform-low").samples == 6


def test_view_outlives_call_is_an_error():
    rng = np.random.default_rng(0)
    net = mpacc.Network([(rng.standard_normal((5, 4)), np.zeros(5), "identity")])
    kept = []

    def keep(view):
        kept.append(view)
        view.score[:] = 0

    mpacc.register_indicator("test-keep", keep)
    mpacc.MixedRunner(net, rng.standard_normal((3, 4)), np.zeros(3)).run("algorithm1", indicator="test-keep")
    with pytest.raises(RuntimeError, match="after the indicator call"):
        kept[0].v_low
