"""Worst-case widths of a spike-driven transformer artifact (SPEC §9), in the style of ``widths.py``.

Bounds come from the exported weights, biases, thresholds and fan-in only (spikes are binary, the
image lies in the artifact's input range). Keys: ``stem.acc`` (patch products), ``stem.product``
(``acc · m``), ``stem.out`` (``U0``), ``residual`` (``U`` after any branch), ``<lif>.current`` and
``<lif>.membrane`` (``V + x``, the widest LIF quantity) per LIF site, ``blocks.i.attn.coactivation``
and ``blocks.i.attn.input`` (saturated at 8, SPEC §8) and ``blocks.i.attn.membrane`` (SDSA-3's
quantities; an SDSA-1 model keeps the keys, but its attention is a mask and none of them occurs),
``head.count``, ``head.step`` and ``logits``.

The golden model (:func:`~equispike.model.sdt.run_sdt`) checks every one of these quantities against
its range when it is produced; ``tests/test_sdt_widths.py`` drives each bound exactly
(:func:`~equispike.model.sdt.worst_case_sdt`).

LIF membrane bound: with input ``x ∈ [lo, hi]`` and threshold θ, the state ``V`` stays in
``[min(0, lo), max(0, θ − 1)]`` (by induction: ``h = (V + x) >> 1 >= min(0, lo)``; a neuron that does
not fire keeps ``h < θ``, one that fires resets to 0), so ``V + x`` lies in
``[min(0, lo) + lo, max(0, θ − 1) + hi]``.
"""

from __future__ import annotations

import numpy as np

from .sdsa import SDSA_SATURATION, SDSA_THETA
from .sdt import SDTArtifact
from .widths import WidthReport

__all__ = ["analyze_sdt", "lif_membrane_range"]


def lif_membrane_range(lo: np.ndarray, hi: np.ndarray, theta: np.ndarray) -> tuple[int, int]:
    """Range of ``V + x`` of LIF neurons with per-channel input ranges ``[lo, hi]`` and thresholds."""
    lo, hi, theta = (np.asarray(a, dtype=object) for a in (lo, hi, theta))
    low = np.minimum(lo, 0) + lo
    high = np.maximum(theta - 1, 0) + hi
    return int(low.min()), int(high.max())


def _row_abs(w: np.ndarray) -> np.ndarray:
    # Python ints (object dtype): the sums of a hostile artifact must not wrap before they are judged
    return np.abs(w.astype(object)).sum(axis=1)


def analyze_sdt(art: SDTArtifact) -> WidthReport:
    """Bounds and widths of every accumulator and membrane of the artifact's integer network."""
    d, t = art.dims, art.tensors
    r = WidthReport()
    N = d.tokens
    xmax = max(abs(art.input_min), abs(art.input_max))
    acc = _row_abs(t["stem.weight"]) * xmax
    r.add("stem.acc", -int(acc.max()), int(acc.max()))
    prod = acc * t["stem.multiplier"].astype(object)
    r.add("stem.product", -int(prod.max()), int(prod.max()))
    # the floor is monotone: acc·m ∈ [−P, P] gives floor(acc·m / 2^S) ∈ [−ceil(P / 2^S), floor(P / 2^S)]
    unit = 1 << art.stem_shift
    bias = t["stem.bias"].astype(object)
    u_lo = ((-prod) // unit + bias.min(axis=0)).astype(object)  # per channel
    u_hi = (prod // unit + bias.max(axis=0)).astype(object)
    r.add("stem.out", int(u_lo.min()), int(u_hi.max()))
    for i in range(d.depth):
        p = f"blocks.{i}."
        r.add(p + "lif1.current", int(u_lo.min()), int(u_hi.max()))
        r.add(p + "lif1.membrane", *lif_membrane_range(u_lo, u_hi, t[p + "lif1.theta"]))
        for name, lif in (("qkv", "qkv"), ("fc1", "fc1")):
            w, b = _row_abs(t[p + f"{name}.weight"]), t[p + f"{name}.bias"].astype(object)
            lo, hi = b - w, b + w
            r.add(p + f"{lif}.current", int(lo.min()), int(hi.max()))
            r.add(p + f"{lif}.membrane", *lif_membrane_range(lo, hi, t[p + f"{name}.theta"]))
            if name == "qkv":
                r.add(p + "attn.coactivation", 0, SDSA_SATURATION)
                r.add(p + "attn.input", 0, SDSA_SATURATION)
                r.add(p + "attn.membrane", 0, SDSA_THETA - 1 + SDSA_SATURATION)
                w2, b2 = _row_abs(t[p + "proj.weight"]), t[p + "proj.bias"].astype(object)
                u_lo, u_hi = u_lo + b2 - w2, u_hi + b2 + w2
                r.add(p + "lif2.current", int(u_lo.min()), int(u_hi.max()))
                r.add(p + "lif2.membrane", *lif_membrane_range(u_lo, u_hi, t[p + "lif2.theta"]))
        w2, b2 = _row_abs(t[p + "fc2.weight"]), t[p + "fc2.bias"].astype(object)
        u_lo, u_hi = u_lo + b2 - w2, u_hi + b2 + w2
        r.add(p + "residual", int(u_lo.min()), int(u_hi.max()))
    r.add("head.current", int(u_lo.min()), int(u_hi.max()))
    r.add("head.membrane", *lif_membrane_range(u_lo, u_hi, t["head.theta"]))
    r.add("head.count", 0, N)
    step = _row_abs(t["head.weight"]) * N + np.abs(t["head.bias"].astype(object)) * N
    r.add("head.step", -int(step.max()), int(step.max()))
    r.add("logits", -int(step.max()) * art.timesteps, int(step.max()) * art.timesteps)
    return r
