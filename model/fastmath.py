"""Exact integer arithmetic on float BLAS and float vector units, chosen from proven bounds.

Every integer of magnitude ``< 2^24`` is a float32, every one ``< 2^53`` a float64. A sum or product
of such integers is computed exactly in that format whenever every intermediate (each product and each
partial sum, in whatever order BLAS adds them) stays below that limit, and a floor division ``n // d``
(``d >= 1``) is exact as ``floor(n / d)`` whenever ``|n|`` is below it: the correctly rounded quotient
is within ``|n/d|·2^−p`` of the true one, less than ``1/d``, the least distance from a non-integer
quotient to an integer. The bounds come from the width analysis (:mod:`~equispike.model.widths`); when
a bound reaches the limit the int64 definition runs instead. Every kernel here is checked against the
integer definition of its rule (:mod:`~equispike.model.intops`, :mod:`~equispike.model.neurons`) by the
property tests, at its bound too.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "F32_LIMIT",
    "F64_LIMIT",
    "exact_dtype",
    "wide_dtype",
    "SOFTMAX_TABLE_MAX",
    "matmul_exact",
    "floor_div",
    "floor_shift",
    "quantize_exact",
    "isqrt_float",
    "softmax_exact",
    "layernorm_exact",
    "keep_freed_memory",
]

F32_LIMIT = 1 << 24
F64_LIMIT = 1 << 53


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to 32 MiB in the process (``mallopt``), once per process.

    The golden model allocates fresh temporaries of a few hundred KiB per operator and step. By
    default glibc serves them with ``mmap`` and returns them on free, so every step pays page faults
    (about 40 % of the QANN's time on the reference model). Returns whether the setting was applied
    (False off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 256 << 20) == 1
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR_TUNED = ok
    return ok


def exact_dtype(bound: int) -> np.dtype:
    """Cheapest dtype that holds every intermediate of magnitude ``<= bound`` exactly.

    float32 when ``bound < 2^24``, float64 when ``bound < 2^53``, int64 otherwise (the fallback).
    """
    bound = int(bound)
    if bound < 0:
        raise ValueError(f"bound must be non-negative, got {bound}")
    if bound < F32_LIMIT:
        return np.dtype(np.float32)
    if bound < F64_LIMIT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def wide_dtype(bound: int) -> np.dtype:
    """float64 when ``bound < 2^53``, else int64: for values whose operators need float64 arithmetic."""
    return np.dtype(np.int64) if exact_dtype(bound) == np.int64 else np.dtype(np.float64)


def matmul_exact(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """``a @ b`` of integer-valued operands, exact, in the dtype :func:`exact_dtype` gives ``bound``.

    ``bound`` must bound ``Σ_k |a_ik|·|b_kj|`` for every output (it then bounds every product and every
    partial sum in any summation order). The result holds integers (float32, float64 or int64).
    """
    dt = exact_dtype(bound)
    return np.matmul(np.asarray(a).astype(dt, copy=False), np.asarray(b).astype(dt, copy=False))


def floor_div(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``floor(n / d)`` for integer-valued ``n`` and ``d >= 1`` of one dtype.

    Float operands must satisfy ``|n| < 2^p`` (``p`` = 24 or 53) and ``d < 2^p``: the caller picks the
    dtype with :func:`exact_dtype` from a bound of ``|n|``.
    """
    if n.dtype.kind == "f":
        return np.floor(np.divide(n, d))
    return n // d


def floor_shift(n: np.ndarray, k: int) -> np.ndarray:
    """``n >> k`` (arithmetic) for integer-valued ``n``; exact in float too (a power-of-two division)."""
    if n.dtype.kind == "f":
        return np.floor(n * (1.0 / (1 << k)))
    return n >> k


