"""Quantizer, ST-BIF and binary LIF neurons (SPEC §2 and §8), integer only, vectorized.

These are the single definitions of the neuron rules: the integer QANN, the SNN golden model and the
RTL testbenches all call them.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "MIN_LEVELS",
    "MAX_LEVELS",
    "LEVEL_CHOICES",
    "check_levels",
    "site_bounds",
    "quantize",
    "STBIFArray",
    "LIFArray",
    "smallest_int_dtype",
]

# SPEC §2: a site has L levels, a power of two in 4..256. Every check of a level count uses these.
MIN_LEVELS = 4
MAX_LEVELS = 256
LEVEL_CHOICES = tuple(1 << k for k in range(MIN_LEVELS.bit_length() - 1, MAX_LEVELS.bit_length()))


def check_levels(levels, what: str = "levels") -> int:
    """Return ``levels`` as an int if it is a power of two in ``[MIN_LEVELS, MAX_LEVELS]`` (SPEC §2).

    Raises ``TypeError`` for a non-integer and ``ValueError`` (naming ``what``) for a wrong value.
    """
    if not isinstance(levels, int | np.integer) or isinstance(levels, bool | np.bool_):
        raise TypeError(f"{what} must be an integer, got {type(levels).__name__} {levels!r}")
    if int(levels) not in LEVEL_CHOICES:
        raise ValueError(
            f"{what} must be a power of two in [{MIN_LEVELS}, {MAX_LEVELS}] (SPEC §2), got {levels!r}"
        )
    return int(levels)


def site_bounds(levels: int, signed: bool) -> tuple[int, int]:
    """Code range ``[Qn, Qp]`` of a quantizer site with ``levels`` levels (SPEC §2)."""
    levels = check_levels(levels)
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


@functools.cache
def _limits(dtype: np.dtype) -> tuple[int, int]:
    """``(min, max)`` of an integer dtype (cached: ``np.iinfo`` is slow to build, and the overflow
    check asks at every step of every site)."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@functools.cache
def _safe_range(current: np.dtype, membrane: np.dtype) -> tuple[int, int] | None:
    """``(min, max)`` of the current's dtype when it casts safely to the membrane's, else None
    (cached, as :func:`_limits`)."""
    return _limits(current) if np.can_cast(current, membrane, "safe") else None


