"""Quantizer, ST-BIF and binary LIF neurons (SPEC §2 and §8), integer only, vectorized.

These are the single definitions of the neuron rules: the integer QANN, the SNN golden model and the
RTL testbenches all call them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["site_bounds", "quantize", "STBIFArray", "LIFArray", "smallest_int_dtype"]


def site_bounds(levels: int, signed: bool) -> tuple[int, int]:
    """Code range ``[Qn, Qp]`` of a quantizer site with ``levels`` levels (SPEC §2)."""
    if not isinstance(levels, int | np.integer) or levels < 2 or levels & (levels - 1):
        raise ValueError(f"levels must be a power of two >= 2, got {levels!r}")
    if signed:
        return -(levels // 2), levels // 2 - 1
    return 0, levels - 1


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """Narrowest signed NumPy integer dtype holding every value of ``[lo, hi]``."""
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise OverflowError(f"range [{lo}, {hi}] does not fit in 64 bits")


def _theta_array(theta) -> np.ndarray:
    th = np.asarray(theta)
    if th.dtype.kind not in "iu":
        raise TypeError(f"theta must be an integer array, got dtype {th.dtype}")
    if th.size and int(th.min()) < 1:
        raise ValueError(f"theta must be >= 1 everywhere, got min {int(th.min())}")
    return th.astype(np.int64)


def quantize(a: np.ndarray, theta, qn: int, qp: int) -> np.ndarray:
    """QANN code of integer pre-activations: ``clamp(floor((A + floor(Θ/2)) / Θ), Qn, Qp)``.

    ``theta`` broadcasts against ``a`` (a scalar, or one value per channel on the last axis).
    Returns int64 codes.
    """
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"quantize takes integer pre-activations, got dtype {a.dtype}")
    th = _theta_array(theta)
    n = (a.astype(np.int64) + th // 2) // th
    return np.clip(n, qn, qp)


class STBIFArray:
    """A tensor of ST-BIF neurons (SPEC §2): signed-threshold bipolar integrate-and-fire.

    State per element: membrane ``V`` (reset to ``floor(Θ/2)``) and spike tracer ``S`` (reset to 0).
    Each :meth:`step` takes an integer current and returns the ternary spikes (int8). Once inputs stop,
    the tracer settles within ``Qp - Qn`` steps at the QANN code of the cumulative input.

    Parameters
    ----------
    shape:
        Shape of the neuron tensor (``theta`` broadcasts along its last axis).
    theta:
        Integer thresholds ``Θ >= 1``: a scalar or one per channel (last axis).
    qn, qp:
        Tracer bounds.
    v_dtype:
        Integer dtype of the membrane. It must hold the worst case given by the width analysis
        (``model.widths``); int64 when omitted.
    """

    def __init__(self, shape: tuple[int, ...], theta, qn: int, qp: int, v_dtype=np.int64):
        if qn > 0 or qp < 0 or qn >= qp:
            raise ValueError(f"tracer bounds must satisfy qn <= 0 <= qp, qn < qp; got [{qn}, {qp}]")
        self.shape = tuple(shape)
        self.qn, self.qp = int(qn), int(qp)
        self.v_dtype = np.dtype(v_dtype)
        th = _theta_array(theta)
        if int(th.max()) > np.iinfo(self.v_dtype).max:
            raise OverflowError(f"theta {int(th.max())} does not fit the membrane dtype {self.v_dtype}")
        self.theta = th.astype(self.v_dtype)
        self.s_dtype = smallest_int_dtype(self.qn, self.qp)
        self.reset()

    def reset(self) -> None:
        """Reset every neuron: ``V = floor(Θ/2)``, ``S = 0``."""
        # Θ materialized at full shape: same-shape integer ops vectorize far better than broadcasts
        self._theta_full = np.broadcast_to(self.theta, self.shape).astype(self.v_dtype)
        self.V = self._theta_full // 2
        self.S = np.zeros(self.shape, dtype=self.s_dtype)

    def step(self, current: np.ndarray) -> np.ndarray:
        """Advance one time step with integer ``current``; return the ternary spikes (int8)."""
        H = np.add(self.V, current, dtype=self.v_dtype, casting="same_kind")
        pos = H >= self._theta_full
        pos &= self.S < self.qp
        neg = H < 0
        neg &= self.S > self.qn
        spikes = pos.view(np.int8) - neg.view(np.int8)
        # branch-free V = H − s·Θ: masked (where=) updates are ~50x slower on random spike patterns
        H -= spikes * self._theta_full
        self.V = H
        self.S += spikes
        return spikes


class LIFArray:
    """A tensor of binary LIF neurons (SPEC §8): τ = 2, hard reset to 0, integer threshold θ.

    ``h = (v + x) >> 1``; ``s = h >= θ``; ``v = 0 if s else h``. Spikes are returned as int8 {0, 1}.
    """

    def __init__(self, shape: tuple[int, ...], theta, v_dtype=np.int64):
        th = _theta_array(theta)
        self.shape = tuple(shape)
        self.v_dtype = np.dtype(v_dtype)
        self.theta = th.astype(self.v_dtype)
        self.reset()

    def reset(self) -> None:
        self.V = np.zeros(self.shape, dtype=self.v_dtype)

    def step(self, x: np.ndarray) -> np.ndarray:
        h = np.add(self.V, x, dtype=self.v_dtype, casting="same_kind")
        h >>= 1
        fire = h >= self.theta
        np.multiply(h, ~fire, out=h)  # hard reset, branch-free
        self.V = h
        return fire.view(np.int8)
