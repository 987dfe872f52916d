# SPDX-License-Identifier: MIT
"""PyTorch interop: torch.nn.Sequential <-> mpacc.Network.

from_torch reads the model's state_dict (Linear.weight is n_out x n_in, the
same layout as mpacc's W); float32 parameters become float64 exactly.
Supported modules: Linear, the activations ReLU, Tanh, Sigmoid, GELU
(approximate='none'), SiLU, LeakyReLU, Identity, and the no-ops of inference
(Flatten before the first Linear, Dropout). Anything else raises ValueError
naming the module, and so does an activation that does not follow a Linear
layer directly (mpacc layers are phi(W x + b)).
"""
import numpy as np
import torch

from . import _core


def _activation(module):
    nn = torch.nn
    if isinstance(module, nn.ReLU):
        return ("relu", 0.01)
    if isinstance(module, nn.Tanh):
        return ("tanh", 0.01)
    if isinstance(module, nn.Sigmoid):
        return ("sigmoid", 0.01)
    if isinstance(module, nn.SiLU):
        return ("silu", 0.01)
    if isinstance(module, nn.GELU):
        if getattr(module, "approximate", "none") != "none":
            raise ValueError("from_torch: GELU(approximate='%s') is not supported (mpacc's GELU is the exact erf form)"
                             % module.approximate)
        return ("gelu", 0.01)
    if isinstance(module, nn.LeakyReLU):
        return ("leaky-relu", float(module.negative_slope))
    return None


def _leaves(model, prefix=""):
    """(state_dict key prefix, module) of the leaf modules of nested Sequentials, in order."""
    if isinstance(model, torch.nn.Sequential):
        out = []
        for name, m in model.named_children():
            out.extend(_leaves(m, prefix + name + "."))
        return out
    return [(prefix, model)]


def from_torch(model):
    """Converts `model`, a torch.nn.Sequential (nested ones are flattened) of
    Linear layers each optionally followed by one activation, into an
    mpacc.Network. The weights and biases are the tensors of
    model.state_dict() (keys '<path>.weight', '<path>.bias'), converted to
    float64 without rounding. A Linear layer without a following activation
    gets 'identity' (the last one: the logits)."""
    if not isinstance(model, torch.nn.Sequential):
        raise ValueError("from_torch: expected a torch.nn.Sequential, got %s" % type(model).__name__)
    state = model.state_dict()
    layers = []  # [W, b, act, slope, activation given]
    for i, (prefix, m) in enumerate(_leaves(model)):
        name = "module %d '%s' (%s)" % (i, prefix[:-1], type(m).__name__)
        if isinstance(m, torch.nn.Linear):
            W = state[prefix + "weight"].detach().cpu().to(torch.float64).numpy().copy()
            key = prefix + "bias"
            b = state[key].detach().cpu().to(torch.float64).numpy().copy() if key in state else np.zeros(W.shape[0])
            layers.append([W, b, "identity", 0.01, False])
            continue
        if isinstance(m, (torch.nn.Identity, torch.nn.Dropout)):
            continue
        if isinstance(m, torch.nn.Flatten):
            if layers:
                raise ValueError("from_torch: %s: Flatten after a Linear layer is not supported" % name)
            continue
        act = _activation(m)
        if act is None:
            raise ValueError("from_torch: %s is not supported (Linear, ReLU, Tanh, Sigmoid, GELU, SiLU, "
                             "LeakyReLU, Identity, Dropout, a leading Flatten)" % name)
        if not layers or layers[-1][4]:
            raise ValueError("from_torch: %s does not follow a Linear layer directly" % name)
        layers[-1][2], layers[-1][3] = act
        layers[-1][4] = True
    if not layers:
        raise ValueError("from_torch: the model has no Linear layer")
    return _core.Network([tuple(l[:4]) for l in layers])


def to_torch(net, dtype=None):
    """A torch.nn.Sequential of Linear layers and activations computing the
    function of the mpacc Network `net`, with parameters of `dtype`
    (default torch.float64: the weights exactly; torch.float32 rounds them)."""
    dtype = torch.float64 if dtype is None else dtype
    modules = []
    for k in range(len(net)):
        W, b, act, slope = net.layer(k)
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        modules.append(lin)
        if act == "identity":
            continue
        modules.append({"relu": lambda: torch.nn.ReLU(), "tanh": lambda: torch.nn.Tanh(),
                        "sigmoid": lambda: torch.nn.Sigmoid(), "gelu": lambda: torch.nn.GELU(),
                        "silu": lambda: torch.nn.SiLU(),
                        "leaky-relu": lambda: torch.nn.LeakyReLU(slope)}[act]())
    return torch.nn.Sequential(*modules)
