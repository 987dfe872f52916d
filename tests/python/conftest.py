# SPDX-License-Identifier: MIT
# Shared fixtures of the Python tests (run by the CTest test `python`, which sets
# PYTHONPATH to the build's package, MPACC_ORACLE to the C++ oracle program and
# MPACC_TEST_DATA to tests/data and MPACC_DATA to the data folder of scripts/fetch-data.sh,
# which the test command runs first for MNIST).
import os
import struct
import subprocess

import numpy as np
import pytest

import mpacc


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("%s is not set: run these tests through ctest (test 'python')" % name)
    return value


@pytest.fixture(scope="session")
def oracle():
    """Runs the C++ oracle (tests/python/oracle.cpp): oracle(args, bytes) -> bytes."""
    path = _env("MPACC_ORACLE")

    def run(args, data):
        r = subprocess.run([path] + [str(a) for a in args], input=data, capture_output=True, check=False)
        if r.returncode != 0:
            raise RuntimeError("oracle %s failed: %s" % (args, r.stderr.decode()))
        return r.stdout

    return run


@pytest.fixture(scope="session")
def test_data():
    return _env("MPACC_TEST_DATA")


@pytest.fixture(scope="session")
def mnist_subset(test_data):
    """The first 200 MNIST test images (fetched by scripts/fetch-data.sh), normalized as mpacc does."""
    X, y = mpacc.load_dataset(_env("MPACC_DATA"), "mnist", train=False, limit=200)
    assert X.shape == (200, 784) and y.shape == (200,)
    return X, y


def bits(a):
    """The binary64 encodings, to compare arrays bit for bit (NaN payloads, signed zeros)."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def u64(*values):
    return struct.pack("<%dQ" % len(values), *values)
