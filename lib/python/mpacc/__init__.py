# SPDX-License-Identifier: MIT
"""mpacc: exact simulation of low-precision rounding and accumulation in
neural-network inference, componentwise error bounds and Algorithm 1.

A Python module over the C++ library (docs/python.md): every function computes
the same bits as the C++ call it wraps. NumPy arrays in and out.

    >>> import mpacc
    >>> mpacc.round([0.1], 'e4m3')
    array([0.1015625])
"""
from ._core import *  # noqa: F401,F403 (the extension's functions and classes)
from ._core import __version__  # noqa: F401
from . import _core

__all__ = [n for n in dir(_core) if not n.startswith("_")] + ["from_torch", "to_torch"]


def from_torch(model, input_shape=None):
    """Converts a torch.nn.Sequential of Linear layers and activations into an
    mpacc Network from its state; with input_shape=(c, h, w), one with Conv2d,
    MaxPool2d, AvgPool2d and Flatten too into an mpacc CNN (see
    mpacc.torch_interop.from_torch)."""
    from .torch_interop import from_torch as convert
    return convert(model, input_shape)


def to_torch(net, dtype=None):
    """Builds a torch.nn.Sequential computing the same function as the mpacc
    Network `net` (see mpacc.torch_interop.to_torch)."""
    from .torch_interop import to_torch as convert
    return convert(net, dtype)
