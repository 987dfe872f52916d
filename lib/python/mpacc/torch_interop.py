# SPDX-License-Identifier: MIT
"""PyTorch interop: torch.nn.Sequential <-> mpacc.Network, and -> mpacc.CNN.

from_torch reads the model's state_dict (Linear.weight is n_out x n_in, the
same layout as mpacc's W); float32 parameters become float64 exactly.
Supported modules: Linear, the activations ReLU, Tanh, Sigmoid, GELU
(approximate='none'), SiLU, LeakyReLU, Identity, and the no-ops of inference
(Flatten before the first Linear, Dropout). Anything else raises ValueError
naming the module, and so does an activation that does not follow a Linear
layer directly (mpacc layers are phi(W x + b)). With input_shape=(c, h, w):
also Conv2d, MaxPool2d, AvgPool2d and Flatten -> an mpacc.CNN (docs/cnn.md),
within the restrictions of mpacc's layers (from_torch's docstring).
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


def _tensor(state, key):
    return state[key].detach().cpu().to(torch.float64).numpy().copy()


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv(m, prefix, state, name):
    if _pair(m.dilation) != (1, 1):
        raise ValueError("from_torch: %s: dilation %s is not supported (dilation 1 only)" % (name, m.dilation))
    if m.groups != 1:
        raise ValueError("from_torch: %s: groups=%d is not supported (groups=1 only)" % (name, m.groups))
    if m.padding_mode != "zeros":
        raise ValueError("from_torch: %s: padding_mode='%s' is not supported (zeros only)" % (name, m.padding_mode))
    padding = m.padding
    if isinstance(padding, str):
        if padding != "valid":
            raise ValueError("from_torch: %s: padding='%s' is not supported (numbers or 'valid')" % (name, padding))
        padding = 0
    key = prefix + "bias"
    return {"type": "conv", "W": _tensor(state, prefix + "weight"),
            "b": _tensor(state, key) if key in state else None,
            "stride": _pair(m.stride), "padding": _pair(padding), "act": "identity", "slope": 0.01}


def _pool(m, name):
    nn = torch.nn
    if m.ceil_mode:
        raise ValueError("from_torch: %s: ceil_mode=True is not supported (floor mode only)" % name)
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1):
            raise ValueError("from_torch: %s: dilation %s is not supported (dilation 1 only)" % (name, m.dilation))
        if m.return_indices:
            raise ValueError("from_torch: %s: return_indices=True is not supported" % name)
        kind = "maxpool"
    else:
        if not m.count_include_pad:
            raise ValueError("from_torch: %s: count_include_pad=False is not supported (mpacc's average "
                             "pooling counts the padding)" % name)
        if m.divisor_override is not None:
            raise ValueError("from_torch: %s: divisor_override is not supported" % name)
        kind = "avgpool"
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None or m.stride == [] or m.stride == () else _pair(m.stride)
    return {"type": kind, "kernel": kernel, "stride": stride, "padding": _pair(m.padding)}


def _from_torch_cnn(model, input_shape):
    """torch.nn.Sequential -> mpacc.CNN on inputs of shape input_shape = (c, h, w)."""
    nn = torch.nn
    state = model.state_dict()
    layers = []  # layer dicts; "_act": an activation was attached
    for i, (prefix, m) in enumerate(_leaves(model)):
        name = "module %d '%s' (%s)" % (i, prefix[:-1], type(m).__name__)
        if isinstance(m, nn.Conv2d):
            layers.append(_conv(m, prefix, state, name))
            continue
        if isinstance(m, nn.Linear):
            key = prefix + "bias"
            layers.append({"type": "dense", "W": _tensor(state, prefix + "weight"),
                           "b": _tensor(state, key) if key in state else None, "act": "identity", "slope": 0.01})
            continue
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            layers.append(_pool(m, name))
            continue
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError("from_torch: %s: only Flatten(start_dim=1, end_dim=-1) is supported" % name)
            layers.append({"type": "flatten"})
            continue
        if isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        act = _activation(m)
        if act is None:
            raise ValueError("from_torch: %s is not supported (Conv2d, MaxPool2d, AvgPool2d, Flatten, Linear, "
                             "ReLU, Tanh, Sigmoid, GELU, SiLU, LeakyReLU, Identity, Dropout)" % name)
        if not layers or layers[-1]["type"] not in ("conv", "dense") or layers[-1].get("_act"):
            raise ValueError("from_torch: %s does not follow a Conv2d or Linear layer directly" % name)
        layers[-1]["act"], layers[-1]["slope"] = act
        layers[-1]["_act"] = True
    for l in layers:
        l.pop("_act", None)
    if not layers or layers[-1]["type"] != "dense":
        raise ValueError("from_torch: the last layer (with its activation) must be a Linear layer")
    return _core.CNN(tuple(int(v) for v in input_shape), layers)


def from_torch(model, input_shape=None):
    """Converts `model`, a torch.nn.Sequential (nested ones are flattened).

    Without input_shape: Linear layers each optionally followed by one
    activation -> an mpacc.Network. With input_shape = (c, h, w): Conv2d
    (dilation 1, groups 1, zero padding), MaxPool2d / AvgPool2d (floor mode,
    dilation 1, counting the padding), Flatten, Linear, the activations (each
    directly after a Conv2d or Linear) -> an mpacc.CNN on inputs of that shape.
    The weights and biases are the tensors of model.state_dict() (keys
    '<path>.weight', '<path>.bias'; PyTorch's layouts are mpacc's), converted
    to float64 without rounding. A layer without a following activation gets
    'identity' (the last one: the logits)."""
    if not isinstance(model, torch.nn.Sequential):
        raise ValueError("from_torch: expected a torch.nn.Sequential, got %s" % type(model).__name__)
    if input_shape is not None:
        if len(input_shape) != 3:
            raise ValueError("from_torch: input_shape must be (c, h, w), got %r" % (tuple(input_shape),))
        return _from_torch_cnn(model, input_shape)
    state = model.state_dict()
    layers = []  # [W, b, act, slope, activation given]
    for i, (prefix, m) in enumerate(_leaves(model)):
        name = "module %d '%s' (%s)" % (i, prefix[:-1], type(m).__name__)
        if isinstance(m, torch.nn.Linear):
            W = _tensor(state, prefix + "weight")
            key = prefix + "bias"
            b = _tensor(state, key) if key in state else np.zeros(W.shape[0])
            layers.append([W, b, "identity", 0.01, False])
            continue
        if isinstance(m, (torch.nn.Identity, torch.nn.Dropout)):
            continue
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            raise ValueError("from_torch: %s: a convolutional network needs input_shape=(c, h, w)" % name)
        if isinstance(m, torch.nn.Flatten):
            if layers:
                raise ValueError("from_torch: %s: Flatten after a Linear layer is not supported" % name)
            continue
        act = _activation(m)
        if act is None:
            raise ValueError("from_torch: %s is not supported (Linear, ReLU, Tanh, Sigmoid, GELU, SiLU, "
                             "LeakyReLU, Identity, Dropout, a leading Flatten; Conv2d and pooling with "
                             "input_shape)" % name)
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
