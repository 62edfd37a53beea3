"""SPEC §10 energy counting (:mod:`equispike.model.energy`): the per-row costs follow the itemized rule,
and the golden SNN's counts equal counts derived independently from its recorded spikes."""

from __future__ import annotations

import numpy as np
import pytest

from equispike.model.energy import (
    AC_PJ,
    MAC_PJ,
    dense_counts,
    energy_pj,
    layernorm_row_cost,
    softmax_row_cost,
    spike_acs,
)
from equispike.model.factory import random_images, random_vit
from equispike.model.vit import ViTSNN, dense_macs


@pytest.mark.parametrize("n", [1, 2, 17, 197])
def test_softmax_row_cost_is_the_itemized_rule(n):
    products, divisions = n, n
    max_cmp, subtract, sum_add, accumulate, delta = n - 1, n, n - 1, n, n
    assert softmax_row_cost(n, differential=True) == (products + divisions,
                                                      max_cmp + subtract + sum_add + accumulate + delta)
    assert softmax_row_cost(n, differential=False) == (products + divisions, max_cmp + subtract + sum_add)


@pytest.mark.parametrize("D", [1, 16, 64, 768])
def test_layernorm_row_cost_is_the_itemized_rule(D):
    squares, dx, cg, div, ds2, s1sq, sqrt = D, D, D, D, 1, 1, 1
    sums, minus_s1, radicand, plus_b, accumulate, delta = 2 * (D - 1), D, 2, D, D, D
    macs = squares + dx + cg + div + ds2 + s1sq + sqrt
    assert layernorm_row_cost(D, differential=True) == (macs, sums + minus_s1 + radicand + plus_b + accumulate
                                                        + delta)
    assert layernorm_row_cost(D, differential=False) == (macs, sums + minus_s1 + radicand + plus_b)


def test_cost_functions_reject_bad_widths():
    with pytest.raises(ValueError, match="n must be >= 1"):
        softmax_row_cost(0, True)
    with pytest.raises(TypeError, match="D must be an integer"):
        layernorm_row_cost(16.0, True)
    with pytest.raises(ValueError, match="fan_out"):
        spike_acs(3, 0)


def test_energy_formula():
    macs, acs = np.array([0, 10, 3]), np.array([7, 0, 5])
    got = energy_pj(macs, acs)
    for m, a, e in zip(macs, acs, got, strict=True):
        assert e == MAC_PJ * m + AC_PJ * a


def test_dense_counts_of_the_qann():
    art = random_vit(1, depth=2, dim=32, heads=2, levels=8, mlp_ratio=2)
    d = art.dims
    N, D, F = d.tokens, d.dim, d.mlp_dim
    counts = dense_counts(art)
    linear = d.patches * d.patch_dim * D + d.depth * (N * D * 3 * D + N * D * D + N * D * F + N * F * D)
    linear += D * d.classes
    attention = d.depth * 2 * (d.heads * N * N * d.head_dim)
    ln = (2 * d.depth + 1) * N
    sm = d.depth * d.heads * N
    want_macs = linear + attention + ln * (4 * D + 3) + sm * 2 * N
    want_acs = ln * 4 * D + sm * (3 * N - 2)
    assert sum(m for m, _ in counts.values()) == want_macs == dense_macs(art)
    assert sum(a for _, a in counts.values()) == want_acs


def _nonzero(x: np.ndarray) -> np.ndarray:
    return np.count_nonzero(x.reshape(x.shape[0], -1), axis=1)


