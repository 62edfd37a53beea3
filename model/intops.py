"""Integer softmax, integer LayerNorm and exact integer square root (SPEC §5).

This module is the one definition of these operators. The integer QANN, the differential operators
of the SNN and the RTL testbenches all call it. Every division floors (Python ``//``) and every right
shift is arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SoftmaxParams",
    "LayerNormParams",
    "isqrt",
    "exp2_lut",
    "int_softmax",
    "int_layernorm",
    "softmax_constant",
    "layernorm_eps_term",
    "Probe",
]

Probe = Callable[[str, np.ndarray], None]
"""``probe(name, values)``: sees an operator's intermediate (named as in :mod:`~equispike.model.widths`)."""

_INT64_MAX = (1 << 63) - 1


def _require_int64(name: str, bound: int, op: str) -> None:
    """The model computes in int64 and must never wrap: refuse inputs whose worst case does not fit."""
    if bound > _INT64_MAX:
        raise OverflowError(
            f"{op}: the {name} can reach {bound}, beyond int64; the width analysis (model.widths) "
            f"rejects artifacts that allow it"
        )


@dataclass(frozen=True)
class SoftmaxParams:
    """Fixed-point parameters of the integer softmax (SPEC §5).

    ``C = round(c · log2(e) · 2^(G+H))`` folds the real scale ``c`` of a score unit.
    """

    C: int
    G: int = 6
    H: int = 16
    F: int = 15
    P: int = 12

    def __post_init__(self) -> None:
        for name, lo, hi in (("G", 0, 12), ("H", 0, 40), ("F", 1, 30), ("P", 1, 30)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"softmax parameter {name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.C, int) or self.C < 0:
            raise ValueError(f"softmax parameter C must be a non-negative integer, got {self.C!r}")


@dataclass(frozen=True)
class LayerNormParams:
    """Fixed-point parameters of the integer LayerNorm (SPEC §5): ``K``, ``P`` and the eps term ``E``."""

    E: int
    K: int = 16
    P: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.E, int) or self.E < 1:
            raise ValueError(f"layernorm parameter E must be an integer >= 1, got {self.E!r}")
        if not isinstance(self.K, int) or not isinstance(self.P, int) or not 0 <= self.P <= self.K <= 40:
            raise ValueError(
                f"layernorm parameters need integers 0 <= P <= K <= 40, got K={self.K}, P={self.P}"
            )


def softmax_constant(c: float, G: int = 6, H: int = 16) -> int:
    """``C = round(c · log2(e) · 2^(G+H))`` for a real score unit ``c`` (export time only)."""
    return int(round(c * math.log2(math.e) * 2 ** (G + H)))


def layernorm_eps_term(eps: float, D: int, unit: float) -> int:
    """``E = max(1, round(eps · D² / u²))`` for input unit ``u`` (export time only)."""
    return max(1, int(round(eps * D * D / (unit * unit))))


