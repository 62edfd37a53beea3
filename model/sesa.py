"""Spike × spike products (SESA, SPEC §4): additions only, exact running products."""

from __future__ import annotations

import numpy as np

from .energy import spike_acs
from .fastmath import exact_dtype

__all__ = ["SpikeProduct"]


class SpikeProduct:
    """Running product of two spiking operands, emitted as per-step deltas.

    With ``A(t) = Σ_{τ≤t} a(τ)`` and ``B(t)`` likewise, each step emits
    ``ΔP(t) = a(t)·op(B(t)) + A(t−1)·op(b(t))``, which telescopes to ``A(t)·op(B(t))``.
    ``transpose_b=True`` gives ``op(B) = Bᵀ`` over the last two axes (Q·Kᵀ); ``False`` gives attn·V.
    Leading axes (batch, heads) broadcast.

    The model computes the same integers as ``P(t) − P(t−1)`` with ``P(t) = A(t)·op(B(t))`` kept from
    the previous step: one stacked product per step instead of two (at attention sizes numpy's
    per-matrix overhead dominates). Given the tracer bounds ``a_max >= |A|`` and ``b_max >= |B|``,
    every partial sum of ``P`` is within ``inner·a_max·b_max`` and every ``|ΔP|`` (by the two-term
    rule) within ``inner·(a_max + b_max)``; the products and differences run on the float path the
    larger of the two allows (:func:`~equispike.model.fastmath.exact_dtype`); without them, in int64.

    Attributes
    ----------
    acs:
        Accumulate operations so far per element of the first axis (the batch): one per
        (nonzero spike × fan-out).
    dtype:
        Arithmetic dtype of the running sums and products.
    """

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], transpose_b: bool,
                 a_max: int | None = None, b_max: int | None = None):
        self.a_shape, self.b_shape = tuple(a_shape), tuple(b_shape)
        self.transpose_b = transpose_b
        inner_a = a_shape[-1]
        inner_b = b_shape[-1] if transpose_b else b_shape[-2]
        if inner_a != inner_b:
            raise ValueError(f"inner dimensions differ: a {a_shape}, b {b_shape}, transpose_b={transpose_b}")
        if (a_max is None) != (b_max is None):
            raise ValueError("give both a_max and b_max, or neither")
        if a_max is None:
            self.bound = None
            self.dtype = np.dtype(np.int64)
        else:
            if min(a_max, b_max) < 0:
                raise ValueError(f"a_max and b_max must be non-negative, got {a_max}, {b_max}")
            self.bound = int(inner_a) * max(int(a_max) * int(b_max), int(a_max) + int(b_max))
            self.dtype = exact_dtype(self.bound)
        self.fan_a = self.b_shape[-2] if transpose_b else self.b_shape[-1]
        self.fan_b = self.a_shape[-2]
        self.reset()

    def reset(self) -> None:
        self.A = np.zeros(self.a_shape, dtype=self.dtype)
        # the running sum is kept as op(B), contiguous: the product then takes both operands in
        # BLAS order (a transposed view costs numpy's stacked matmul about 40 % more)
        self._opB = np.zeros(self._op(np.empty(self.b_shape, dtype=np.int8)).shape, dtype=self.dtype)
        self._P = np.zeros(self.a_shape[:-1] + self._opB.shape[-1:], dtype=self.dtype)
        self.acs = np.zeros(self.a_shape[0], dtype=np.int64)

    @property
    def B(self) -> np.ndarray:
        """Running sum ``B(t)`` of the second operand (a view)."""
        return self._op(self._opB)

    def _op(self, m: np.ndarray) -> np.ndarray:
        return np.swapaxes(m, -1, -2) if self.transpose_b else m

    def _nonzero(self, x: np.ndarray) -> np.ndarray:
        return np.count_nonzero(x.reshape(self.a_shape[0], -1), axis=1)

    def step(self, a: np.ndarray | None, b: np.ndarray | None, nz_a: np.ndarray | None = None,
             nz_b: np.ndarray | None = None):
        """Consume ternary spikes ``a(t)``, ``b(t)``; return ``ΔP(t)``.

        Called with two arrays it returns ``ΔP(t)`` as int64 (the reference interface). ``None``
        stands for an all-zero operand; then (and whenever ``nz_a``/``nz_b``, the nonzero spike counts
        per batch element, are given) it returns ``(ΔP or None, ACs of this step per batch element)``,
        with ``ΔP`` in :attr:`dtype` and None when both operands are silent.
        """
        reference = a is not None and b is not None and nz_a is None and nz_b is None
        if a is None and b is None:
            return None, None
        acs = np.zeros(self.a_shape[0], dtype=np.int64)
        if b is not None:
            if b.shape != self.b_shape:
                raise ValueError(f"b must have shape {self.b_shape}, got {b.shape}")
            self._opB += self._op(b)
            acs += spike_acs(self._nonzero(b) if nz_b is None else nz_b, self.fan_b)
        if a is not None:
            if a.shape != self.a_shape:
                raise ValueError(f"a must have shape {self.a_shape}, got {a.shape}")
            self.A += a
            acs += spike_acs(self._nonzero(a) if nz_a is None else nz_a, self.fan_a)
        P = np.matmul(self.A, self._opB)
        delta = np.subtract(P, self._P, out=self._P)  # the old product's memory holds ΔP
        self._P = P
        self.acs += acs
        if reference:
            return delta.astype(np.int64)
        return delta, acs
