"""The AW linear on spikes (SPEC §3): one definition of its per-step current, bound and AC count.

Weights are stored as the artifact holds them, ``(n_out, n_in)`` int8. A spiking input carries
ternary spikes ``s_j(t) ∈ {−1, 0, +1}``; each spike adds or subtracts one weight column into the
``n_out`` currents (additions only); the integer bias enters once, at ``t = 0``. The same layer on
integer codes (the QANN, the analog first layer) is the product with ``|x| <= spike_max``.

The product runs on float BLAS whenever :func:`aw_current_bound` proves every partial sum below the
float mantissa (:func:`~equispike.model.fastmath.exact_dtype`), on int64 otherwise.
"""

from __future__ import annotations

import numpy as np

from .energy import spike_acs
from .fastmath import exact_dtype

__all__ = ["AWLinear", "aw_step", "aw_current_bound", "aw_acs"]


def aw_current_bound(weight: np.ndarray, bias: np.ndarray | None = None, spike_max: int = 1) -> np.ndarray:
    """Per-output bound of ``|I_c|``: ``spike_max · Σ_j |W_cj| + |b_c|`` (int64, shape ``(n_out,)``).

    ``spike_max`` is the largest input magnitude per step (1 for ternary spikes; the largest code for
    an analog input entering once). Every partial sum of the product (any order) is within it too.
    """
    w = np.abs(np.asarray(weight, dtype=np.int64)).sum(axis=1) * int(spike_max)
    if bias is not None:
        w = w + np.abs(np.asarray(bias, dtype=np.int64))
    return w


class AWLinear:
    """An AW linear layer with its arithmetic path fixed by its proven bound.

    Parameters
    ----------
    weight:
        ``(n_out, n_in)`` integer weights.
    bias:
        ``(n_out,)`` integer bias or None.
    spike_max:
        Largest input magnitude (1 for ternary spikes).

    Attributes
    ----------
    bound:
        ``max_c (spike_max · Σ_j |W_cj| + |b_c|)``: bounds every partial sum, the bias included.
    dtype:
        float32, float64 or int64, from :func:`~equispike.model.fastmath.exact_dtype` of ``bound``.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None, spike_max: int = 1):
        w = np.asarray(weight)
        if w.ndim != 2 or w.dtype.kind not in "iu":
            raise TypeError(f"weight must be a 2-D integer array, got {w.dtype} {w.shape}")
        if bias is not None and np.shape(bias) != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), got {np.shape(bias)}")
        if isinstance(spike_max, bool) or not isinstance(spike_max, int | np.integer) or spike_max < 0:
            raise ValueError(f"spike_max must be a non-negative integer, got {spike_max!r}")
        self.n_out, self.n_in = w.shape
        self.bound = int(aw_current_bound(w, bias, int(spike_max)).max(initial=0))
        self.dtype = exact_dtype(self.bound)
        self.weight_t = np.ascontiguousarray(w.T.astype(self.dtype))
        self.bias = None if bias is None else np.asarray(bias).astype(self.dtype)

    def __call__(self, x: np.ndarray, with_bias: bool = True) -> np.ndarray:
        """``x @ Wᵀ (+ b)`` for integer-valued ``x`` (``|x| <= spike_max``), in :attr:`dtype`."""
        if x.shape[-1] != self.n_in:
            raise ValueError(f"input (..., {self.n_in}) expected, got {x.shape}")
        y = np.matmul(x.astype(self.dtype, copy=False), self.weight_t)
        if with_bias and self.bias is not None:
            y += self.bias
        return y

    def step(self, spikes: np.ndarray, t: int) -> np.ndarray:
        """Currents of step ``t``: ``Σ_j W_cj · s_j(t)``, plus the bias at ``t = 0`` (in :attr:`dtype`)."""
        return self(spikes, with_bias=t == 0)


def aw_step(spikes: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, t: int) -> np.ndarray:
    """Currents of one step: ``I_c(t) = Σ_j W_cj · s_j(t)`` plus ``b_c`` at ``t = 0`` (int64).

    ``spikes`` has shape ``(..., n_in)``; ``weight`` ``(n_out, n_in)``; ``bias`` ``(n_out,)`` or None.
    """
    w = np.asarray(weight)
    s = np.asarray(spikes)
    if w.ndim != 2 or s.shape[-1:] != w.shape[1:]:
        raise ValueError(f"spikes (..., {w.shape[-1] if w.ndim == 2 else '?'}) and weight (n_out, n_in) "
                         f"do not match: {s.shape} and {w.shape}")
    smax = int(np.abs(s.astype(np.int64)).max(initial=0))
    return AWLinear(w, bias, smax).step(s, t).astype(np.int64)


def aw_acs(spikes: np.ndarray, n_out: int) -> np.ndarray:
    """SPEC §10 accumulate count per leading index: one AC per (nonzero spike × fan-out ``n_out``)."""
    s = np.asarray(spikes)
    lead = s.shape[0] if s.ndim > 1 else 1
    return spike_acs(np.count_nonzero(s.reshape(lead, -1), axis=1), n_out)
