"""Scoreboard comparing golden per-step records with DUT output, element by element."""

from __future__ import annotations

import numpy as np

__all__ = ["Mismatch", "Scoreboard", "zero_padded"]


def zero_padded(expected, width: int):
    """``expected`` with its last axis padded by zeros to ``width`` elements: the golden values of a
    DUT output whose lanes past the real ones (padding of the last beat) must be 0."""
    exp = np.asarray(expected)
    pad = int(width) - exp.shape[-1]
    if pad < 0:
        raise ValueError(f"width {width} is narrower than the expected values ({exp.shape[-1]})")
    return np.concatenate([exp, np.zeros((*exp.shape[:-1], pad), dtype=exp.dtype)], axis=-1)


class Mismatch(AssertionError):
    """First differing element: ``(step, site, index, expected, got)``."""

    def __init__(self, step, site, index, expected, got):
        self.step, self.site, self.index, self.expected, self.got = step, site, index, expected, got
        super().__init__(
            f"mismatch at step {step}, site {site!r}, index {index}: expected {expected}, "
            f"got {got}")


class Scoreboard:
    """Counts compared elements and raises :class:`Mismatch` on the first difference.

    Use :meth:`compare` with whole arrays (golden record of one step and the DUT's values, any
    shape, same size) or :meth:`expect`/:meth:`got` pairs queued in order. ``index`` in the error is
    the multi-dimensional index into the golden array.
    """

    def __init__(self, site: str = ""):
        self.site = site
        self.compared = 0
        self.steps = 0

    def compare(self, step, expected, got, site: str | None = None, mask=None) -> None:
        exp = np.asarray(expected)
        dut = np.asarray(got).reshape(exp.shape)
        diff = exp != dut
        if mask is not None:
            diff &= np.asarray(mask, dtype=bool).reshape(exp.shape)
            n = int(np.count_nonzero(mask))
        else:
            n = exp.size
        if diff.any():
            idx = tuple(int(i) for i in np.argwhere(diff)[0])
            raise Mismatch(step, self.site if site is None else site,
                           idx if len(idx) != 1 else idx[0], int(exp[idx]), int(dut[idx]))
        self.compared += n
        self.steps += 1

    def require(self, minimum: int) -> None:
        """Raises ``AssertionError`` unless more than 0 and at least ``minimum`` elements were
        compared (the message carries the count): a test cannot pass having compared nothing."""
        if not (self.compared > 0 and self.compared >= minimum):
            raise AssertionError(f"{self.site or 'scoreboard'}: {self.compared} elements compared, "
                                 f"at least {max(int(minimum), 1)} required")

    def summary(self) -> str:
        name = self.site or "scoreboard"
        return f"{name}: {self.compared} elements compared over {self.steps} records, 0 mismatches"
