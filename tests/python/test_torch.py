# SPDX-License-Identifier: MIT
# PyTorch interop: a torch.nn.Sequential trained in PyTorch (on the 200 real MNIST
# test images of MNIST, fetched by scripts/fetch-data.sh: a few seconds) converted with
# mpacc.from_torch; mpacc's binary32 pass agrees with torch's float32 forward within
# binary32 rounding, and the simulated e4m3 pass runs through Algorithm 1.
import numpy as np
import pytest

import mpacc

torch = pytest.importorskip("torch", reason="python3-torch is not installed (scripts/install-deps.sh installs it)")

U32 = 2.0 ** -24


def gamma(n, u=U32):
    return n * u / (1 - n * u)


@pytest.fixture(scope="module")
def trained(mnist_subset):
    X, y = mnist_subset
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    Xt = torch.from_numpy(X.astype(np.float32)).reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(Xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    return model, X, y


def test_from_torch_layers(trained):
    model, _, _ = trained
    net = mpacc.from_torch(model)
    assert net.arch == "784-64-32-10"
    assert net.activations == ["relu", "tanh", "identity"]
    W, b, act, _ = net.layer(0)
    assert np.array_equal(W, model[1].weight.detach().numpy().astype(np.float64))
    assert np.array_equal(b, model[1].bias.detach().numpy().astype(np.float64))
    back = mpacc.to_torch(net)
    again = mpacc.from_torch(back)
    for k in range(3):
        assert all(np.array_equal(a, c) for a, c in zip(net.layer(k)[:2], again.layer(k)[:2]))


def test_binary32_pass_agrees_with_torch(trained):
    model, X, y = trained
    net = mpacc.from_torch(model)
    x32 = X.astype(np.float32).astype(np.float64)  # the inputs torch sees
    p = mpacc.PrecisionConfig({"weights": "none", "biases": "none", "inputs": "binary32", "acc": "binary32",
                               "act": "binary32"})
    layers = mpacc.simulate(net, x32, p)
    # layer by layer, on the same inputs: both are binary32 accumulations of the same
    # terms (torch in its own order, possibly with FMAs), so each is within
    # gamma_{n+1}(2^-24) (|W||x| + |b|) of the exact value, and they differ by at most twice that
    x = x32
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    acts = {0: torch.relu, 1: torch.tanh, 2: lambda t: t}
    for k, lin in enumerate(linears):
        W, b, _, _ = net.layer(k)
        with torch.no_grad():
            vt = lin(torch.from_numpy(x.astype(np.float32))).double().numpy()
        v = layers[k]["v"]
        bound = 2 * gamma(W.shape[1] + 1) * (np.abs(x) @ np.abs(W).T + np.abs(b))
        assert np.all(np.abs(v - vt) <= bound), "layer %d" % (k + 1)
        x = layers[k]["y"]  # the next layer's inputs: mpacc's binary32 outputs
        with torch.no_grad():  # torch's activation of mpacc's v agrees within one binary32 rounding
            yt = acts[k](torch.from_numpy(v.astype(np.float32))).double().numpy()
        assert np.all(np.abs(x - yt) <= 4 * U32 * np.abs(yt) + 2.0 ** -149)
    # end to end: the same predictions wherever the top two logits are apart
    with torch.no_grad():
        lt = model(torch.from_numpy(X.astype(np.float32)).reshape(-1, 1, 28, 28)).double().numpy()
    lm = layers[-1]["y"]
    top2 = np.sort(lt, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3
    assert np.array_equal(lm.argmax(axis=1)[clear], lt.argmax(axis=1)[clear])
    assert clear.sum() >= 150
    assert (lm.argmax(axis=1) == y).mean() > 0.9  # the model did learn its training images


def test_e4m3_pass_through_algorithm1(trained):
    model, X, y = trained
    net = mpacc.from_torch(model)
    precision = {"acc": "e4m3-ieee", "weights": "e4m3-ieee", "biases": "e4m3-ieee", "order": "blocked:8"}
    runner = mpacc.MixedRunner(net, X, y, precision=precision, high="binary16")
    low = runner.run("uniform-low")
    high = runner.run("uniform-high")
    alg = runner.run("algorithm1", indicator="kappa", tau=0.1, keep_trace=True)
    assert low.fraction == 0 and high.fraction == 1
    assert 0 < alg.fraction < 1
    for k, t in enumerate(alg.trace):
        want = ~(t["score"] <= 0.1)  # recompute where score > tau or NaN
        assert np.array_equal(t["recomputed"].astype(bool), want), "layer %d" % (k + 1)
    # the extremes of tau reproduce the uniform runs bit for bit
    never = runner.run("algorithm1", indicator="kappa", tau=np.inf)
    always = runner.run("algorithm1", indicator="kappa", tau=-1.0)
    assert np.array_equal(never.logits.view(np.uint64), low.logits.view(np.uint64))
    assert np.array_equal(always.logits.view(np.uint64), high.logits.view(np.uint64))
    # (no assertion that the mixed pass is closer to the reference than the uniform low
    # one: that is the method's aim, not a theorem, and the torch-trained model may differ
    # between processors)
    assert 0 <= alg.disagreements <= alg.samples and np.isfinite(alg.kl_mean)
    random = runner.run("random-active", counts=alg)
    assert [c.sum() for c in random.counts] == [c.sum() for c in alg.counts]


def test_from_torch_rejects_what_it_cannot_convert():
    nn = torch.nn
    with pytest.raises(ValueError, match="Conv2d"):
        mpacc.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    with pytest.raises(ValueError, match="does not follow a Linear"):
        mpacc.from_torch(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh()))
    with pytest.raises(ValueError, match="does not follow a Linear"):
        mpacc.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="approximate"):
        mpacc.from_torch(nn.Sequential(nn.Linear(3, 2), nn.GELU(approximate="tanh")))
    with pytest.raises(ValueError, match="Sequential"):
        mpacc.from_torch(nn.Linear(3, 2))
    # nested Sequentials, no bias, leaky ReLU's slope, Dropout
    m = nn.Sequential(nn.Sequential(nn.Linear(3, 4, bias=False), nn.LeakyReLU(0.125)), nn.Dropout(0.5),
                      nn.Linear(4, 2))
    net = mpacc.from_torch(m)
    assert net.arch == "3-4-2" and net.activations == ["leaky-relu", "identity"]
    W, b, act, slope = net.layer(0)
    assert slope == 0.125 and np.all(b == 0)
    assert np.array_equal(W, m.state_dict()["0.0.weight"].double().numpy())
