"""Spike × spike products (SESA, SPEC §4): additions only, exact running products."""

from __future__ import annotations

import numpy as np

__all__ = ["SpikeProduct"]


class SpikeProduct:
    """Running product of two spiking operands, emitted as per-step deltas.

    With ``A(t) = Σ_{τ≤t} a(τ)`` and ``B(t)`` likewise, each step emits
    ``ΔP(t) = a(t)·op(B(t)) + A(t−1)·op(b(t))``, which telescopes to ``A(t)·op(B(t))``.
    ``transpose_b=True`` gives ``op(B) = Bᵀ`` over the last two axes (Q·Kᵀ); ``False`` gives attn·V.
    Leading axes (batch, heads) broadcast.

    Attributes
    ----------
    acs:
        Accumulate operations so far per element of the first axis (the batch): one per
        (nonzero spike × fan-out).
    """

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], transpose_b: bool):
        self.a_shape, self.b_shape = tuple(a_shape), tuple(b_shape)
        self.transpose_b = transpose_b
        inner_a = a_shape[-1]
        inner_b = b_shape[-1] if transpose_b else b_shape[-2]
        if inner_a != inner_b:
            raise ValueError(f"inner dimensions differ: a {a_shape}, b {b_shape}, transpose_b={transpose_b}")
        self.reset()

    def reset(self) -> None:
        self.A = np.zeros(self.a_shape, dtype=np.int32)
        self.B = np.zeros(self.b_shape, dtype=np.int32)
        self.acs = np.zeros(self.a_shape[0], dtype=np.int64)

    def _op(self, m: np.ndarray) -> np.ndarray:
        return np.swapaxes(m, -1, -2) if self.transpose_b else m

    def step(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Consume ternary spikes ``a(t)``, ``b(t)``; return ``ΔP(t)`` (int64)."""
        a32 = a.astype(np.int32)
        b32 = b.astype(np.int32)
        self.B += b32
        delta = np.matmul(a32, self._op(self.B)).astype(np.int64)
        delta += np.matmul(self.A, self._op(b32))
        self.A += a32
        fan_a = self.b_shape[-2] if self.transpose_b else self.b_shape[-1]
        fan_b = self.a_shape[-2]
        lead = self.a_shape[0]
        self.acs += np.count_nonzero(a.reshape(lead, -1), axis=1) * fan_a
        self.acs += np.count_nonzero(b.reshape(lead, -1), axis=1) * fan_b
        return delta