def _heads(x: np.ndarray, H: int) -> np.ndarray:
    B, N, D = x.shape
    return x.reshape(B, N, H, D // H).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_snn_counts_equal_counts_from_the_records(seed):
    """ACs of every AW and SESA unit from the recorded spikes; the rows each differential unit
    recomputes from the running sums rebuilt out of the recorded spikes (all rows at t = 0, then the
    rows whose input changed); MACs of the analog first layer once. Per image, unit by unit."""
    art = random_vit(seed, depth=2, dim=16, heads=2, levels=8)
    d, S = art.dims, art.sites
    B, N, D, H, dh = 3, d.tokens, d.dim, d.heads, d.head_dim
    images = random_images(seed + 5, art, B)
    res = ViTSNN(art).run(images, record=True, record_currents=False)
    assert res.settled
    sp = {k: v["spikes"].astype(np.int64) for k, v in res.records.items()}  # (T, B, ...)
    T = res.steps
    want: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # unit -> (acs, macs) per image
    zero = np.zeros(B, dtype=np.int64)

    def aw(unit: str, site: str, fan_out: int, cls_only: bool = False) -> None:
        s = sp[site][:, :, 0, :] if cls_only else sp[site]
        want[unit] = (sum(_nonzero(s[t]) for t in range(T)) * fan_out, zero)

    def rows_changed(x_per_step: np.ndarray) -> np.ndarray:
        """Rows recomputed per image: all at t = 0, then rows whose input delta is nonzero."""
        rows = x_per_step.reshape(T, B, -1, x_per_step.shape[-1])
        n = np.full(B, rows.shape[2], dtype=np.int64)
        for t in range(1, T):
            n += np.count_nonzero(rows[t].any(axis=-1), axis=1)
        return n

    want["patch_embed"] = (zero, np.full(B, d.patches * d.patch_dim * D, dtype=np.int64))
    # residual deltas per step, rebuilt from the spikes (every row counts at t = 0 anyway)
    du = np.zeros((T, B, N, D), dtype=np.int64)
    du[:, :, 1:, :] += sp["patch_embed"] * S["patch_embed"].M
    ln_cost, sm_cost = (4 * D + 3, 6 * D), (2 * N, 5 * N - 2)
    for i in range(d.depth):
        p = f"blocks.{i}."
        n = rows_changed(du)
        want[p + "ln1"] = (n * ln_cost[1], n * ln_cost[0])
        aw(p + "qkv", p + "norm1", 3 * D)
        q, k = _heads(np.cumsum(sp[p + "q"], 0).reshape(T * B, N, D), H), _heads(
            np.cumsum(sp[p + "k"], 0).reshape(T * B, N, D), H)
        prod = (q @ k.swapaxes(-1, -2)).reshape(T, B, H, N, N)
        dz = np.diff(prod, axis=0, prepend=0)
        n = rows_changed(dz)
        want[p + "softmax"] = (n * sm_cost[1], n * sm_cost[0])
        qk_spikes = sum(_nonzero(sp[p + "q"][t]) + _nonzero(sp[p + "k"][t]) for t in range(T))
        want[p + "qk"] = (qk_spikes * N, zero)
        want[p + "av"] = (sum(_nonzero(sp[p + "attn"][t]) * dh + _nonzero(sp[p + "v"][t]) * N
                              for t in range(T)), zero)
        aw(p + "proj", p + "after_attn", D)
        du += sp[p + "proj"] * S[p + "proj"].M
        n = rows_changed(du)
        want[p + "ln2"] = (n * ln_cost[1], n * ln_cost[0])
        aw(p + "fc1", p + "norm2", d.mlp_dim)
        aw(p + "fc2", p + "fc1", D)
        du += sp[p + "fc2"] * S[p + "fc2"].M
    n = rows_changed(du)
    want["norm"] = (n * ln_cost[1], n * ln_cost[0])
    aw("head", "norm", d.classes, cls_only=True)

    assert set(res.units) == set(want)
    compared = 0
    for unit, (acs, macs) in want.items():
        got = res.units[unit]
        assert np.array_equal(got["acs"], acs), f"{unit} ACs: expected {acs}, got {got['acs']}"
        assert np.array_equal(got["macs"], macs), f"{unit} MACs: expected {macs}, got {got['macs']}"
        compared += 2 * B
    assert np.array_equal(res.acs, sum(a for a, _ in want.values()))
    assert np.array_equal(res.macs, sum(m for _, m in want.values()))
    assert np.array_equal(res.energy_pj(), MAC_PJ * res.macs + AC_PJ * res.acs)
    assert compared == 2 * B * len(want) and (res.acs > 0).all()
