"""Export round trip: QViT → ViTArtifact → save/load → qann_forward equals an integer reference
computed here, in torch int64, from the PyTorch model's own parameters (softmax and LayerNorm from
``equispike.model.intops``, the one definition). Also: the SNN equals the QANN, per-step logits,
fake-quant tracking, artifact errors."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch

from equispike.model.artifact import ArtifactError, load_artifact, save_artifact
from equispike.model.intops import (
    LayerNormParams,
    SoftmaxParams,
    int_layernorm,
    int_softmax,
    layernorm_eps_term,
    softmax_constant,
)
from equispike.model.vit import ViTSNN, qann_forward
from equispike.quant.data import load_split
from equispike.quant.evaluate import run_snn
from equispike.quant.export import export_artifact
from equispike.quant.qvit import QViT, ViTConfig, patchify_torch

torch.set_num_threads(1)


def assert_equal(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    if len(bad):
        i = tuple(int(j) for j in bad[0])
        raise AssertionError(f"{what}: {len(bad)}/{got.size} mismatches; first at {i}: "
                             f"got {got[i]}, want {want[i]}")


@pytest.fixture(scope="module")
def data():
    return load_split()


def make_model(data, seed: int = 0, levels: int = 16, R: int = 8, **kw) -> QViT:
    """A small QViT with non-trivial LN/bias/embedding parameters and calibrated steps."""
    torch.manual_seed(seed)
    cfg = ViTConfig(dim=kw.get("dim", 16), depth=kw.get("depth", 2), heads=kw.get("heads", 2),
                    mlp_ratio=2, levels=levels, residual_bits=R)
    m = QViT(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("step"):
                continue
            if "ln" in name or name.startswith("norm."):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(p))
            elif name.endswith("bias") or name in ("cls", "pos"):
                p.copy_(0.3 * torch.randn_like(p))
    m.calibrate(torch.as_tensor(data.x_train[:128]))
    m.eval()
    return m


# ------------------------------------------------------------------------------------------------
# the integer reference, from the torch model's parameters
# ------------------------------------------------------------------------------------------------
def rhu(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x.double() + 0.5).long()


def int_weight(lin, per_channel: bool = True):
    w = lin.weight.detach().double()
    s = (w.abs().amax(dim=1) if per_channel else w.abs().max().expand(w.shape[0])) / 127
    W = torch.clamp(rhu(w / s[:, None]), -127, 127)
    return W, s


def quant(A: torch.Tensor, theta: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    theta = torch.clamp(theta, min=1)
    return torch.clamp(torch.div(A + theta // 2, theta, rounding_mode="floor"), qn, qp)


def integer_reference(m: QViT, images: np.ndarray):
    """Integer codes of every site and the logits, with torch int64 linears."""
    cfg = m.cfg
    R, K, P, PS = cfg.residual_bits, 16, 10, 12
    u_r = 2.0**-R
    s = {k: float(q.step.detach()) for k, q in m.sites().items()}
    S = m.sites()
    codes = {}

    def site(name, A, unit):
        th = rhu(torch.as_tensor(s[name] / np.asarray(unit, dtype=np.float64)))
        codes[name] = quant(A, th.reshape(-1) if th.dim() else th, S[name].qn, S[name].qp)
        return codes[name]

    def lin(x, layer, s_in, per_channel=True):
        W, sw = int_weight(layer, per_channel)
        u = sw * s_in
        return x @ W.T + rhu(layer.bias.detach().double() / u), u.numpy()

    def ln(x, mod):
        G = rhu(mod.weight.detach().double() * 2**K).numpy()
        B = rhu(mod.bias.detach().double() * 2**P).numpy()
        E = layernorm_eps_term(mod.eps, cfg.dim, u_r)
        return torch.as_tensor(int_layernorm(x.numpy(), G, B, LayerNormParams(E=E, K=K, P=P)))

    def M(name):
        return max(1, int(math.floor(s[name] / u_r + 0.5)))

    x = patchify_torch(torch.as_tensor(images, dtype=torch.int64), cfg.patch)
    A, u = lin(x, m.patch_embed, 1 / 16)
    n = site("patch_embed", A, u)
    B_, D, H = x.shape[0], cfg.dim, cfg.heads
    res = rhu(m.pos.detach().double() / u_r).expand(B_, -1, -1).clone()
    res[:, 0] += rhu(m.cls.detach().double() / u_r)
    res[:, 1:] += n * M("patch_embed")

    def heads(t):
        return t.reshape(B_, -1, H, D // H).transpose(1, 2)

    for i, b in enumerate(m.blocks):
        p = f"blocks.{i}."
        n1 = site(p + "norm1", ln(res, b.ln1), 2.0**-P)
        A, u = lin(n1, b.qkv, s[p + "norm1"])
        nq = site(p + "q", A[..., :D], u[:D])
        nk = site(p + "k", A[..., D : 2 * D], u[D : 2 * D])
        nv = site(p + "v", A[..., 2 * D :], u[2 * D :])
        z = heads(nq) @ heads(nk).transpose(-1, -2)
        C = softmax_constant(s[p + "q"] * s[p + "k"] / math.sqrt(cfg.head_dim))
        att = torch.as_tensor(int_softmax(z.numpy(), SoftmaxParams(C=C, P=PS)))
        na = site(p + "attn", att, 2.0**-PS)
        o = (na @ heads(nv)).transpose(1, 2).reshape(B_, -1, D)
        naa = site(p + "after_attn", o, s[p + "attn"] * s[p + "v"])
        A, u = lin(naa, b.proj, s[p + "after_attn"])
        res = res + site(p + "proj", A, u) * M(p + "proj")
        n2 = site(p + "norm2", ln(res, b.ln2), 2.0**-P)
        A, u = lin(n2, b.fc1, s[p + "norm2"])
        h = site(p + "fc1", A, u)
        A, u = lin(h, b.fc2, s[p + "fc1"])
        res = res + site(p + "fc2", A, u) * M(p + "fc2")
    nf = site("norm", ln(res, m.norm), 2.0**-P)
    logits, _ = lin(nf[:, 0], m.head, s["norm"], per_channel=False)
    return {k: v.numpy() for k, v in codes.items()}, logits.numpy()


@pytest.mark.parametrize("levels,R,depth", [(16, 8, 2), (8, 10, 1), (32, 8, 1)])
def test_export_round_trip_matches_integer_reference(tmp_path, data, levels, R, depth):
    m = make_model(data, seed=levels, levels=levels, R=R, depth=depth)
    art = export_artifact(m)
    path = save_artifact(art, tmp_path / "m.esa")
    back = load_artifact(path)
    assert back.residual_R == R and back.sites["norm"].levels == levels
    x = data.x_test[:48]
    q = qann_forward(back, x)
    codes, logits = integer_reference(m, x)
    assert sorted(codes) == sorted(q.codes)
    for name in codes:  # network order: the first mismatching site is reported
        assert_equal(q.codes[name], codes[name], f"site {name}")
    assert_equal(q.logits, logits, "logits")
    assert len(np.unique(q.logits.argmax(-1))) > 1 or levels == 8  # not a degenerate model


def test_export_is_byte_reproducible_and_keeps_meta(tmp_path, data):
    m = make_model(data, seed=3)
    a = save_artifact(export_artifact(m, meta={"note": "x"}), tmp_path / "a.esa").read_bytes()
    b = save_artifact(export_artifact(m, meta={"note": "x"}), tmp_path / "b.esa").read_bytes()
    assert a == b
    art = load_artifact(tmp_path / "a.esa")
    assert art.meta["note"] == "x" and art.meta["model_config"]["dim"] == 16
    assert set(art.meta["site_steps"]) == set(art.sites)


def test_snn_equals_qann_and_per_step_logits(data):
    m = make_model(data, seed=5, depth=1)
    art = export_artifact(m)
    x = data.x_test[:24]
    q = qann_forward(art, x)
    ev = run_snn(art, x, t_max=2048, chunk=16)
    assert (ev.settle_step >= 0).all()
    assert_equal(ev.logits, q.logits, "SNN logits vs QANN logits")
    for T in (1, 3, 9):  # logits after T steps == a run stopped at T
        r = ViTSNN(art).run(x, t_max=T)
        assert_equal(ev.step_logits[T - 1], r.logits, f"step logits at T={T}")


def test_fake_quant_tracks_integer_codes(data):
    """The fake-quant forward mirrors the integer semantics: the first sites agree almost always,
    and predictions mostly agree (differences come only from bias/LN/softmax rounding)."""
    m = make_model(data, seed=7, depth=1)
    art = export_artifact(m)
    x = data.x_test[:64]
    for q in m.sites().values():
        q.record = True
    with torch.no_grad():
        out = m(torch.as_tensor(x))
    q = qann_forward(art, x)
    pe = float(np.mean(m.patch_q.last_codes.numpy() == q.codes["patch_embed"]))
    n1 = float(np.mean(m.blocks[0].norm1.last_codes.numpy() == q.codes["blocks.0.norm1"]))
    agree = float(np.mean(out.argmax(-1).numpy() == q.logits.argmax(-1)))
    print(f"patch_embed code agreement {pe:.4f}, norm1 {n1:.4f}, prediction agreement {agree:.3f}")
    assert pe > 0.99 and n1 > 0.95 and agree > 0.8


def test_export_errors(tmp_path, data):
    m = QViT(ViTConfig(dim=16, depth=1, heads=2))
    with pytest.raises(ArtifactError, match="not initialized"):
        export_artifact(m)
    m = make_model(data, depth=1)
    with torch.no_grad():
        m.blocks[0].q.step.fill_(float("nan"))
    with pytest.raises(ArtifactError, match="blocks.0.q"):
        export_artifact(m)
    good = save_artifact(export_artifact(make_model(data, depth=1)), tmp_path / "g.esa")
    bad = tmp_path / "bad.esa"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="not a zip"):
        load_artifact(bad)
    # a tensor of the wrong shape: the error names it
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(tmp_path / "s.esa", "w") as zout:
        for n in zin.namelist():
            blob = zin.read(n)
            if n == "head.bias.npy":
                import io

                buf = io.BytesIO()
                np.save(buf, np.zeros(3, dtype=np.int64))
                blob = buf.getvalue()
            zout.writestr(n, blob)
    with pytest.raises(ArtifactError, match="head.bias"):
        load_artifact(tmp_path / "s.esa")
