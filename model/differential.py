"""Differential wrapper (SPEC §5): running sum in, ``op(X(t)) − op(X(t−1))`` out, row by row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DifferentialOp"]


class DifferentialOp:
    """Turns a row-wise integer operator into its differential (spiking) form.

    Keeps ``X(t)``, the running sum of its input, and ``Y(t−1)``. At ``t = 0`` every row is computed
    (``Y(−1) = 0``); afterwards only rows whose input changed are recomputed, the others emit zeros.
    The outputs therefore sum to ``op(total input)``.

    Parameters
    ----------
    op:
        Row-wise function on an int64 array of shape ``(rows, width)``; returns int64 of the same shape.
    shape:
        Shape of the operand; the operator acts on its last axis.
    """

    def __init__(self, op: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...]):
        self.op = op
        self.shape = tuple(shape)
        self.reset()

    def reset(self) -> None:
        self.X = np.zeros(self.shape, dtype=np.int64)
        self.Y = np.zeros(self.shape, dtype=np.int64)
        self.started = False
        self.rows_computed = np.zeros(self.shape[0] if len(self.shape) > 1 else 1, dtype=np.int64)

    def step(self, delta: np.ndarray) -> np.ndarray:
        """Add ``delta`` to the running sum; return ``Y(t) − Y(t−1)`` (int64)."""
        if delta.shape != self.shape:
            raise ValueError(f"differential operator expects shape {self.shape}, got {delta.shape}")
        width = self.shape[-1]
        X = self.X.reshape(-1, width)
        d = np.asarray(delta, dtype=np.int64).reshape(-1, width)
        X += d
        out = np.zeros_like(X)
        if not self.started:
            rows = np.arange(X.shape[0])
            self.started = True
        else:
            rows = np.flatnonzero(d.any(axis=1))
        if rows.size:
            y_new = self.op(X[rows])
            Y = self.Y.reshape(-1, width)
            out[rows] = y_new - Y[rows]
            Y[rows] = y_new
        per_lead = max(1, X.shape[0] // self.rows_computed.shape[0])
        np.add.at(self.rows_computed, rows // per_lead, 1)
        return out.reshape(self.shape)