def _checked_sum_range(
    V: np.ndarray, current: np.ndarray, v_lo: int, v_hi: int, dtype: np.dtype, what: str,
    current_bound: int | None = None,
) -> tuple[int, int]:
    """An interval holding every ``V + I``; ``OverflowError`` if ``I`` or ``V + I`` leaves ``dtype``.

    ``[v_lo, v_hi]`` must hold every element of ``V``; ``current_bound``, when given, every ``|I|``
    (a proven bound, e.g. an AW layer's :attr:`~equispike.model.linear.AWLinear.bound`: it spares the
    two reductions of ``I``). The check is exact: when the cheap interval tests fail, the values and
    then the element-wise sum decide.
    """
    if current.dtype.kind not in "iu":
        raise TypeError(f"{what} current must be integer, got dtype {current.dtype}")
    if current.shape != V.shape and np.broadcast_shapes(current.shape, V.shape) != V.shape:
        raise ValueError(f"{what} current of shape {current.shape} does not match the neurons {V.shape}")
    if not current.size:
        return v_lo, v_hi
    i_min, i_max = _limits(np.dtype(dtype))
    # cheapest proofs first: the current's dtype range, then its values, then V's own extremes
    c_range = _safe_range(current.dtype, np.dtype(dtype))
    if c_range is not None:
        if v_lo + c_range[0] >= i_min and v_hi + c_range[1] <= i_max:
            return v_lo + c_range[0], v_hi + c_range[1]
    if current_bound is not None and v_lo - current_bound >= i_min and v_hi + current_bound <= i_max:
        return v_lo - current_bound, v_hi + current_bound
    c_lo, c_hi = int(current.min()), int(current.max())
    if c_lo < i_min or c_hi > i_max:
        raise OverflowError(
            f"{what} current range [{c_lo}, {c_hi}] does not fit the membrane dtype {dtype} "
            f"[{i_min}, {i_max}]"
        )
    lo, hi = v_lo + c_lo, v_hi + c_hi
    if lo < i_min or hi > i_max:
        lo, hi = int(V.min()) + c_lo, int(V.max()) + c_hi
    if lo < i_min or hi > i_max:
        h = V.astype(np.int64) + current.astype(np.int64)
        lo, hi = int(h.min()), int(h.max())
        if lo < i_min or hi > i_max:
            bad = np.unravel_index(int(np.argmax((h < i_min) | (h > i_max))), h.shape)
            raise OverflowError(
                f"{what} membrane V + I = {int(h[bad])} at index {tuple(int(i) for i in bad)} does not "
                f"fit the membrane dtype {dtype} [{i_min}, {i_max}]: the width analysis "
                f"(model.widths) bounds it for inputs the artifact allows"
            )
    return lo, hi


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
        self._theta_max = int(th.max()) if th.size else 1
        self.s_dtype = smallest_int_dtype(self.qn, self.qp)
        self.reset()

    def reset(self) -> None:
        """Reset every neuron: ``V = floor(Θ/2)``, ``S = 0``."""
        if self.theta.size == 1:
            # one threshold: a scalar operand, no array to stream through the cache at every step
            self._theta_op = self.v_dtype.type(self.theta.reshape(-1)[0])
            self.V = np.full(self.shape, self._theta_op // 2, dtype=self.v_dtype)
        else:
            # Θ materialized at full shape and C order: same-shape contiguous integer ops vectorize
            # far better than broadcasts, and astype of a broadcast view would keep its transposed
            # strides (every op on Θ, V and H then walks memory out of order, about 5x slower)
            self._theta_op = np.array(np.broadcast_to(self.theta, self.shape), dtype=self.v_dtype,
                                        order="C")
            self.V = self._theta_op // 2
        self.S = np.zeros(self.shape, dtype=self.s_dtype)
        # an interval holding every V: lets most steps prove "no wrap" from two reductions of I
        self._v_lo, self._v_hi = 0, self._theta_max // 2

    def step(self, current: np.ndarray, current_bound: int | None = None) -> np.ndarray:
        """Advance one time step with integer ``current``; return the ternary spikes (int8).

        ``current_bound`` may state a proven bound on every ``|current|`` (it only makes the overflow
        check cheaper). Raises ``OverflowError`` (and leaves the state unchanged) when the current or
        ``H = V + I`` of any neuron does not fit the membrane dtype: the model never wraps.
        """
        current = np.asarray(current)
        if current_bound is not None and (isinstance(current_bound, bool)
                                          or not isinstance(current_bound, int) or current_bound < 0):
            raise ValueError(f"current_bound must be a non-negative int, got {current_bound!r}")
        lo, hi = _checked_sum_range(self.V, current, self._v_lo, self._v_hi, self.v_dtype, "ST-BIF",
                                    current_bound)
        H = np.add(self.V, current, dtype=self.v_dtype, casting="unsafe")
        pos = H >= self._theta_op
        pos &= self.S < self.qp
        neg = H < 0
        neg &= self.S > self.qn
        spikes = pos.view(np.int8) - neg.view(np.int8)
        # branch-free V = H − s·Θ: masked (where=) updates are ~50x slower on random spike patterns
        H -= spikes * self._theta_op
        self.V = H
        self.S += spikes
        # V = H - s·Θ: a +1 spike leaves V >= 0, a -1 spike V <= Θ - 1, no spike V = H
        self._v_lo, self._v_hi = min(lo, 0), max(hi, self._theta_max - 1)
        return spikes


class LIFArray:
    """A tensor of binary LIF neurons (SPEC §8): τ = 2, hard reset to 0, integer threshold θ.

    ``h = (v + x) >> 1``; ``s = h >= θ``; ``v = 0 if s else h``. Spikes are returned as int8 {0, 1}.
    """

    def __init__(self, shape: tuple[int, ...], theta, v_dtype=np.int64):
        th = _theta_array(theta)
        self.shape = tuple(shape)
        self.v_dtype = np.dtype(v_dtype)
        if th.size and int(th.max()) > np.iinfo(self.v_dtype).max:
            raise OverflowError(f"theta {int(th.max())} does not fit the membrane dtype {self.v_dtype}")
        self.theta = th.astype(self.v_dtype)
        self._theta_max = int(th.max()) if th.size else 1
        self.reset()

    def reset(self) -> None:
        self.V = np.zeros(self.shape, dtype=self.v_dtype)
        self._v_lo, self._v_hi = 0, 0

    def step(self, x: np.ndarray) -> np.ndarray:
        """Advance one step with integer input ``x``; ``OverflowError`` if ``V + x`` leaves the dtype."""
        x = np.asarray(x)
        lo, hi = _checked_sum_range(self.V, x, self._v_lo, self._v_hi, self.v_dtype, "LIF")
        h = np.add(self.V, x, dtype=self.v_dtype, casting="unsafe")
        h >>= 1
        fire = h >= self.theta
        np.multiply(h, ~fire, out=h)  # hard reset, branch-free
        self.V = h
        # h = (V + x) >> 1 keeps the sign and halves the magnitude; a reset gives 0
        self._v_lo, self._v_hi = min(lo >> 1, 0), max(hi >> 1, 0)
        return fire.view(np.int8)
