# SPDX-License-Identifier: MIT
# Vision transformers in Python (mpacc.ViT): a PyTorch ViT whose modules carry timm's
# VisionTransformer names (patch_embed.proj, cls_token, pos_embed, blocks.i.norm1,
# attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, norm, head) saved with numpy.savez,
# imported with ViT.from_npz: mpacc's binary64 pass agrees with torch's float64 forward
# (the layouts of q, k, v, heads, patches and positions are right); model files round
# trip; validate on a tiny random ViT finds no violation and does not depend on the chunk.
import numpy as np
import pytest

import mpacc

torch = pytest.importorskip("torch", reason="python3-torch is not installed (scripts/install-deps.sh installs it)")
nn = torch.nn


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):  # timm's: reshape (B, N, 3, heads, d_head), softmax(q k^T / sqrt(d_head)) v
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, heads)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, d):
        super().__init__()
        self.proj = nn.Conv2d(1, d, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, image=8, patch=4, d=8, heads=2, depth=2, hidden=12, classes=3, eps=1e-6):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, d)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.5)
        self.blocks = nn.Sequential(*[Block(d, heads, hidden, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=eps)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@pytest.fixture(scope="module")
def torch_vit():
    torch.manual_seed(3)
    model = ViT().double()
    with torch.no_grad():  # layer norms off their defaults too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def save_npz(model, path):
    np.savez(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def test_from_npz_matches_torch_float64(torch_vit, tmp_path):
    path = tmp_path / "vit.npz"
    save_npz(torch_vit, path)
    net = mpacc.ViT.from_npz(str(path), heads=2, eps=1e-6)
    assert net.arch == "vit8p4-d8-h2-b2-m12-c3"
    assert (net.image, net.patch, net.d, net.heads, net.hidden, net.classes, net.blocks) == (8, 4, 8, 2, 12, 3, 2)
    assert net.product_layer_names[4] == "block1.scores"
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 2, size=(6, 8, 8))
    with torch.no_grad():
        want = torch_vit(torch.from_numpy(X).reshape(6, 1, 8, 8)).numpy()
    exact = "acc=binary64;order=recursive;act=binary64;inputs=binary64;weights=none;biases=none"
    got = mpacc.simulate(net, X, exact)
    assert [l["name"] for l in got][-1] == "head"
    logits = got[-1]["y"]
    assert logits.shape == (6, 3)
    err = np.max(np.abs(logits - want) / np.maximum(np.abs(want), 1e-3))
    assert err < 1e-12, err
    # the wrong number of heads or epsilon gives another function: the test can tell
    other = mpacc.simulate(mpacc.ViT.from_npz(str(path), heads=4, eps=1e-6), X, exact)[-1]["y"]
    assert np.max(np.abs(other - want)) > 1e-6
    # flattened images give the same bits; a file round trip keeps every bit
    flat = mpacc.simulate(net, X.reshape(6, 64), exact)[-1]["y"]
    assert np.array_equal(flat.view(np.uint64), logits.view(np.uint64))
    net.save(str(tmp_path / "vit.mpnn"))
    again = mpacc.simulate(mpacc.ViT.load(str(tmp_path / "vit.mpnn")), X, "acc=e4m3-ieee;act=bfloat16")
    first = mpacc.simulate(net, X, "acc=e4m3-ieee;act=bfloat16")
    for a, b in zip(first, again):
        assert np.array_equal(a["y"].view(np.uint64), b["y"].view(np.uint64)), a["name"]


def test_malformed_npz_is_one_error(torch_vit, tmp_path):
    arrays = {k: v.detach().cpu().numpy() for k, v in torch_vit.state_dict().items()}
    bad = dict(arrays)
    del bad["blocks.1.attn.qkv.bias"]
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(RuntimeError, match=r"no array blocks\.1\.attn\.qkv\.bias"):
        mpacc.ViT.from_npz(str(tmp_path / "missing.npz"), heads=2)
    bad = dict(arrays)
    bad["head.weight"] = bad["head.weight"].T.copy()
    np.savez(tmp_path / "shape.npz", **bad)
    # the classes are read from head.weight's first dimension: 8 of width 3, where d = 8
    with pytest.raises(RuntimeError, match=r"head\.weight has shape \(8, 3\), expected \(8, 8\)"):
        mpacc.ViT.from_npz(str(tmp_path / "shape.npz"), heads=2)
    bad = dict(arrays)
    bad["norm.bias"] = bad["norm.bias"].astype(np.int32)
    np.savez(tmp_path / "dtype.npz", **bad)
    with pytest.raises(RuntimeError, match=r"norm\.bias.*dtype"):
        mpacc.ViT.from_npz(str(tmp_path / "dtype.npz"), heads=2)
    bad = dict(arrays)
    bad["cls_token"] = bad["cls_token"].copy()
    bad["cls_token"][0, 0, 1] = np.inf
    np.savez(tmp_path / "inf.npz", **bad)
    with pytest.raises(RuntimeError, match=r"class token: cls holds a non-finite value"):
        mpacc.ViT.from_npz(str(tmp_path / "inf.npz"), heads=2)


def test_validate_tiny_vit_in_chunks(torch_vit, tmp_path):
    path = tmp_path / "vit.npz"
    save_npz(torch_vit, path)
    net = mpacc.ViT.from_npz(str(path), heads=2)
    X = np.random.default_rng(8).uniform(0, 1, size=(5, 64))
    p = "acc=e4m3-ieee;order=blocked:4;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16"
    r1 = mpacc.validate(net, X, p, chunk=1, threads=1)
    r5 = mpacc.validate(net, X, p, chunk=0, threads=2)
    assert r1.violations == 0 and r5.violations == 0
    assert len(r1.layers) == net.blocks * 8 + 2  # every inner-product layer (the total apart)
    block = 3 * 5 * 8 + 2 * 5 * 5 + 5 * 8 + 5 * 8 + 5 * 12 + 5 * 8  # q k v, scores, mix, proj, fc1, fc2
    assert r1.total["components"] == 5 * (4 * 8 + 2 * block + 3)  # embed, 2 blocks, head
    for a, b in zip(r1.layers, r5.layers):
        assert a == b