def isqrt(x: np.ndarray) -> np.ndarray:
    """Exact floor square root of non-negative int64 values (digit-by-digit, integer only)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"isqrt takes integers, got dtype {x.dtype}")
    if x.size and (int(x.min()) < 0 or int(x.max()) > _INT64_MAX):
        raise ValueError(f"isqrt takes values in [0, 2^63 - 1], got [{int(x.min())}, {int(x.max())}]")
    x = x.astype(np.int64, copy=True)
    res = np.zeros_like(x)
    bit = np.int64(1) << np.int64(62)
    for _ in range(32):
        trial = res + bit
        ge = x >= trial
        x = np.where(ge, x - trial, x)
        res = np.where(ge, (res >> 1) + bit, res >> 1)
        bit >>= 2
    return res


def exp2_lut(G: int, F: int) -> np.ndarray:
    """``LUT[r] = round(2^F · 2^(−r/2^G))`` for ``r`` in ``[0, 2^G)``, computed exactly in integers.

    ``round`` is half-up; the value is found by integer comparison of ``x^(2^G)`` against
    ``2^(F·2^G − r)`` so no float rounding can change an entry.
    """
    n = 1 << G
    lut = np.zeros(n, dtype=np.int64)
    for r in range(n):
        # largest y with y^n <= 2^(F*n - r), i.e. floor(2^F * 2^(-r/n)), then decide half-up on 2y+1
        target = 1 << (F * n - r)
        lo, hi = 0, 1 << (F + 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid**n <= target:
                lo = mid
            else:
                hi = mid - 1
        y = lo
        # round half-up: take y+1 when (y + 1/2)^n <= target, i.e. (2y+1)^n <= target * 2^n
        if (2 * y + 1) ** n <= target << n:
            y += 1
        lut[r] = y
    return lut


_LUT_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _lut(G: int, F: int) -> np.ndarray:
    key = (G, F)
    if key not in _LUT_CACHE:
        _LUT_CACHE[key] = exp2_lut(G, F)
    return _LUT_CACHE[key]


def int_softmax(z: np.ndarray, params: SoftmaxParams, probe: Probe | None = None) -> np.ndarray:
    """Integer softmax along the last axis (SPEC §5). Output unit ``2^−P``; int64.

    ``d = max(Z) − Z``; ``t = (d·C) >> H``; ``e = LUT[t mod 2^G] >> (t >> G)`` (0 once the shift
    exceeds F); ``p = floor(e · 2^P / Σe)``.

    ``probe``, if given, sees ``exponent_arg`` (d·C), ``sum`` (Σe) and ``numerator`` (e·2^P).
    Raises ``OverflowError`` if an intermediate could leave int64 for these scores.
    """
    z = np.asarray(z)
    if z.dtype.kind not in "iu":
        raise TypeError(f"int_softmax takes integer scores, got dtype {z.dtype}")
    if z.size:
        zmax = max(abs(int(z.min())), abs(int(z.max())))
        _require_int64("exponent argument d·C", 2 * zmax * params.C, "int_softmax")
        _require_int64("sum Σe", z.shape[-1] << params.F, "int_softmax")
        _require_int64("numerator e·2^P", 1 << (params.F + params.P), "int_softmax")
    z = z.astype(np.int64)
    G, F = params.G, params.F
    d = z.max(axis=-1, keepdims=True) - z
    arg = d * params.C
    t = arg >> params.H
    shift = np.minimum(t >> G, F + 1)
    e = _lut(G, F)[t & ((1 << G) - 1)] >> shift
    total = e.sum(axis=-1, keepdims=True)
    num = e << params.P
    if probe is not None:
        probe("exponent_arg", arg)
        probe("sum", total)
        probe("numerator", num)
    return num // total


def int_layernorm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    params: LayerNormParams,
    probe: Probe | None = None,
) -> np.ndarray:
    """Integer LayerNorm along the last axis (SPEC §5). Output unit ``2^−P``; int64.

    ``c_i = D·X_i − S1``, ``σ = isqrt(D·S2 − S1² + E)``, ``y_i = ((c_i·Γ_i) // σ) >> (K − P) + B_i``.
    ``gamma`` and ``beta`` are the integer ``Γ = round(γ·2^K)`` and ``B = round(β·2^P)``.

    ``probe``, if given, sees ``s1``, ``s2``, ``radicand`` (D·S2 − S1² + E), ``product`` (c_i·Γ_i)
    and ``output``. Raises ``OverflowError`` if an intermediate could leave int64 for this input.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"int_layernorm takes an integer input, got dtype {x.dtype}")
    D = x.shape[-1]
    if np.shape(gamma) != (D,) or np.shape(beta) != (D,):
        raise ValueError(f"gamma/beta must have shape ({D},), got {np.shape(gamma)} and {np.shape(beta)}")
    gamma = np.asarray(gamma)
    beta = np.asarray(beta)
    if gamma.dtype.kind not in "iu" or beta.dtype.kind not in "iu":
        raise TypeError(f"gamma/beta must be integer, got dtypes {gamma.dtype} and {beta.dtype}")
    if x.size:
        # the bounds of model.widths for this input: every intermediate must fit int64
        umax = max(abs(int(x.min())), abs(int(x.max())))
        gmax = max(abs(int(gamma.min())), abs(int(gamma.max())))
        bmax = max(abs(int(beta.min())), abs(int(beta.max())))
        _require_int64("radicand D·S2 − S1² + E", D * D * umax * umax + params.E, "int_layernorm")
        _require_int64("product c·Γ", 2 * D * umax * gmax, "int_layernorm")
        _require_int64("output", 2 * D * umax * gmax + bmax, "int_layernorm")
    x = x.astype(np.int64)
    s1 = x.sum(axis=-1, keepdims=True)
    s2 = (x * x).sum(axis=-1, keepdims=True)
    c = D * x - s1
    radicand = D * s2 - s1 * s1 + params.E
    sigma = isqrt(radicand)
    product = c * gamma.astype(np.int64)
    y = (product // sigma >> (params.K - params.P)) + beta.astype(np.int64)
    if probe is not None:
        probe("s1", s1)
        probe("s2", s2)
        probe("radicand", radicand)
        probe("product", product)
        probe("output", y)
    return y
