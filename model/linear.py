"""The AW linear on spikes (SPEC §3): one definition of its per-step current, bound and AC count.

Weights are stored as the artifact holds them, ``(n_out, n_in)`` int8. A spiking input carries
ternary spikes ``s_j(t) ∈ {−1, 0, +1}``; each spike adds or subtracts one weight column into the
``n_out`` currents (additions only); the integer bias enters once, at ``t = 0``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["aw_step", "aw_current_bound", "aw_acs"]


def aw_step(spikes: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, t: int) -> np.ndarray:
    """Currents of one step: ``I_c(t) = Σ_j W_cj · s_j(t)`` plus ``b_c`` at ``t = 0`` (int64).

    ``spikes`` has shape ``(..., n_in)``; ``weight`` ``(n_out, n_in)``; ``bias`` ``(n_out,)`` or None.
    """
    w = np.asarray(weight)
    s = np.asarray(spikes)
    if w.ndim != 2 or s.shape[-1:] != w.shape[1:]:
        raise ValueError(
            f"spikes (..., {w.shape[-1] if w.ndim == 2 else '?'}) and weight (n_out, n_in) "
            f"do not match: {s.shape} and {w.shape}"
        )
    cur = np.matmul(s.astype(np.int64), w.astype(np.int64).T)
    if t == 0 and bias is not None:
        cur += np.asarray(bias, dtype=np.int64)
    return cur


def aw_current_bound(weight: np.ndarray, bias: np.ndarray | None = None, spike_max: int = 1) -> np.ndarray:
    """Per-output bound of ``|I_c|``: ``spike_max · Σ_j |W_cj| + |b_c|`` (int64, shape ``(n_out,)``).

    ``spike_max`` is the largest input magnitude per step (1 for ternary spikes; the largest code for
    an analog input entering once).
    """
    w = np.abs(np.asarray(weight, dtype=np.int64)).sum(axis=1) * int(spike_max)
    if bias is not None:
        w = w + np.abs(np.asarray(bias, dtype=np.int64))
    return w


def aw_acs(spikes: np.ndarray, n_out: int) -> np.ndarray:
    """SPEC §10 accumulate count per leading index: one AC per (nonzero spike × fan-out ``n_out``)."""
    s = np.asarray(spikes)
    lead = s.shape[0] if s.ndim > 1 else 1
    return np.count_nonzero(s.reshape(lead, -1), axis=1).astype(np.int64) * int(n_out)
