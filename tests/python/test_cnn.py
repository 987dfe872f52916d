# SPDX-License-Identifier: MIT
# Convolutional networks in Python (mpacc.CNN, docs/python.md): the layer
# descriptions, model files, the passes against the C++ oracle and against the
# MLP path, validate, and mpacc.from_torch on a torch.nn.Sequential with
# convolutions and pooling.
import copy

import numpy as np
import pytest

import mpacc
from conftest import bits

RNG = np.random.default_rng(17)


def small_cnn(rng=RNG):
    """1x12x12 -> conv 1->3 k3 p1 relu -> maxpool2 -> conv 3->4 k3 s1 tanh -> avgpool2 p1 -> flatten -> dense 10."""
    return mpacc.CNN((1, 12, 12), [
        {"type": "conv", "W": rng.normal(0, 0.5, (3, 1, 3, 3)), "b": rng.normal(0, 0.1, 3), "act": "relu",
         "padding": 1},
        {"type": "maxpool", "kernel": 2},
        {"type": "conv", "W": rng.normal(0, 0.3, (4, 3, 3, 3)), "b": None, "act": "tanh"},
        {"type": "avgpool", "kernel": 2, "padding": 1},
        {"type": "flatten"},
        {"type": "dense", "W": rng.normal(0, 0.3, (10, 36)), "b": rng.normal(0, 0.1, 10)},
    ])


def test_cnn_description_round_trip(tmp_path):
    net = small_cnn()
    assert net.arch == "1x12x12,conv1x3k3p1-relu,maxpool2,conv3x4k3-tanh,avgpool2p1x1,flatten,dense36x10"
    assert net.input_shape == (1, 12, 12) and net.inputs == 144 and net.outputs == 10 and len(net) == 6
    assert net.output_shapes == [(3, 12, 12), (3, 6, 6), (4, 4, 4), (4, 3, 3), (36, 1, 1), (10, 1, 1)]
    layers = net.layers
    assert [l["type"] for l in layers] == ["conv", "maxpool", "conv", "avgpool", "flatten", "dense"]
    assert layers[0]["W"].shape == (3, 1, 3, 3) and layers[0]["padding"] == (1, 1) and layers[0]["act"] == "relu"
    assert layers[1]["stride"] == (2, 2) and layers[3]["padding"] == (1, 1)
    assert np.array_equal(layers[2]["b"], np.zeros(4))  # b=None: zeros
    again = mpacc.CNN(net.input_shape, layers)
    assert again.arch == net.arch
    path = str(tmp_path / "small.mpcnn")
    net.save(path)
    loaded = mpacc.CNN.load(path)
    assert loaded.arch == net.arch
    for a, b in zip(net.layers, loaded.layers):
        for key in ("W", "b"):
            if key in a:
                assert np.array_equal(bits(a[key]), bits(b[key]))


def test_cnn_errors():
    W = np.ones((2, 1, 3, 3))
    dense = {"type": "dense", "W": np.ones((3, 2 * 4 * 4))}
    with pytest.raises(ValueError, match="layer 1: unknown type 'pool'"):
        mpacc.CNN((1, 6, 6), [{"type": "pool", "kernel": 2}, dense])
    with pytest.raises(ValueError, match="layer 1: missing key 'W'"):
        mpacc.CNN((1, 6, 6), [{"type": "conv"}, dense])
    with pytest.raises(ValueError, match="layer 1: conv2d: kernel 9x9 larger than the padded input"):
        mpacc.CNN((1, 6, 6), [{"type": "conv", "W": np.ones((2, 1, 9, 9))}, dense])
    with pytest.raises(ValueError, match="layer 2: pool2d: padding 2x2 more than half the window"):
        mpacc.CNN((1, 6, 6), [{"type": "conv", "W": W}, {"type": "maxpool", "kernel": 2, "padding": 2}, dense])
    with pytest.raises(ValueError, match="layer 1: the convolution takes 2x6x6 inputs, it gets 1x6x6"):
        mpacc.CNN((1, 6, 6), [{"type": "conv", "W": np.ones((2, 2, 3, 3))}, dense])
    with pytest.raises(ValueError, match="layer 2: a dense layer needs a flat input"):
        mpacc.CNN((1, 6, 6), [{"type": "conv", "W": W}, dense])
    with pytest.raises(ValueError, match="the last layer must be dense"):
        mpacc.CNN((1, 6, 6), [{"type": "conv", "W": W}])
    net = mpacc.CNN((1, 6, 6), [{"type": "conv", "W": W}, {"type": "flatten"}, dense])
    with pytest.raises(ValueError, match="X has 35 columns for a network of 36 inputs"):
        mpacc.simulate(net, np.zeros((2, 35)))
    with pytest.raises(ValueError, match="X: samples of shape 1x6x5 for a network on 1x6x6 inputs"):
        mpacc.reference(net, np.zeros((2, 1, 6, 5)))


