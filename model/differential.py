"""Differential wrapper (SPEC §5): running sum in, ``op(X(t)) − op(X(t−1))`` out, row by row."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

__all__ = ["DifferentialOp"]


def _changed_rows(d: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``d`` that hold a nonzero value."""
    if d.dtype.kind == "f":
        # Σ|d| over a row is 0 exactly when every entry is 0 (no cancellation); BLAS does it fast
        return (np.abs(d) @ _ones(d.shape[1], d.dtype)) != 0
    return d.any(axis=1)


@functools.cache
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only ones vector (cached: asked for at every step of every unit)."""
    v = np.ones(n, dtype=dtype)
    v.flags.writeable = False
    return v


class DifferentialOp:
    """Turns a row-wise integer operator into its differential (spiking) form.

    Keeps ``X(t)``, the running sum of its input, and ``Y(t−1)``. At ``t = 0`` every row is computed
    (``Y(−1) = 0``); afterwards only rows whose input changed are recomputed, the others emit zeros.
    The outputs therefore sum to ``op(total input)``.

    Parameters
    ----------
    op:
        Row-wise function on an integer-valued array of shape ``(rows, width)`` (``dtype``); returns
        integer values of the same shape.
    shape:
        Shape of the operand; the operator acts on its last axis.
    dtype:
        Dtype of the running sums: int64 (default), or float32 / float64 when a bound below
        ``2^24`` / ``2^53`` on ``|X|`` and ``|Y|`` is proven (every sum and difference is then exact;
        :func:`~equispike.model.fastmath.exact_dtype` of the bound).
    out_dtype:
        Integer dtype of the returned deltas, written by the subtraction itself (it spares the
        caller a cast of every output); the caller must prove that every ``|Y(t) − Y(t−1)|`` fits
        it. None (default): the result dtype of the operator's output and ``Y``.

    Attributes
    ----------
    rows_computed:
        Rows recomputed so far per element of the first axis (the batch).
    """

    def __init__(self, op: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], dtype=np.int64,
                 out_dtype=None):
        self.op = op
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.int64), np.dtype(np.float64), np.dtype(np.float32)):
            raise TypeError(f"dtype must be int64, float64 or float32, got {self.dtype}")
        self.out_dtype = None if out_dtype is None else np.dtype(out_dtype)
        if self.out_dtype is not None and self.out_dtype.kind != "i":
            raise TypeError(f"out_dtype must be a signed integer dtype, got {self.out_dtype}")
        self.reset()

    def _delta(self, new: np.ndarray, old: np.ndarray) -> np.ndarray:
        """``new − old`` in :attr:`out_dtype` (exact: both hold integers and the difference fits)."""
        if self.out_dtype is None:
            return new - old
        return np.subtract(new, old, out=np.empty(new.shape, self.out_dtype), casting="unsafe")

    def _out_type(self, y_dtype: np.dtype) -> np.dtype:
        return np.result_type(y_dtype, self.Y.dtype) if self.out_dtype is None else self.out_dtype

    def reset(self) -> None:
        self.X = np.zeros(self.shape, dtype=self.dtype)
        self.Y = np.zeros(self.shape, dtype=self.dtype)
        self.started = False
        self.rows_computed = np.zeros(self.shape[0] if len(self.shape) > 1 else 1, dtype=np.int64)

    def step(self, delta: np.ndarray | None) -> np.ndarray | None:
        """Add ``delta`` to the running sum; return ``Y(t) − Y(t−1)``.

        ``delta=None`` stands for an all-zero input: after the first step nothing is recomputed and
        None (all-zero output) is returned.
        """
        width = self.shape[-1]
        X = self.X.reshape(-1, width)
        lead = self.rows_computed.shape[0]
        per_lead = max(1, X.shape[0] // lead)
        if delta is None:
            if self.started:
                return None
            d = None
        else:
            if delta.shape != self.shape:
                raise ValueError(f"differential operator expects shape {self.shape}, got {delta.shape}")
            d = np.asarray(delta).reshape(-1, width)
            X += d
        Y = self.Y.reshape(-1, width)
        if not self.started:
            self.started = True
            y_new = self.op(X)
            out = self._delta(y_new, Y)
            self.Y = y_new.reshape(self.shape)
            self.rows_computed += per_lead
            return out.reshape(self.shape)
        rows = np.flatnonzero(_changed_rows(d))
        if rows.size == 0:
            return np.zeros(self.shape, dtype=self._out_type(X.dtype))
        if rows.size * 2 >= X.shape[0]:
            # recomputing an unchanged row gives back its stored output (a zero delta): the dense
            # call is the same result, cheaper than a gather and a scatter; only changed rows count
            y_new = self.op(X)
            out = self._delta(y_new, Y)
            self.Y = y_new.reshape(self.shape)
        else:
            y_new = self.op(X[rows])
            out = np.zeros(X.shape, dtype=self._out_type(y_new.dtype))
            out[rows] = y_new - Y[rows]
            Y[rows] = y_new
        if rows.size == X.shape[0]:
            self.rows_computed += per_lead
        else:
            self.rows_computed += np.bincount(rows // per_lead, minlength=lead)
        return out.reshape(self.shape)
