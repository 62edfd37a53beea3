"""Spike-driven self-attention of the Meta-SpikeFormer family (SPEC §8), binary spikes, integer only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .neurons import LIFArray

__all__ = ["SDSA_SATURATION", "SDSA_THETA", "sdsa1", "coactivation", "SDSA3"]

SDSA_SATURATION = 8  # M entries and Q·M may saturate here without changing any output
SDSA_THETA = 4  # attention LIF threshold: input scale 0.125 and threshold 0.5 fold into θ = 4


def _check_binary(name: str, x: np.ndarray) -> None:
    if x.size and (int(x.min()) < 0 or int(x.max()) > 1):
        raise ValueError(f"{name} must hold binary spikes (0/1)")


def sdsa1(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """SDSA-1 for one step: ``Q ⊗ SN(Σ_tokens K ⊗ V)`` per channel, tokens on axis −2.

    The attention neuron (threshold 0.5 on an integer count) fires when the count is at least 1.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_binary(name, x)
    count = (k.astype(np.int32) * v.astype(np.int32)).sum(axis=-2, keepdims=True)
    fire = (count >= 1).astype(np.int8)
    return (q.astype(np.int8) * fire).astype(np.int8)


def coactivation(k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """``M = Kᵀ·V`` per head, entries saturated at 8: shape ``(..., heads, d_h, d_h)``."""
    *lead, n, d = k.shape
    if d % heads:
        raise ValueError(f"channels {d} not divisible by heads {heads}")
    dh = d // heads
    kh = k.reshape(*lead, n, heads, dh).swapaxes(-3, -2).astype(np.int32)
    vh = v.reshape(*lead, n, heads, dh).swapaxes(-3, -2).astype(np.int32)
    return np.minimum(np.matmul(np.swapaxes(kh, -1, -2), vh), SDSA_SATURATION)


class SDSA3:
    """SDSA-3 over time: per step ``x = min(Q·M, 8)`` per head into the attention LIF (θ = 4).

    At T = 1 it fires exactly when ``Q·M ≥ 8``.
    """

    def __init__(self, shape: tuple[int, ...], heads: int):
        self.shape = tuple(shape)
        self.heads = heads
        self.lif = LIFArray(self.shape, SDSA_THETA, v_dtype=np.int8)

    def reset(self) -> None:
        self.lif.reset()

    def step(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        check: Callable[[str, np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """One step; ``check(quantity, values)``, when given, sees every intermediate a width bounds:
        ``"coactivation"`` (M), ``"input"`` (``min(Q·M, 8)``) and ``"membrane"`` (``V + x``)."""
        for name, x in (("q", q), ("k", k), ("v", v)):
            _check_binary(name, x)
        m = coactivation(k, v, self.heads)
        *lead, n, d = q.shape
        dh = d // self.heads
        qh = q.reshape(*lead, n, self.heads, dh).swapaxes(-3, -2).astype(np.int32)
        x = np.minimum(np.matmul(qh, m), SDSA_SATURATION)
        x = x.swapaxes(-3, -2).reshape(q.shape).astype(np.int8)
        if check is not None:
            check("coactivation", m)
            check("input", x)
            check("membrane", self.lif.V.astype(np.int16) + x)
        return self.lif.step(x)
