"""SPEC §10 counting rule of the differential units' arithmetic (one definition)."""

from __future__ import annotations

__all__ = ["softmax_row_cost", "layernorm_row_cost"]


def softmax_row_cost(n: int, differential: bool) -> tuple[int, int]:
    """(MACs, ACs) of one softmax row over ``n`` scores; ``differential`` adds the running-sum
    accumulations and the output deltas (``n`` ACs each)."""
    macs, acs = 2 * n, 3 * n - 2
    return macs, acs + (2 * n if differential else 0)


def layernorm_row_cost(D: int, differential: bool) -> tuple[int, int]:
    """(MACs, ACs) of one LayerNorm row over ``D`` channels; ``differential`` as for the softmax."""
    macs, acs = 4 * D + 3, 4 * D
    return macs, acs + (2 * D if differential else 0)