def test_simulate_equals_the_cpp_pass(oracle, tmp_path):
    # the bindings' pass (4-D and 2-D batches) bit for bit against the C++ oracle
    # running nn::simulate(cnn) on the model file CNN.save wrote
    net = small_cnn(np.random.default_rng(3))
    path = str(tmp_path / "m.mpcnn")
    net.save(path)
    X = np.random.default_rng(4).normal(0, 1, (5, 1, 12, 12))
    for precision in ("acc=e4m3-ieee", "acc=binary16;rounding=stochastic;seed=9;act=bfloat16"):
        got = mpacc.simulate(net, X, precision)
        flat = mpacc.simulate(net, X.reshape(5, -1), precision)
        out = oracle(["cnn", path, precision], np.array([5, 144], dtype=np.uint64).tobytes() + X.tobytes())
        assert np.frombuffer(out[:8], dtype=np.uint64)[0] == len(net)
        pos = 8
        for k, layer in enumerate(got):
            n = int(np.frombuffer(out[pos:pos + 8], dtype=np.uint64)[0])
            pos += 8
            shape = net.output_shapes[k]
            assert n == shape[0] * shape[1] * shape[2] and layer["y"].shape == (5, n)
            v = np.frombuffer(out[pos:pos + 40 * n], dtype=np.float64).reshape(5, n)
            y = np.frombuffer(out[pos + 40 * n:pos + 80 * n], dtype=np.float64).reshape(5, n)
            fl = np.frombuffer(out[pos + 80 * n:pos + 100 * n], dtype=np.uint32).reshape(5, n)
            pos += 100 * n
            assert np.array_equal(bits(layer["v"]), bits(v)), (precision, k)
            assert np.array_equal(bits(layer["y"]), bits(y)), (precision, k)
            assert np.array_equal(layer["flags"], fl), (precision, k)
            assert np.array_equal(bits(layer["y"]), bits(flat[k]["y"]))
        assert pos == len(out)
    # max pooling picks an input of its window: 'where' indexes the layer's input
    first = got[0]["y"]
    assert np.array_equal(got[1]["y"], np.take_along_axis(first, got[1]["where"].astype(np.int64), axis=1))


def test_dense_only_cnn_is_the_mlp_path(mnist_subset):
    # a CNN of dense layers on 784x1x1 inputs computes nn::simulate(mlp) bit for bit
    X = mnist_subset[0][:40]
    rng = np.random.default_rng(5)
    mlp_layers = [(rng.normal(0, 0.05, (32, 784)), rng.normal(0, 0.1, 32), "relu"),
                  (rng.normal(0, 0.2, (10, 32)), rng.normal(0, 0.1, 10), "identity")]
    mlp = mpacc.Network(mlp_layers)
    cnn = mpacc.CNN((784, 1, 1), [{"type": "dense", "W": W, "b": b, "act": a} for W, b, a in mlp_layers])
    for precision in ("acc=e4m3-ieee", "acc=bfloat16;rounding=stochastic;seed=4;act=e5m2"):
        a, c = mpacc.simulate(mlp, X, precision), mpacc.simulate(cnn, X, precision)
        for k in range(2):
            for key in ("v", "y"):
                assert np.array_equal(bits(a[k][key]), bits(c[k][key])), (precision, k, key)
            assert np.array_equal(a[k]["flags"], c[k]["flags"])
            assert np.array_equal(a[k]["act_flags"], c[k]["act_flags"])
    ra, rc = mpacc.reference(mlp, X[:5], bits=100), mpacc.reference(cnn, X[:5], bits=100)
    for k in range(2):
        for key in ("v", "y", "y_lo", "y_bound"):
            assert np.array_equal(bits(ra[k][key]), bits(rc[k][key]))


# ---- PyTorch


@pytest.fixture(scope="module")
def torch_cnn():
    torch = pytest.importorskip("torch", reason="python3-torch is not installed")
    torch.manual_seed(1)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, stride=(1, 2), bias=False), nn.ReLU(), nn.AvgPool2d(2, padding=1),
                          nn.Flatten(), nn.Linear(6 * 7 * 4, 10))
    model.eval()
    return torch, model


