#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/,
small valid and invalid inputs made with the Python standard library only.
Run from the repository root: python3 tests/fuzz/make_corpus.py
"""
import gzip
import os
import shutil
import struct
import sys
import zipfile
import io
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- mpacc model files (docs/model-format.md)
def model(layers, meta=b"", version=1, crc_ok=True):
    b = b"MPACCNN\0" + struct.pack("<IIQ", version, len(layers), len(meta)) + meta
    for n_in, n_out, act, slope in layers:
        b += struct.pack("<QQBd", n_in, n_out, act, slope)
        b += b"".join(struct.pack("<d", 0.25 * (k % 7) - 0.5) for k in range(n_in * n_out))
        b += b"".join(struct.pack("<d", -0.125 * k) for k in range(n_out))
    crc = zlib.crc32(b) ^ (0 if crc_ok else 1)
    return b + struct.pack("<I", crc)


ok = model([(3, 2, 2, 0.0625), (2, 1, 0, 0.01)], b'{"note":"seed"}')
write("model", "ok", ok)
write("model", "ok_one_layer", model([(1, 1, 5, 0.0)]))
write("model", "bad_crc", model([(3, 2, 1, 0.0)], crc_ok=False))
write("model", "truncated", ok[:60])
write("model", "no_chain", model([(3, 2, 1, 0.0), (3, 1, 0, 0.0)]))
write("model", "version2", model([(1, 1, 0, 0.0)], version=2))


# --- convolutional networks' model files (version 2, docs/model-format.md)
def cnn_model(chw, layers, meta=b"", crc_ok=True):
    b = b"MPACCNN\0" + struct.pack("<IIQ", 2, len(layers), len(meta)) + meta
    b += struct.pack("<QQQ", *chw)
    for kind, dims, act, n_weights, n_bias in layers:
        b += struct.pack("<B", kind) + b"".join(struct.pack("<Q", d) for d in dims)
        if act is not None:
            b += struct.pack("<Bd", act, 0.01)
        b += b"".join(struct.pack("<d", 0.25 * (k % 5) - 0.5) for k in range(n_weights))
        b += b"".join(struct.pack("<d", 0.125 * k) for k in range(n_bias))
    crc = zlib.crc32(b) ^ (0 if crc_ok else 1)
    return b + struct.pack("<I", crc)


# 1x6x6 -> conv 1->2 3x3 p1 relu -> maxpool 2 -> avgpool 3 s3 (2x1x1) -> flatten -> dense 2x3
cnn_ok = cnn_model((1, 6, 6), [
    (1, (1, 6, 6, 2, 3, 3, 1, 1, 1, 1), 1, 18, 2),
    (2, (2, 6, 6, 2, 2, 2, 2, 0, 0), None, 0, 0),
    (3, (2, 3, 3, 3, 3, 3, 3, 1, 1), None, 0, 0),
    (4, (2, 1, 1), None, 0, 0),
    (0, (2, 3), 0, 6, 3)], b'{"note":"seed"}')
write("cnn_model", "ok", cnn_ok)
write("cnn_model", "bad_crc", cnn_model((1, 1, 1), [(0, (1, 1), 0, 1, 1)], crc_ok=False))
write("cnn_model", "truncated", cnn_ok[:90])
write("cnn_model", "mlp_version1", ok)
write("cnn_model", "no_chain", cnn_model((1, 4, 4), [(4, (1, 4, 4), None, 0, 0), (0, (15, 2), 0, 30, 2)]))


# --- vision transformers' model files (version 3, docs/model-format.md)
def vit_model(blocks, image, patch, d, heads, hidden, classes, eps=1e-5, meta=b"", crc_ok=True):
    b = b"MPACCNN\0" + struct.pack("<IIQ", 3, blocks, len(meta)) + meta
    b += struct.pack("<QQQQQQd", image, patch, d, heads, hidden, classes, eps)
    tokens = (image // patch) ** 2 + 1

    def values(n, scale=0.125):
        return b"".join(struct.pack("<d", scale * (k % 5) - 0.25) for k in range(n))

    b += values(d * patch * patch) + values(d) + values(d) + values(tokens * d)
    for _ in range(blocks):
        b += values(2 * d)  # ln1
        b += (values(d * d) + values(d)) * 4  # q, k, v, proj
        b += values(2 * d)  # ln2
        b += values(hidden * d) + values(hidden) + values(d * hidden) + values(d)
    b += values(2 * d) + values(classes * d) + values(classes)
    crc = zlib.crc32(b) ^ (0 if crc_ok else 1)
    return b + struct.pack("<I", crc)


vit_ok = vit_model(1, 4, 2, 4, 2, 6, 3, meta=b'{"note":"seed"}')
write("vit_model", "ok", vit_ok)
write("vit_model", "two_blocks", vit_model(2, 2, 1, 2, 1, 2, 2))
write("vit_model", "bad_crc", vit_model(1, 2, 2, 1, 1, 1, 1, crc_ok=False))
write("vit_model", "truncated", vit_ok[:120])
write("vit_model", "heads_not_dividing", vit_model(1, 2, 1, 3, 2, 2, 2))
write("vit_model", "cnn_version2", cnn_ok)


# --- .npy / .npz
# the .npy writer of the committed test fixture (tests/data/make_npz_fixture.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from make_npz_fixture import npy  # noqa: E402


net = {
    "W1.npy": npy("<f4", (2, 3), [1, 2, 3, 4, 5, 6]),
    "b1.npy": npy("<f4", (2,), [0.5, -0.5]),
    "W2.npy": npy("<f8", (1, 2), [0.25, 0.75], fortran=True),
    "b2.npy": npy("<f8", (1,), [-1.0]),
}


def npz(members, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return buf.getvalue()


class _Unseekable(io.RawIOBase):
    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def npz_numpy_style(members, stream):
    """As numpy.savez writes: zipfile.open(..., force_zip64=True), i.e. ZIP64 local
    headers; to a stream also data descriptors (CRC 0 in the local header)."""
    buf = _Unseekable() if stream else io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:
                f.write(data)
    return bytes(buf.buf) if stream else buf.getvalue()


def packed(members, deflate=False):
    """The target's member-list mode: [u8 name length][name][u16 data length][data]..."""
    b = bytes([3 if deflate else 1])
    for name, data in members.items():
        n = name.encode()
        b += bytes([len(n)]) + n + struct.pack("<H", len(data)) + data
    return b


