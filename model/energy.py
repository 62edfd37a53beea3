"""Energy accounting (SPEC §10): the one counting rule of MACs and ACs, shared by the golden model and
the hardware cores.

``E = 4.6 pJ · MACs + 0.9 pJ · ACs``. AW linears and SESA products cost one AC per (nonzero spike ×
fan-out); the analog first layer costs its MACs, once; each row a differential unit recomputes costs
the fixed arithmetic of its operator (:func:`softmax_row_cost`, :func:`layernorm_row_cost`). The dense
integer QANN is counted by the same rule: linears and attention products as MACs, softmax and
LayerNorm rows without the input accumulations and output deltas.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAC_PJ",
    "AC_PJ",
    "energy_pj",
    "softmax_row_cost",
    "layernorm_row_cost",
    "spike_acs",
    "dense_counts",
]

MAC_PJ = 4.6
AC_PJ = 0.9


def _check_width(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return int(n)


def softmax_row_cost(n: int, differential: bool) -> tuple[int, int]:
    """``(MACs, ACs)`` of one integer softmax row over ``n`` scores.

    MACs: ``n`` products ``d·C`` and ``n`` divisions (``2n``). ACs: ``n − 1`` max comparisons, ``n``
    subtractions ``max − Z`` and ``n − 1`` sum additions (``3n − 2``); a differential unit adds ``n``
    input accumulations and ``n`` output deltas (``5n − 2``). Shifts and LUT reads are free.
    """
    n = _check_width("n", n)
    acs = 3 * n - 2 + (2 * n if differential else 0)
    return 2 * n, acs


def layernorm_row_cost(D: int, differential: bool) -> tuple[int, int]:
    """``(MACs, ACs)`` of one integer LayerNorm row over ``D`` values.

    MACs: ``D`` squares, ``D`` products ``D·X_i``, ``D`` products ``c·Γ``, ``D`` divisions, ``D·S2``,
    ``S1²`` and the square root (``4D + 3``). ACs: ``2(D − 1)`` sums, ``D`` subtractions ``− S1``, 2 for
    the radicand, ``D`` additions ``+ B`` (``4D``); a differential unit adds ``D`` input accumulations
    and ``D`` output deltas (``6D``).
    """
    D = _check_width("D", D)
    acs = 4 * D + (2 * D if differential else 0)
    return 4 * D + 3, acs


def spike_acs(nonzero_spikes, fan_out: int) -> np.ndarray:
    """ACs of spike-driven additions: one per (nonzero spike × fan-out); ``nonzero_spikes`` is a count
    (or an array of counts, e.g. per image)."""
    fan_out = _check_width("fan_out", fan_out)
    return np.asarray(nonzero_spikes, dtype=np.int64) * fan_out


def energy_pj(macs, acs) -> np.ndarray:
    """``4.6 pJ · MACs + 0.9 pJ · ACs`` (float64, elementwise)."""
    return MAC_PJ * np.asarray(macs, dtype=np.float64) + AC_PJ * np.asarray(acs, dtype=np.float64)


def dense_counts(art) -> dict[str, tuple[int, int]]:
    """Per-unit ``(MACs, ACs)`` of one dense integer QANN inference of an artifact.

    Keys: ``patch_embed``, ``blocks.i.qkv``, ``blocks.i.qk``, ``blocks.i.softmax``, ``blocks.i.av``,
    ``blocks.i.proj``, ``blocks.i.ln1``/``ln2``, ``blocks.i.fc1``/``fc2``, ``norm``, ``head``. Linear
    biases and the residual additions are not counted (as in the SNN, where they enter once).
    """
    d = art.dims
    N, D, F, H = d.tokens, d.dim, d.mlp_dim, d.heads
    ln_macs, ln_acs = layernorm_row_cost(D, differential=False)
    sm_macs, sm_acs = softmax_row_cost(N, differential=False)
    out: dict[str, tuple[int, int]] = {"patch_embed": (d.patches * d.patch_dim * D, 0)}
    for i in range(d.depth):
        p = f"blocks.{i}."
        out[p + "ln1"] = (N * ln_macs, N * ln_acs)
        out[p + "qkv"] = (N * D * 3 * D, 0)
        out[p + "qk"] = (N * N * D, 0)
        out[p + "softmax"] = (H * N * sm_macs, H * N * sm_acs)
        out[p + "av"] = (N * N * D, 0)
        out[p + "proj"] = (N * D * D, 0)
        out[p + "ln2"] = (N * ln_macs, N * ln_acs)
        out[p + "fc1"] = (N * D * F, 0)
        out[p + "fc2"] = (N * F * D, 0)
    out["norm"] = (N * ln_macs, N * ln_acs)
    out["head"] = (D * d.classes, 0)
    return out
