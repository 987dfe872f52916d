#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/data/tiny.npz and tests/data/tiny_deflated.npz: the arrays a
3-4-2 MLP saved with numpy.savez / numpy.savez_compressed would hold, made with
the standard library only (zipfile + the .npy format) so that no NumPy is
needed here. W1 is float32 (3 -> 4, C order), b1 float32, W2 float64 in
Fortran order, b2 float64. The values are small dyadic numbers so the test can
state them exactly: W1[i][j] = (i + 1) * 0.25 - j * 0.5, b1[i] = -0.125 * i,
W2[i][j] = 0.5 ** (i + j), b2 = [1.0, -2.0].

Run from the repository root: python3 tests/data/make_npz_fixture.py
"""
import struct
import zipfile


def npy(descr, shape, values, fortran=False):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, "True" if fortran else "False",
        ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    # pad so that magic + 4 + header is a multiple of 64, ending with '\n'
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    fmt = {"<f4": "<f", "<f8": "<d"}[descr]
    body = b"".join(struct.pack(fmt, v) for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + body



def main():
    W1 = [[(i + 1) * 0.25 - j * 0.5 for j in range(3)] for i in range(4)]
    b1 = [-0.125 * i for i in range(4)]
    W2 = [[0.5 ** (i + j) for j in range(4)] for i in range(2)]
    b2 = [1.0, -2.0]

    members = {
        "W1.npy": npy("<f4", (4, 3), [v for row in W1 for v in row]),
        "b1.npy": npy("<f4", (4,), b1),
        # Fortran order: column-major values
        "W2.npy": npy("<f8", (2, 4), [W2[i][j] for j in range(4) for i in range(2)], fortran=True),
        "b2.npy": npy("<f8", (2,), b2),
    }
    for name, method in (("tests/data/tiny.npz", zipfile.ZIP_STORED), ("tests/data/tiny_deflated.npz", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(name, "w", compression=method) as z:
            for member, data in members.items():
                info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                z.writestr(info, data)


if __name__ == "__main__":
    main()
