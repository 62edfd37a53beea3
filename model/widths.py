"""Worst-case width analysis of an artifact (SPEC §9).

Every accumulator, membrane, tracer and operator intermediate gets a bound derived from the exported
weights, levels and fan-in, never guessed; the bit widths the golden model and the RTL use follow from
these bounds. Keys are ``"<site>.current"`` (per-step input current of a site's neurons: the
accumulator), ``"<site>.cumulative"``, ``"<site>.membrane"`` (V and H = V + I), ``"<site>.tracer"``,
``"residual"``, ``"<ln>.s1"``, ``"<ln>.s2"``, ``"<ln>.radicand"``, ``"<ln>.product"``,
``"blocks.i.scores"``, ``"blocks.i.softmax.exponent_arg"``, ``"blocks.i.softmax.sum"``, ``"logits"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isqrt

import numpy as np

from .artifact import ArtifactError, ViTArtifact

__all__ = ["WidthReport", "analyze", "signed_bits", "layernorm_output_bound", "residual_bound", "fast_paths"]


def signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's-complement integer holding every value of ``[lo, hi]``."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


@dataclass
class WidthReport:
    lo: dict[str, int] = field(default_factory=dict)
    hi: dict[str, int] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, lo: int, hi: int) -> None:
        lo, hi = int(lo), int(hi)
        b = signed_bits(lo, hi)
        if b > 64:
            raise ArtifactError(f"widths.{key}: worst case [{lo}, {hi}] needs {b} bits, more than 64")
        self.lo[key], self.hi[key], self.bits[key] = lo, hi, b

    def bound(self, key: str) -> int:
        """Largest magnitude of a quantity."""
        return max(-self.lo[key], self.hi[key])

    def table(self) -> list[tuple[str, int, int, int]]:
        return [(k, self.lo[k], self.hi[k], self.bits[k]) for k in self.bits]


def layernorm_output_bound(D: int, gmax: int, bmax: int, params) -> int:
    """Largest ``|y_i|`` of :func:`~equispike.model.intops.int_layernorm` given ``|Γ|, |B| <= gmax, bmax``.

    With ``Q = D·S2 − S1²``: ``Σc = 0`` and ``Σc² = D·Q`` give ``|c_i| <= sqrt((D−1)·Q)``; and
    ``σ = isqrt(Q + E) > sqrt(Q) − 1`` gives ``sqrt(Q) < σ + 1 <= 2σ``. Hence ``|c_i|/σ < 2·sqrt(D−1)``
    (the factor 2 is needed: with a small E, σ rounds down well below sqrt(Q)).
    """
    ratio = 2 * (isqrt(max(D - 1, 0)) + 1)
    return ((ratio * gmax) >> (params.K - params.P)) + 1 + bmax


def residual_bound(art: ViTArtifact) -> int:
    """Largest ``|U|`` of the residual stream: embeddings plus every branch at its largest code × M."""
    T, S = art.tensors, art.sites
    umax = (
        int(np.abs(T["pos"]).max()) + int(np.abs(T["cls"]).max()) + S["patch_embed"].M * S["patch_embed"].smax
    )
    for i in range(art.dims.depth):
        umax += S[f"blocks.{i}.proj"].M * S[f"blocks.{i}.proj"].smax
        umax += S[f"blocks.{i}.fc2"].M * S[f"blocks.{i}.fc2"].smax
    return int(umax)


def _abs_row_sums(w: np.ndarray) -> np.ndarray:
    return np.abs(w.astype(np.int64)).sum(axis=1)


def analyze(art: ViTArtifact) -> WidthReport:
    """Bounds and widths of every quantity of the artifact's QANN and SNN."""
    d, T, S = art.dims, art.tensors, art.sites
    r = WidthReport()

    def site(name: str, cum: np.ndarray | int, step: np.ndarray | int) -> None:
        """A site's neurons given per-channel bounds of |cumulative input| and |per-step input|."""
        s = S[name]
        th = np.asarray(s.theta, dtype=np.int64)
        cum = np.asarray(cum, dtype=np.int64)
        step = np.asarray(step, dtype=np.int64)
        # V = floor(Θ/2) + C(t) − S(t)·Θ and H = floor(Θ/2) + C(t) − S(t−1)·Θ, with S in [Qn, Qp]
        v_hi = int((th // 2 + cum - s.qn * th).max())
        v_lo = int((th // 2 - cum - s.qp * th).min())
        r.add(f"{name}.membrane", v_lo, v_hi)
        r.add(f"{name}.current", -int(step.max()), int(step.max()))
        r.add(f"{name}.cumulative", -int(cum.max()), int(cum.max()))
        r.add(f"{name}.tracer", s.qn, s.qp)

    def aw(name: str, wkey: str, bkey: str, smax_in: int, rows: slice | None = None) -> None:
        w = T[wkey] if rows is None else T[wkey][rows]
        b = np.abs(T[bkey] if rows is None else T[bkey][rows]).astype(np.int64)
        rs = _abs_row_sums(w)
        site(name, rs * smax_in + b, rs + b)

    def layernorm(name: str, g: str, b: str, umax: int) -> int:
        D = d.dim
        params = art.ln_params(name)
        gmax = int(np.abs(T[g]).max())
        bmax = int(np.abs(T[b]).max())
        r.add(f"{name}.s1", -D * umax, D * umax)
        r.add(f"{name}.s2", 0, D * umax * umax)
        r.add(f"{name}.radicand", 0, D * D * umax * umax + params.E)
        r.add(f"{name}.product", -2 * D * umax * gmax, 2 * D * umax * gmax)
        ymax = layernorm_output_bound(D, gmax, bmax, params)
        r.add(f"{name}.output", -ymax, ymax)
        return ymax

    pe = T["patch_embed.weight"]
    xin = max(abs(art.input_min), abs(art.input_max))
    rs = _abs_row_sums(pe) * xin + np.abs(T["patch_embed.bias"]).astype(np.int64)
    site("patch_embed", rs, rs)
    umax = residual_bound(art)
    r.add("residual", -umax, umax)
    D = d.dim
    for i in range(d.depth):
        p = f"blocks.{i}."
        y = layernorm(p + "ln1", p + "ln1.gamma", p + "ln1.beta", umax)
        site(p + "norm1", y, 2 * y)
        sn1 = S[p + "norm1"].smax
        aw(p + "q", p + "qkv.weight", p + "qkv.bias", sn1, slice(0, D))
        aw(p + "k", p + "qkv.weight", p + "qkv.bias", sn1, slice(D, 2 * D))
        aw(p + "v", p + "qkv.weight", p + "qkv.bias", sn1, slice(2 * D, 3 * D))
        sq, sk, sv = S[p + "q"].smax, S[p + "k"].smax, S[p + "v"].smax
        dh = d.head_dim
        zmax = dh * sq * sk
        r.add(p + "scores", -zmax, zmax)
        r.add(p + "scores.step", -dh * (sq + sk), dh * (sq + sk))
        sp = art.softmax[i]
        r.add(p + "softmax.exponent_arg", 0, 2 * zmax * sp.C)
        r.add(p + "softmax.sum", 0, d.tokens << sp.F)
        r.add(p + "softmax.numerator", 0, 1 << (sp.F + sp.P))
        site(p + "attn", 1 << sp.P, 1 << sp.P)
        sa = S[p + "attn"].smax
        site(p + "after_attn", d.tokens * sa * sv, d.tokens * (sa + sv))
        aw(p + "proj", p + "proj.weight", p + "proj.bias", S[p + "after_attn"].smax)
        y = layernorm(p + "ln2", p + "ln2.gamma", p + "ln2.beta", umax)
        site(p + "norm2", y, 2 * y)
        aw(p + "fc1", p + "fc1.weight", p + "fc1.bias", S[p + "norm2"].smax)
        aw(p + "fc2", p + "fc2.weight", p + "fc2.bias", S[p + "fc1"].smax)
    y = layernorm("norm", "norm.gamma", "norm.beta", umax)
    site("norm", y, 2 * y)
    hw = _abs_row_sums(T["head.weight"]) * S["norm"].smax + np.abs(T["head.bias"]).astype(np.int64)
    r.add("logits", -int(hw.max()), int(hw.max()))
    hs = _abs_row_sums(T["head.weight"]) + np.abs(T["head.bias"]).astype(np.int64)
    r.add("head.current", -int(hs.max()), int(hs.max()))
    return r


def fast_paths(art: ViTArtifact) -> dict[str, dict[str, int | str]]:
    """The arithmetic path of every product and operator of the golden model, with its proof.

    For each layer: ``bound``, the largest magnitude any partial sum (or operator intermediate) can
    reach, and ``path``, the dtype :func:`~equispike.model.fastmath.exact_dtype` picks for it
    (float32 below ``2^24``, float64 below ``2^53``, int64 otherwise). Keys ``snn.<layer>`` (ternary
    spike inputs) and ``qann.<layer>`` (integer code inputs); SESA products ``snn.blocks.i.qk``/``av``;
    ``blocks.i.softmax`` (row sum and division; its exponent table needs ``2·|z|max < 2^20``) and the
    LayerNorms (``ln1``, ``ln2``, ``norm``: radicand and ``c·Γ``) take float64 or int64.
    """
    from .fastmath import F64_LIMIT, SOFTMAX_TABLE_MAX, exact_dtype
    from .linear import AWLinear

    d, T, S = art.dims, art.tensors, art.sites
    out: dict[str, dict[str, int | str]] = {}

    def put(key: str, bound: int, path: str | None = None) -> None:
        out[key] = {"bound": int(bound), "path": path or exact_dtype(bound).name}

    xin = max(abs(art.input_min), abs(art.input_max))
    put("qann.patch_embed", AWLinear(T["patch_embed.weight"], T["patch_embed.bias"], xin).bound)
    umax = residual_bound(art)
    N, dh = d.tokens, d.head_dim
    for i in range(d.depth):
        p = f"blocks.{i}."
        for lin, src in (("qkv", "norm1"), ("proj", "after_attn"), ("fc1", "norm2"), ("fc2", "fc1")):
            w, b = T[p + lin + ".weight"], T[p + lin + ".bias"]
            put(f"snn.{p}{lin}", AWLinear(w, b, 1).bound)
            put(f"qann.{p}{lin}", AWLinear(w, b, S[p + src].smax).bound)
        sq, sk, sv, sa = (S[p + s].smax for s in ("q", "k", "v", "attn"))
        # the SNN keeps the running product A(t)·op(B(t)) and emits its differences (model.sesa)
        put(f"snn.{p}qk", dh * max(sq * sk, sq + sk))
        put(f"snn.{p}av", N * max(sa * sv, sa + sv))
        put(f"qann.{p}qk", dh * sq * sk)
        put(f"qann.{p}av", N * sa * sv)
        sp = art.softmax[i]
        # the exponent is tabulated per distance d <= 2·|z|max (fastmath.softmax_exact)
        sm = max(1 << (sp.F + sp.P), N << sp.F)
        table = 2 * dh * sq * sk < SOFTMAX_TABLE_MAX
        put(p + "softmax", sm, "float64" if sm < F64_LIMIT and table else "int64")
    norms = [f"blocks.{i}.ln{j}" for i in range(d.depth) for j in (1, 2)] + ["norm"]
    for ln in norms:
        g = ln + ".gamma"
        D = d.dim
        gmax = int(np.abs(T[g]).max())
        b = max(D * D * umax * umax + art.ln_params(ln).E, 2 * D * umax * gmax)
        put(ln, b, "float64" if b < F64_LIMIT else "int64")
    put("snn.head", AWLinear(T["head.weight"], T["head.bias"], 1).bound)
    put("qann.head", AWLinear(T["head.weight"], T["head.bias"], S["norm"].smax).bound)
    return out