# even first byte: the archive as is
write("npz", "stored", b"\0" + npz(net, zipfile.ZIP_STORED))
write("npz", "deflated", b"\0" + npz(net, zipfile.ZIP_DEFLATED))
write("npz", "one_layer", b"\0" + npz({"W1": net["W2.npy"], "b1": net["b2.npy"]}, zipfile.ZIP_STORED))
write("npz", "numpy_zip64", b"\0" + npz_numpy_style(net, stream=False))
write("npz", "numpy_stream", b"\0" + npz_numpy_style(net, stream=True))
write("npz", "not_zip", b"\0PK\5\6 not really")
# odd first byte: members packed by the target with correct CRCs
write("npz", "packed", packed(net))
write("npz", "packed_deflated", packed(net, deflate=True))

# a vision transformer's timm-named arrays (first byte bit 2: io::parse_npz_vit, 1 head):
# image 2, patch 1 (4 patches, 5 tokens), d 2, 1 block, MLP width 3, 2 classes
def vit_arrays():
    d, T, h, c = 2, 5, 3, 2
    a = {"patch_embed.proj.weight": ((d, 1, 1, 1), [0.5, -0.25]), "patch_embed.proj.bias": ((d,), [0.0, 0.1]),
         "cls_token": ((1, 1, d), [0.2, -0.2]), "pos_embed": ((1, T, d), [0.01 * i for i in range(T * d)]),
         "blocks.0.norm1.weight": ((d,), [1.0, 1.0]), "blocks.0.norm1.bias": ((d,), [0.0, 0.0]),
         "blocks.0.attn.qkv.weight": ((3 * d, d), [0.1 * i for i in range(3 * d * d)]),
         "blocks.0.attn.qkv.bias": ((3 * d,), [0.0] * (3 * d)),
         "blocks.0.attn.proj.weight": ((d, d), [1.0, 0.0, 0.0, 1.0]), "blocks.0.attn.proj.bias": ((d,), [0.0, 0.0]),
         "blocks.0.norm2.weight": ((d,), [1.0, 1.0]), "blocks.0.norm2.bias": ((d,), [0.0, 0.0]),
         "blocks.0.mlp.fc1.weight": ((h, d), [0.3] * (h * d)), "blocks.0.mlp.fc1.bias": ((h,), [0.0] * h),
         "blocks.0.mlp.fc2.weight": ((d, h), [-0.3] * (h * d)), "blocks.0.mlp.fc2.bias": ((d,), [0.0] * d),
         "norm.weight": ((d,), [1.0, 1.0]), "norm.bias": ((d,), [0.0, 0.0]),
         "head.weight": ((c, d), [1.0, -1.0, -1.0, 1.0]), "head.bias": ((c,), [0.0, 0.0])}
    return {k + ".npy": npy("<f8", shape, v) for k, (shape, v) in a.items()}


