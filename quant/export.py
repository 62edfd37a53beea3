"""Export a QAT-trained :class:`~equispike.quant.qvit.QViT` to the integer ``ViTArtifact`` (SPEC §3–§7).

Integer parameters, with ``round`` = round half up and every Θ clamped to ≥ 1:

* int8 weights ``W = clamp(round(w/s_w), ±127)``, ``s_w = max|w|/127`` per output channel (one scale
  for the head); accumulator unit of a linear ``u_c = s_w,c · s_x`` (``s_x`` = input site step, or
  ``input_unit = 1/16`` for the patch embedding); bias ``round(b_c/u_c)``; the next site's
  ``Θ_c = round(s_y/u_c)``.
* LN-fed sites (norm1, norm2, norm): ``Θ = round(s·2^P)``, ``P = ln_P``; LN ``Γ = round(γ·2^K)``,
  ``B = round(β·2^P)``, ``E = layernorm_eps_term(eps, D, 2^-R)``.
* softmax ``C = softmax_constant(s_q·s_k/√d_head)``; attn ``Θ = round(s_attn·2^P_softmax)``;
  after_attn ``Θ = round(s_aa/(s_attn·s_v))``.
* residual unit ``u_r = 2^-R``: class token / position embedding ``round(·/u_r)``; residual branch
  sites (patch_embed, proj, fc2) ``M = round(s_b/u_r)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..model.artifact import ArtifactError, Site, ViTArtifact, ViTDims
from ..model.intops import SoftmaxParams, layernorm_eps_term, softmax_constant
from .lsq import WEIGHT_QMAX, weight_codes, weight_scale
from .qvit import INPUT_MAX, INPUT_UNIT, LN_P, SOFTMAX_P, QViT

__all__ = ["export_artifact", "round_half_up_np", "dims_of"]


def round_half_up_np(x) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _theta(x) -> np.ndarray:
    return np.atleast_1d(np.maximum(1, round_half_up_np(x)))


def dims_of(model: QViT) -> ViTDims:
    c = model.cfg
    return ViTDims(image=c.image, channels=c.channels, patch=c.patch, dim=c.dim, heads=c.heads,
                   depth=c.depth, mlp_dim=c.mlp_dim, classes=c.classes)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def export_artifact(
    model: QViT,
    residual_bits: int | None = None,
    ln_K: int = 16,
    ln_P: int = LN_P,
    softmax_params: SoftmaxParams | None = None,
    meta: dict[str, Any] | None = None,
) -> ViTArtifact:
    """Build and validate the integer artifact of a QAT model (every site initialized).

    ``residual_bits`` defaults to the model's ``cfg.residual_bits`` (the R it was trained with);
    ``ln_P`` and the softmax ``P`` default to the units the fake-quant forward mirrors.
    """
    not_init = [n for n, q in model.sites().items() if not bool(q.initialized)]
    if not_init:
        raise ArtifactError(f"export needs a QAT model: steps not initialized at {not_init}")
    cfg = model.cfg
    dims = dims_of(model)
    R = int(cfg.residual_bits if residual_bits is None else residual_bits)
    u_r = 2.0**-R
    sm_base = softmax_params or SoftmaxParams(C=1, P=SOFTMAX_P)
    steps = model.site_steps()
    bad = {k: v for k, v in steps.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ArtifactError(f"export: site steps must be positive and finite, got {bad}")
    L = cfg.levels
    T: dict[str, np.ndarray] = {}
    sites: dict[str, Site] = {}

    def linear(prefix: str, lin, s_in: float, per_channel: bool = True) -> np.ndarray:
        """Weights and bias of a linear; returns the accumulator unit per output channel."""
        W = weight_codes(lin.weight, per_channel).cpu().numpy().astype(np.int8)
        sw = _np(weight_scale(lin.weight, per_channel)).reshape(-1)
        u = np.broadcast_to(sw * s_in, (W.shape[0],)).astype(np.float64)
        T[prefix + ".weight"] = W
        T[prefix + ".bias"] = round_half_up_np(_np(lin.bias) / u)
        return u

    def site(name: str, signed: bool, theta: np.ndarray, residual: bool = False) -> None:
        M = None
        if residual:
            M = max(1, int(round_half_up_np(steps[name] / u_r)))
        sites[name] = Site(name, L, signed, _theta(theta), M)

    def ln(prefix: str, mod: torch.nn.LayerNorm) -> None:
        T[prefix + ".gamma"] = round_half_up_np(_np(mod.weight) * 2.0**ln_K)
        T[prefix + ".beta"] = round_half_up_np(_np(mod.bias) * 2.0**ln_P)
        ln_eps[prefix] = layernorm_eps_term(float(mod.eps), cfg.dim, u_r)

    ln_eps: dict[str, int] = {}
    softmax: list[SoftmaxParams] = []

    u = linear("patch_embed", model.patch_embed, INPUT_UNIT)
    site("patch_embed", True, steps["patch_embed"] / u, residual=True)
    T["cls"] = round_half_up_np(_np(model.cls) / u_r)
    T["pos"] = round_half_up_np(_np(model.pos) / u_r)
    D = cfg.dim
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        s = {k: steps[p + k] for k in blk.sites()}
        ln(p + "ln1", blk.ln1)
        site(p + "norm1", True, s["norm1"] * 2.0**ln_P)
        u = linear(p + "qkv", blk.qkv, s["norm1"])
        site(p + "q", True, s["q"] / u[:D])
        site(p + "k", True, s["k"] / u[D : 2 * D])
        site(p + "v", True, s["v"] / u[2 * D :])
        c = s["q"] * s["k"] / math.sqrt(cfg.head_dim)
        softmax.append(SoftmaxParams(C=softmax_constant(c, sm_base.G, sm_base.H), G=sm_base.G,
                                     H=sm_base.H, F=sm_base.F, P=sm_base.P))
        site(p + "attn", False, s["attn"] * 2.0**sm_base.P)
        site(p + "after_attn", True, s["after_attn"] / (s["attn"] * s["v"]))
        u = linear(p + "proj", blk.proj, s["after_attn"])
        site(p + "proj", True, s["proj"] / u, residual=True)
        ln(p + "ln2", blk.ln2)
        site(p + "norm2", True, s["norm2"] * 2.0**ln_P)
        u = linear(p + "fc1", blk.fc1, s["norm2"])
        site(p + "fc1", False, s["fc1"] / u)
        u = linear(p + "fc2", blk.fc2, s["fc1"])
        site(p + "fc2", True, s["fc2"] / u, residual=True)
    ln("norm", model.norm)
    site("norm", True, steps["norm"] * 2.0**ln_P)
    u_head = linear("head", model.head, steps["norm"], per_channel=False)

    small = {n: int(st.theta.min()) for n, st in sites.items() if int(st.theta.min()) < 4}
    info = {
        "source": "equispike.quant.export",
        "model_config": cfg.to_dict(),
        "site_steps": steps,
        "head_unit": float(u_head[0]),
        "weight_qmax": WEIGHT_QMAX,
        "residual_M": {n: st.M for n, st in sites.items() if st.M is not None},
        "theta_below_4": small,
    }
    art = ViTArtifact(
        dims=dims, sites=sites, tensors=T, softmax=softmax, ln_eps=ln_eps, ln_K=ln_K, ln_P=ln_P,
        residual_R=R, input_min=0, input_max=INPUT_MAX, input_unit=INPUT_UNIT,
        meta={**info, **(meta or {})},
    )
    return art.validate()
