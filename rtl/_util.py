"""Small shared helpers for the RTL generators (parameter validation, packing of memory inits)."""

from __future__ import annotations

import numbers

__all__ = ["check_int", "ceil_div", "pack_lanes"]


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as ``int`` or raise ``ValueError`` naming the parameter and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{name} must be in {rng}, got {v}")
    return v


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pack_lanes(values, width: int) -> int:
    """Pack a sequence of integers (two's complement, ``width`` bits each) LSB-first."""
    out = 0
    mask = (1 << width) - 1
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out