vit_net = vit_arrays()
write("npz", "vit_stored", b"\4" + npz(vit_net, zipfile.ZIP_STORED))
write("npz", "vit_packed", bytes([5]) + packed(vit_net)[1:])
write("npz", "vit_missing", bytes([5]) + packed({k: v for k, v in vit_net.items() if "fc2.bias" not in k})[1:])
gap = dict(net)
gap["W4.npy"] = npy("<f8", (1, 1), [1.0])
write("npz", "packed_gap", packed(gap))
extra = dict(net)
extra["arr_0.npy"] = npy("<f8", (1,), [1.0])
write("npz", "packed_extra", packed(extra))
bad_shape = dict(net)
bad_shape["W1.npy"] = npy("<f4", (4294967296, 4294967296), [], fortran=True)
write("npz", "packed_big_shape", packed(bad_shape))
v2 = dict(net)
v2["b1.npy"] = b"\x93NUMPY\x02\x00" + struct.pack("<I", 54) + b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n"[:54] + struct.pack("<2d", 1, 2)
write("npz", "packed_v2", packed(v2))


# --- IDX (raw or gzip)
def idx(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(k * 7 % 256 for k in range(payload))


write("idx", "images", idx((3, 2, 2), 12))
write("idx", "labels", idx((3,), 3))
write("idx", "images_gz", gzip.compress(idx((3, 2, 2), 12), mtime=0))
write("idx", "labels_gz", gzip.compress(idx((5,), 5), mtime=0))
write("idx", "gz_trailing", gzip.compress(idx((2,), 2), mtime=0) + b"xx")
write("idx", "zero_images", idx((0, 28, 28), 0))
write("idx", "truncated", idx((3, 2, 2), 7))
write("idx", "wrapping_dims", idx((8, 2 ** 31, 2 ** 30), 0))
write("idx", "bad_type", bytes([0, 0, 0x0d, 1, 0, 0, 0, 1]) + b"\0\0\0\0")


# --- sweep configurations (JSON text): the shipped ones and variants
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "apps", "configs")
for name in sorted(os.listdir(CONFIGS)):
    if name.endswith(".json"):
        with open(os.path.join(CONFIGS, name), "rb") as f:
            write("config", name[:-5], f.read())
write("config", "empty_object", b"{}")
write("config", "full", b"""{
  "name": "full", "networks": [
    {"dataset": "fashion-mnist", "act": "tanh", "hidden": [128, 64], "indicators": ["kappa"]},
    {"dataset": "mnist", "act": "gelu", "model": "m.mpnn"}],
  "samples": 0, "taus": [0, 0.5, 1e-3], "indicators": ["kappa", "kprime"],
  "baselines": ["oracle-pre", "random"], "seeds": 2,
  "orders": ["recursive", "pairwise", "blocked:16"], "order_indicators": {"pairwise": ["kappa"], "recursive": []},
  "low": "p=5,emin=-6,emax=7", "high": "bfloat16", "product": "binary16", "rounding": "stochastic",
  "saturate": false, "via": "binary32", "input_format": "binary16", "act_format": "e5m2",
  "reference_inputs": "exact", "tile_rows": 16, "tile_samples": 4, "epochs": 1, "train_limit": 100,
  "seed": 18446744073709551615, "diagnostics": false, "models_dir": "m", "out": "o", "data_dir": "d",
  "term_cost": {"p=5,emin=-6,emax=7": 5.5, "bfloat16": 16}
}""")
write("config", "bad_unknown_nested", b'{"networks": [{"dataset": "mnist", "colour": 1}]}')
write("config", "bad_duplicate_tau", b'{"taus": [0.1, 0.1]}')
write("config", "bad_samples", b'{"samples": -5}')
write("config", "bad_null", b"null")
write("config", "bad_cost", b'{"term_cost": {"binary16": 0}}')
write("config", "bad_order_indicators", b'{"orders": ["blocked:8"], "order_indicators": {"recursive": ["kappa"]}}')
write("config", "bad_syntax", b'{"taus": [0.1,')