def test_from_torch_cnn_layers(torch_cnn):
    torch, model = torch_cnn
    net = mpacc.from_torch(model, input_shape=(1, 28, 28))
    assert isinstance(net, mpacc.CNN)
    assert net.arch == ("1x28x28,conv1x4k3p1-relu,maxpool2,conv4x6k3s1x2-relu,avgpool2p1x1,flatten,"
                        "dense168x10")
    layers = net.layers
    assert np.array_equal(layers[0]["W"], model[0].weight.detach().double().numpy())
    assert np.array_equal(layers[0]["b"], model[0].bias.detach().double().numpy())
    assert np.array_equal(layers[2]["b"], np.zeros(6))  # bias=False
    assert np.array_equal(layers[5]["W"], model[7].weight.detach().double().numpy())


def test_reference_agrees_with_torch_float64(torch_cnn, mnist_subset):
    # mpacc's reference pass (200 bits, rounded to binary64) against torch's float64
    # forward on the 200 MNIST test images, layer by layer: torch's only errors are its
    # own binary64 roundings, at most gamma_n(2^-53) |W||x| for an inner product of n
    # terms and ~2^-52 |y| for tanh-free layers, far below the stated 1e-13 relative bound (observed: 5e-16)
    torch, model = torch_cnn
    X = mnist_subset[0]
    net = mpacc.from_torch(model, input_shape=(1, 28, 28))
    ref = mpacc.reference(net, X.reshape(-1, 1, 28, 28))
    m64 = copy.deepcopy(model).double()
    groups = [(0, 2), (2, 3), (3, 5), (5, 6), (6, 7), (7, 8)]  # torch modules of each mpacc layer
    with torch.no_grad():
        t = torch.from_numpy(X.reshape(-1, 1, 28, 28))
        for k, (lo, hi) in enumerate(groups):
            t = m64[lo:hi](t)
            yt = t.reshape(len(X), -1).numpy()
            y = ref[k]["y"]
            assert y.shape == yt.shape, k
            scale = np.max(np.abs(yt))
            assert np.max(np.abs(y - yt)) <= 1e-13 * scale, "layer %d" % (k + 1)
        # the argmax of the logits is the same wherever the top two are apart
        assert np.array_equal(np.argmax(ref[-1]["y"], axis=1), np.argmax(yt, axis=1))


def test_e4m3_pass_and_validate(torch_cnn, mnist_subset):
    torch, model = torch_cnn
    X = mnist_subset[0][:16]
    net = mpacc.from_torch(model, input_shape=(1, 28, 28))
    p = "acc=e4m3-ieee;saturate=on"
    sim = mpacc.simulate(net, X, p)
    assert len(sim) == 6 and sim[-1]["y"].shape == (16, 10)
    assert np.any(sim[0]["flags"] != 0)  # e4m3 accumulation rounds
    r = mpacc.validate(net, X, p)
    assert r.violations == 0
    assert len(r.layers) == 6  # every component of every layer checked, pooling and flatten too
    assert r.total["components"] == 16 * sum(c * h * w for c, h, w in net.output_shapes)
    assert [l["violations_v"] + l["violations_y"] + l["local_violations"] for l in r.layers] == [0] * 6


@pytest.mark.parametrize("module, match", [
    ("Conv2d(1, 2, 3, dilation=2)", r"module 0 '0' \(Conv2d\): dilation \(2, 2\) is not supported"),
    ("Conv2d(2, 2, 3, groups=2)", r"module 0 '0' \(Conv2d\): groups=2 is not supported"),
    ("Conv2d(1, 2, 3, padding='same')", r"module 0 '0' \(Conv2d\): padding='same' is not supported"),
    ("Conv2d(1, 2, 3, padding=1, padding_mode='reflect')", r"padding_mode='reflect' is not supported"),
    ("MaxPool2d(2, ceil_mode=True)", r"module 0 '0' \(MaxPool2d\): ceil_mode=True is not supported"),
    ("MaxPool2d(3, dilation=2)", r"module 0 '0' \(MaxPool2d\): dilation 2 is not supported"),
    ("AvgPool2d(2, padding=1, count_include_pad=False)", r"\(AvgPool2d\): count_include_pad=False"),
    ("AvgPool2d(2, divisor_override=3)", r"\(AvgPool2d\): divisor_override is not supported"),
    ("BatchNorm2d(1)", r"module 0 '0' \(BatchNorm2d\) is not supported"),
    ("Flatten(0)", r"module 0 '0' \(Flatten\): only Flatten\(start_dim=1, end_dim=-1\)"),
])
def test_from_torch_cnn_refuses(torch_cnn, module, match):
    torch, _ = torch_cnn
    nn = torch.nn
    model = nn.Sequential(eval("nn." + module))
    with pytest.raises(ValueError, match=match):
        mpacc.from_torch(model, input_shape=(2 if "groups" in module else 1, 8, 8))


