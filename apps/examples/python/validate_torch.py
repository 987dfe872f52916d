#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Validate a PyTorch model: train a small torch.nn.Sequential on MNIST images,
convert it with mpacc.from_torch, and check the componentwise error bounds of its
simulated e4m3 and binary16 passes on every component (`mpacc validate` on arrays).

    PYTHONPATH=build/dev/python python3 apps/examples/python/validate_torch.py [DATA_DIR] [N]

DATA_DIR holds mnist/ (default: the repository's `data`, after scripts/fetch-data.sh
mnist); the first N test images are used (default 200).
Exits 3 if a deterministic bound is violated (which would be a bug)."""
import os
import sys

import numpy as np
import torch

import mpacc

here = os.path.dirname(os.path.abspath(__file__))
data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "data")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
X, y = mpacc.load_dataset(data_dir, "mnist", train=False, limit=n)

torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
Xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
for _ in range(40):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(Xt), yt).backward()
    opt.step()

net = mpacc.from_torch(model)
print("network", net.arch, "from", type(model).__name__, "with", len(X), "images")
status = 0
for acc in ["e4m3-ieee", "binary16"]:
    p = mpacc.PrecisionConfig({"acc": acc, "weights": "e4m3-ieee", "biases": "e4m3-ieee", "order": "blocked:8"})
    r = mpacc.validate(net, X, p, bits=120)
    t = r.total
    print("%-10s components %d  violations %d  uncovered %d  error/bound q50 %.3g max %.3g  kappa_dot median %.3g"
          % (acc, t["components"], r.violations, t["uncovered"], t["err_over_bound_y"]["q50"],
             t["err_over_bound_y"]["max"], t["kappa_dot_median"]))
    c = r.components
    print("           first image, logits: simulated", np.array2string(c["y_sim"][0, -10:], precision=3))
    print("                                reference", np.array2string(c["y_ref"][0, -10:], precision=3))
    if r.violations:
        status = 3
sys.exit(status)
