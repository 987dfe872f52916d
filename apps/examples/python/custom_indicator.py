#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A new Algorithm 1 indicator written in Python, registered like the C++ ones and
swept over tau next to the built-in 'kappa' (the Python counterpart of
apps/examples/custom_indicator.cpp).

    PYTHONPATH=build/dev/python python3 apps/examples/python/custom_indicator.py [DATA_DIR] [OUT_CSV]

The indicator 'kdot-norm' scores a component by its estimated inner-product
condition number alone, (||w_i|| ||x|| + |b_i|) / |v_low| * u_low, without the
activation's condition number. The network is a small MLP trained in PyTorch on the
first 200 MNIST test images of DATA_DIR (default: the repository's `data`, after
scripts/fetch-data.sh mnist)."""
import os
import sys

import numpy as np
import torch

import mpacc


def kdot_norm(view):
    # NumPy views of the runner's arrays (no copies); fill view.score or return an array
    xn = np.linalg.norm(view.x, axis=1)  # ||x|| per sample
    num = xn[:, None] * view.row_norms[None, :] + np.abs(view.b)[None, :]
    with np.errstate(divide="ignore"):
        return num / np.abs(view.v_low) * view.u_low


mpacc.register_indicator("kdot-norm", kdot_norm, overhead=lambda view: float(view.n_in + view.n_out))

here = os.path.dirname(os.path.abspath(__file__))
data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "data")
out_csv = sys.argv[2] if len(sys.argv) > 2 else "results/python-examples/custom_indicator.csv"
X, y = mpacc.load_dataset(data_dir, "mnist", train=False, limit=200)

torch.manual_seed(1)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
Xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
for _ in range(40):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(Xt), yt).backward()
    opt.step()

runner = mpacc.MixedRunner(mpacc.from_torch(model), X, y, precision="acc=e4m3-ieee;weights=e4m3-ieee;biases=e4m3-ieee",
                           high="binary16")
low, high = runner.run("uniform-low"), runner.run("uniform-high")
rows = [("uniform-low", 0.0, low), ("uniform-high", 0.0, high)]
for ind in ["kdot-norm", "kappa"]:
    for tau in [1.0, 0.3, 0.1, 0.03, 0.01]:
        rows.append((ind, tau, runner.run("algorithm1", indicator=ind, tau=tau)))
os.makedirs(os.path.dirname(out_csv) or ".", exist_ok=True)
with open(out_csv, "w") as f:
    f.write("indicator,tau,recomputed,accuracy,disagreements,kl_mean,weighted_cost\n")
    for ind, tau, r in rows:
        f.write("%s,%g,%.6f,%.4f,%d,%.6g,%.6f\n" % (ind, tau, r.fraction, r.accuracy, r.disagreements, r.kl_mean,
                                                 r.weighted_cost))
        print("%-12s tau %-5g recomputed %6.2f %%  accuracy %.3f  disagreements %3d  KL %.3g  cost %.3f"
              % (ind, tau, 100 * r.fraction, r.accuracy, r.disagreements, r.kl_mean, r.weighted_cost))
print("written", out_csv)
# a sanity check of the sweep: in the first layer (the same inputs for every tau) a
# smaller tau recomputes at least the components a larger one does
fr = [r.fraction_per_layer[0] for ind, tau, r in rows if ind == "kdot-norm"]
sys.exit(0 if all(a <= b for a, b in zip(fr, fr[1:])) and fr[-1] > 0 else 1)