def test_from_torch_cnn_structure_errors(torch_cnn):
    torch, _ = torch_cnn
    nn = torch.nn
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))
    with pytest.raises(ValueError, match=r"module 0 '0' \(Conv2d\): a convolutional network needs input_shape"):
        mpacc.from_torch(conv)
    with pytest.raises(ValueError, match=r"input_shape must be \(c, h, w\)"):
        mpacc.from_torch(conv, input_shape=(8, 8))
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))
    with pytest.raises(ValueError, match=r"module 2 '2' \(ReLU\) does not follow a Conv2d or Linear layer"):
        mpacc.from_torch(pooled, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="the last layer .* must be a Linear layer"):
        mpacc.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="layer 3 takes 18 inputs, it gets 72"):  # C++ shape check
        mpacc.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 3)), input_shape=(1, 8, 8))


@pytest.mark.parametrize("indicator,tau", [("kprime-companion", 0.5), ("kappa-norm", 0.3), ("kappa", 0.2)])
def test_cnn_algorithm1_decisions(oracle, tmp_path, indicator, tau):
    # CnnMixedRunner against the C++ oracle running analysis::cnn_mixed_runner on the saved model:
    # the recomputed components of every layer and the logits, bit for bit
    net = small_cnn(np.random.default_rng(5))
    path = str(tmp_path / "m.mpcnn")
    net.save(path)
    rng = np.random.default_rng(6)
    X = rng.normal(0, 1, (30, 1, 12, 12))
    labels = rng.integers(0, 10, size=30).astype(np.uint8)
    precision = "acc=e4m3-ieee;saturate=on"
    runner = mpacc.CnnMixedRunner(net, X, labels, precision=precision, high="binary16")
    r = runner.run("algorithm1", indicator=indicator, tau=tau, keep_trace=True)
    out = oracle(["cnnalg1", path, precision, "binary16", indicator, tau],
                 np.array([30, 144], dtype=np.uint64).tobytes() + X.tobytes() + labels.tobytes())
    L = int(np.frombuffer(out[:8], dtype=np.uint64)[0])
    assert L == len(net) == len(r.trace)
    pos = 8
    for k in range(L):
        n = int(np.frombuffer(out[pos:pos + 8], dtype=np.uint64)[0])
        pos += 8
        mask = np.frombuffer(out[pos:pos + n], dtype=np.uint8)
        pos += n
        assert np.array_equal(np.asarray(r.trace[k]["recomputed"]).reshape(-1), mask), (indicator, k)
    logits = np.frombuffer(out[pos:], dtype=np.float64).reshape(30, 10)
    assert np.array_equal(bits(r.logits), bits(logits))
    assert 0 < r.fraction < 1


def test_cnn_runner_uniform_and_baselines():
    net = small_cnn(np.random.default_rng(7))
    X = np.random.default_rng(8).normal(0, 1, (20, 1, 12, 12))
    precision = "acc=e4m3-ieee;saturate=on"
    runner = mpacc.CnnMixedRunner(net, X, None, precision=precision)
    assert runner.samples == 20
    # uniform low is the simulated CNN pass; the 2-D form of X gives the same runner
    low = runner.run("uniform-low")
    assert np.array_equal(bits(low.logits), bits(mpacc.simulate(net, X, precision)[-1]["y"]))
    flat = mpacc.CnnMixedRunner(net, X.reshape(20, -1), None, precision=precision)
    assert np.array_equal(bits(flat.run("uniform-low").logits), bits(low.logits))
    assert low.fraction == 0 and runner.run("uniform-high").fraction == 1
    # tau = +inf recomputes nothing, -inf everything
    assert np.array_equal(bits(runner.run("algorithm1", indicator="kprime", tau=np.inf).logits), bits(low.logits))
    assert runner.run("algorithm1", indicator="kprime", tau=-np.inf).fraction == 1
    # a matched baseline recomputes as many components per (layer, sample) as Algorithm 1
    a = runner.run("algorithm1", indicator="kprime-companion", tau=0.5)
    for sel in ("random", "random-active", "oracle-local"):
        b = runner.run(sel, counts=a, seed=3)
        for cb, ca in zip(b.counts, a.counts, strict=True):
            # random-active chooses among the active components only: capped by their number
            assert np.array_equal(cb, ca) if sel != "random-active" else np.all(cb <= ca), sel
        assert b.fraction <= a.fraction + 1e-15
    with pytest.raises(ValueError, match="counts"):
        runner.run("random")
    with pytest.raises(ValueError, match="shape 1x10x10"):
        mpacc.CnnMixedRunner(net, np.zeros((2, 1, 10, 10)), None)