# --- result rows of sweep shards (one line; the columns of csv_header())
ROWS = [
    b"mnist-relu,blocked:8,algorithm1,kprime-companion,0.1,0,1000,978,0.978,0.96660466,0.98567193,12,0.012,"
    b"0.0068741,0.020823,0.0012,0.021,1.5e-05,0.00031,0.0021,2e-05,0.00042,0.0031,0.00011,0.25,10.5,11,"
    b"0.3;0.1,uniform-low,3,1,0.625",
    b"fashion-mnist-tanh-h128x128,recursive,uniform-low,,0,0,10000,8512,0.8512,0.84414,0.85798,0,0,0,0.00038,"
    b"0,0,0,0,0,0,0,0,0,0,8,8,0;0,,0,0,1",
    b"mnist-gelu,pairwise,random-active,kappa-norm,inf,4,0,0,nan,0,1,0,nan,0,1,nan,nan,nan,nan,nan,inf,-inf,"
    b"nan,nan,1,16,16,1,algorithm1,18446744073709551615,0,5e-324",
]
for k, row in enumerate(ROWS):
    write("row", "row%d" % k, row)
write("row", "empty_layers", ROWS[0].replace(b"0.3;0.1", b""))
write("row", "bad_fields", ROWS[0].rsplit(b",", 1)[0])
write("row", "bad_counts", ROWS[0].replace(b",978,", b",1978,"))
write("row", "bad_name", ROWS[0].replace(b"mnist-relu", b"mnist relu"))


# --- number tokens: [format << 4 | saturate << 3 | mode][token] (fuzz_token.cpp)
TOKENS = [
    (0x00, b"1.5"), (0x00, b"0.1"), (0x20, b"65520"), (0x20, b"65519.99999999999999999999999"),
    (0x21, b"1.0001"), (0x25, b"1.0001"), (0x26, b"1.0001"), (0x2B, b"1e6"), (0x00, b"-1e-400"),
    (0x03, b"1e-400"), (0x00, b"0x1.8p3"), (0x10, b"0x1.000001p0"), (0x00, b"-0x.8P-1"), (0x00, b"nan"),
    (0x60, b"-inf"), (0x68, b"Infinity"), (0x00, b"4.9406564584124654e-324"),
    (0x00, b"2.2250738585072011e-308"), (0x00, b"1.7976931348623158e308"), (0x00, b"1e309"),
    (0x00, b"0.1000000000000000055511151231257827021181583404541015625"), (0x50, b"-0"),
    (0xB4, b"3.25"), (0xF0, b"12345678901234567890123456789012345678901234567890"), (0x00, b"abc"),
    (0x00, b"1.5x"), (0x00, b"0x"), (0x00, b"."), (0x00, b"+.5e+2"), (0xC3, b"1e-320"),
]
for k, (sel, tok) in enumerate(TOKENS):
    write("token", "token%02d" % k, bytes([sel]) + tok)


# long decimals next to binary64 midpoints: the exact decimal of a midpoint, a hair
# above and below it (strtod and the MPFR path must agree on every digit)
def exact_decimal(num, den_pow2):
    """num / 2**den_pow2 written out exactly (it terminates)."""
    from decimal import Decimal, getcontext
    getcontext().prec = 2000
    return format(Decimal(num) / (Decimal(2) ** den_pow2), "f")


for k, (num, p2) in enumerate([(2 ** 53 + 1, 53), (1, 1075), (3, 1075), (2 ** 54 - 1, 1075 + 53 - 1023 - 54)]):
    mid = exact_decimal(num, p2).encode()
    write("token", "midpoint%d" % k, b"\x00" + mid)
    write("token", "midpoint%d_above" % k, b"\x00" + mid + b"000000000000000000001")
    below = exact_decimal(num, p2)
    write("token", "midpoint%d_below" % k, b"\x00" + (below[:-1] + str(int(below[-1]) - 1)).encode() + b"999999999")