def quantize_exact(a: np.ndarray, theta: np.ndarray, qn: int, qp: int, overwrite: bool = False) -> np.ndarray:
    """``clamp(floor((A + floor(Θ/2)) / Θ), Qn, Qp)`` in ``a``'s dtype (float for the fast path).

    Float input requires ``|A| + Θ < 2^p``; ``theta`` holds integers ``>= 1`` (scalar or per channel).
    ``overwrite=True`` lets the result reuse ``a``'s memory.
    """
    th, half = _theta_constants(theta, a.dtype)
    n = np.add(a, half, out=a if overwrite else None)
    if n.dtype.kind == "f":
        np.divide(n, th, out=n)
        np.floor(n, out=n)
    else:
        np.floor_divide(n, th, out=n)
    return n.clip(qn, qp, out=n)


_THETA_CONSTANTS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _theta_constants(theta, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``Θ`` and ``floor(Θ/2)`` in ``dtype``, read-only, cached by ``Θ``'s content (a quantizer's
    thresholds are asked for at every call; converting them cost more than a small site's work)."""
    th_int = np.asarray(theta, dtype=np.int64)
    key = (th_int.tobytes(), th_int.shape, np.dtype(dtype))
    hit = _THETA_CONSTANTS.get(key)
    if hit is None:
        if len(_THETA_CONSTANTS) >= 1024:  # many models in one process (the random checks)
            _THETA_CONSTANTS.clear()
        th, half = th_int.astype(dtype), (th_int // 2).astype(dtype)
        th.flags.writeable = half.flags.writeable = False
        hit = _THETA_CONSTANTS[key] = (th, half)
    return hit


def isqrt_float(x: np.ndarray) -> np.ndarray:
    """Exact floor square root of non-negative integer-valued float64 ``x < 2^53``.

    ``sqrt`` of the float is correctly rounded, within one of the true root; one exact integer
    correction each way (``r² <= x < (r+1)²``, all terms ``< 2^53``) fixes it.
    """
    r = np.floor(np.sqrt(x))
    while True:
        over = r * r > x
        under = (r + 1) * (r + 1) <= x
        if not (over.any() or under.any()):
            return r
        r = r - over + under


_TABLES: dict[tuple[int, ...], np.ndarray] = {}
SOFTMAX_TABLE_MAX = 1 << 20


def _exp_by_distance(params, d_max: int) -> np.ndarray:
    """``2^P · (LUT[t mod 2^G] >> (t >> G))`` with ``t = (d·C) >> H``, for every distance ``d <= d_max``.

    A function of the integer ``d = max(Z) − Z_j`` alone, tabulated exactly in integers (float64
    holds it: ``2^(F+P) < 2^53`` is required by the caller).
    """
    key = (params.C, params.G, params.H, params.F, params.P, d_max)
    if key not in _TABLES:
        from .intops import exp2_lut

        G, F = params.G, params.F
        lut = exp2_lut(G, F)
        if d_max * params.C < 1 << 62:
            t = (np.arange(d_max + 1, dtype=np.int64) * params.C) >> params.H
        else:  # Python integers: d·C may pass 64 bits, t is then far beyond the table's last entry
            t = np.array([min((v * params.C) >> params.H, (F + 1) << G) for v in range(d_max + 1)],
                         dtype=np.int64)
        e = lut[t & ((1 << G) - 1)] >> np.minimum(t >> G, F + 1)
        _TABLES[key] = (e << params.P).astype(np.float64)
    return _TABLES[key]


def softmax_exact(z: np.ndarray, params, z_bound: int) -> np.ndarray:
    """:func:`~equispike.model.intops.int_softmax` of integer-valued ``z`` with ``|z| <= z_bound``.

    The exponent depends only on the distance ``d = max(Z) − Z_j <= 2·z_bound``, so it is read from a
    table of every ``d`` (:func:`_exp_by_distance`); the row sum and the division run in float64. This
    path needs ``2^(F+P)`` and ``n·2^F`` below ``2^53`` and a table of at most ``2^20`` entries;
    otherwise the int64 definition runs. Returns int64 values, or on the fast path float32 when
    ``2^P < 2^24`` (every output is within ``[0, 2^P]``), else float64.
    """
    from .intops import int_softmax

    n = z.shape[-1]
    F, P = params.F, params.P
    d_max = 2 * int(z_bound)
    if max(1 << (F + P), n << F) >= F64_LIMIT or d_max >= SOFTMAX_TABLE_MAX:
        return int_softmax(np.asarray(z).astype(np.int64), params)
    # Work on the transpose (n, rows): the row max, the distance and the division by the row sum
    # then broadcast along contiguous memory (per-row operations on a short last axis cost numpy an
    # inner-loop call per row, 3-4x slower). The copy casts to integer indices in the same pass.
    zt = np.empty((n, z.size // n), dtype=np.intp)
    zt[...] = z.reshape(-1, n).T
    d = np.subtract(zt.max(axis=0), zt, out=zt)
    e = np.take(_exp_by_distance(params, d_max), d)
    # row sums (every partial sum <= n·2^(F+P) < 2^53: exact in any order), scaled back by 2^-P
    total = e.sum(axis=0)
    total *= 1.0 / (1 << P)
    np.divide(e, total, out=e)
    np.floor(e, out=e)
    # the transposing copy back writes the output's dtype (the cast is free)
    out = np.empty(z.shape, dtype=exact_dtype(1 << P))
    out.reshape(-1, n).T[...] = e
    return out


def layernorm_exact(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, params, x_bound: int,
                    gamma_max: int | None = None, y_bound: int | None = None) -> np.ndarray:
    """:func:`~equispike.model.intops.int_layernorm` of integer-valued ``x`` with ``|x| <= x_bound``.

    Runs in float64 when the radicand bound ``D²·x_bound² + E`` and the product bound
    ``2·D·x_bound·max|Γ|`` are below ``2^53``; otherwise calls the int64 definition. The two floors
    ``((c·Γ) // σ) >> (K − P)`` are one floor division by ``σ·2^(K−P)`` (nested floor divisions by
    positive integers compose), exact as a float division. Returns float64 (fast path) or int64 values;
    given ``y_bound``, a proven bound of ``|floor(c·Γ / (σ·2^(K−P)))| + |B|`` (hence of ``|y|``;
    :func:`~equispike.model.widths.layernorm_output_bound` is one) below ``2^24``, the fast path
    returns float32, with ``B`` added in float32 (exact: every operand and sum is below ``2^24``),
    half the memory for whatever reads the output.
    """
    from .intops import int_layernorm

    D = x.shape[-1]
    xb = int(x_bound)
    gmax = int(np.abs(np.asarray(gamma, dtype=np.int64)).max()) if gamma_max is None else int(gamma_max)
    if max(D * D * xb * xb + params.E, 2 * D * xb * gmax) >= F64_LIMIT:
        return int_layernorm(np.asarray(x).astype(np.int64), gamma, beta, params)
    xf = np.asarray(x, dtype=np.float64)
    # row sums on BLAS, 3x faster than a reduction over a short last axis (every partial sum is
    # within D·x_bound < 2^53: exact in any order)
    s1 = (xf.reshape(-1, D) @ np.ones((D, 1))).reshape(xf.shape[:-1] + (1,))
    s2 = np.einsum("...i,...i->...", xf, xf)[..., None]
    c = np.multiply(xf, float(D))
    c -= s1
    sigma = isqrt_float(D * s2 - s1 * s1 + params.E)
    sigma *= float(1 << (params.K - params.P))
    c *= np.asarray(gamma, dtype=np.float64)
    c /= sigma
    np.floor(c, out=c)
    if y_bound is not None and exact_dtype(y_bound) == np.float32:
        # cast, then add B in float32: faster than an addition writing float32 from float64
        y = c.astype(np.float32)
        y += np.asarray(beta, dtype=np.float32)
        return y
    c += np.asarray(beta, dtype=np.float64)
    return c
