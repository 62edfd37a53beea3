"""The exact fast paths of the golden model (:mod:`equispike.model.fastmath`) equal the int64 path.

Every kernel is compared with the integer definition of its rule on random operands and on operands at
the bound that selects its path; a bound at or past the mantissa must select the next path (float64,
then int64), and the whole model run with every fast path switched off must give the same codes,
spikes and logits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equispike.model import fastmath
from equispike.model.differential import DifferentialOp
from equispike.model.factory import random_images, random_vit
from equispike.model.fastmath import (
    F32_LIMIT,
    F64_LIMIT,
    exact_dtype,
    floor_div,
    isqrt_float,
    layernorm_exact,
    matmul_exact,
    quantize_exact,
    softmax_exact,
)
from equispike.model.intops import LayerNormParams, SoftmaxParams, int_layernorm, int_softmax, isqrt
from equispike.model.linear import AWLinear, aw_current_bound, aw_step
from equispike.model.neurons import quantize
from equispike.model.sesa import SpikeProduct
from equispike.model.vit import ViTSNN, qann_forward
from equispike.model.widths import fast_paths

FAST = settings(max_examples=60, deadline=None)


def assert_same(want: np.ndarray, got: np.ndarray, what: str) -> int:
    """Exact element-for-element equality; returns the number of elements compared."""
    want, got = np.asarray(want), np.asarray(got)
    assert want.shape == got.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(want != got)
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} mismatches, first at {idx}: expected {want[idx]}, got {got[idx]}"
        )
    return want.size


def py_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference product in Python integers (no overflow, no rounding)."""
    return np.array(a, dtype=object) @ np.array(b, dtype=object)


# ---------------------------------------------------------------- path selection
def test_exact_dtype_thresholds():
    assert exact_dtype(0) == np.float32
    assert exact_dtype(F32_LIMIT - 1) == np.float32
    assert exact_dtype(F32_LIMIT) == np.float64
    assert exact_dtype(F64_LIMIT - 1) == np.float64
    assert exact_dtype(F64_LIMIT) == np.int64
    with pytest.raises(ValueError, match="bound"):
        exact_dtype(-1)


@pytest.mark.parametrize("limit", [F32_LIMIT, F64_LIMIT])
def test_matmul_at_its_bound_and_past_it(limit):
    """A sum at ``limit − 1`` is exact on the path its bound selects; one past the limit the next path
    is selected (and is exact), while the narrower float would have rounded."""
    half = limit // 2
    a = np.array([[1, 1, 1]], dtype=np.int64)
    at_bound = np.array([[half], [half - 2], [1]], dtype=np.int64)  # partial sums reach limit − 1
    bound = int((np.abs(a) @ np.abs(at_bound)).max())
    assert bound == limit - 1
    got = matmul_exact(a, at_bound, bound)
    assert got.dtype == exact_dtype(limit - 1)
    assert_same(py_matmul(a, at_bound).astype(np.int64), got.astype(np.int64), "at bound")
    past = np.array([[half], [half], [1]], dtype=np.int64)  # limit + 1: not representable
    bound = int((np.abs(a) @ np.abs(past)).max())
    narrow = exact_dtype(limit - 1)
    assert (a.astype(narrow) @ past.astype(narrow)).astype(np.int64)[0, 0] != limit + 1  # it would round
    got = matmul_exact(a, past, bound)
    assert got.dtype == exact_dtype(limit + 1) != narrow
    assert_same(py_matmul(a, past).astype(np.int64), got.astype(np.int64), "past bound")


# ---------------------------------------------------------------- AW linear
@FAST
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(1, 40), n_out=st.integers(1, 12),
       density=st.floats(0.0, 1.0))
def test_aw_linear_float_path_equals_int64(seed, n_in, n_out, density):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    b = rng.integers(-500, 501, n_out)
    s = (rng.random((3, 5, n_in)) < density) * rng.choice([-1, 1], (3, 5, n_in))
    layer = AWLinear(w, b, 1)
    assert layer.dtype == np.float32
    for t in (0, 1):
        want = s.astype(np.int64) @ w.astype(np.int64).T + (b if t == 0 else 0)
        assert_same(want, layer.step(s.astype(np.int8), t).astype(np.int64), f"step t={t}")
        assert_same(want, aw_step(s.astype(np.int8), w, b, t), f"aw_step t={t}")


@pytest.mark.parametrize("limit", [F32_LIMIT, F64_LIMIT])
def test_aw_linear_driven_to_its_bound(limit):
    """All-+1 spikes on same-sign weights: the current equals the bound (limit − 1) itself."""
    n_in = 64
    spike_max = (limit - 1) // (127 * n_in)
    w = np.full((3, n_in), 127, dtype=np.int8)
    w[1] = -127
    bias_mag = (limit - 1) - 127 * n_in * spike_max
    b = np.array([bias_mag, -bias_mag, 0])
    layer = AWLinear(w, b, spike_max)
    assert layer.bound == limit - 1 == int(aw_current_bound(w, b, spike_max).max())
    assert layer.dtype == exact_dtype(limit - 1)
    x = np.full((2, n_in), spike_max, dtype=np.int64)
    want = py_matmul(x, w.astype(np.int64).T) + b
    got = layer(x)
    assert_same(want.astype(np.int64), got.astype(np.int64), "at bound")
    assert int(np.abs(got).max()) == limit - 1


def test_aw_linear_past_the_mantissa_takes_int64():
    w = np.full((2, 8), 127, dtype=np.int8)
    spike_max = F64_LIMIT // (127 * 8) + 1
    layer = AWLinear(w, None, spike_max)
    assert layer.bound >= F64_LIMIT and layer.dtype == np.int64
    x = np.full((1, 8), spike_max, dtype=np.int64)
    x[0, 3] = spike_max - 1
    assert_same(py_matmul(x, w.astype(np.int64).T).astype(np.int64), layer(x), "int64 path")


def test_aw_linear_rejects_bad_arguments():
    with pytest.raises(TypeError, match="weight"):
        AWLinear(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="bias"):
        AWLinear(np.ones((2, 3), dtype=np.int8), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="spike_max"):
        AWLinear(np.ones((2, 3), dtype=np.int8), None, -1)
    with pytest.raises(ValueError, match="input"):
        AWLinear(np.ones((2, 3), dtype=np.int8))(np.ones((1, 4)))


# ---------------------------------------------------------------- quantizer and division
@FAST
@given(seed=st.integers(0, 2**31 - 1), theta_max=st.integers(1, 5000),
       levels=st.sampled_from([4, 16, 256]), signed=st.booleans())
def test_quantize_float_equals_int(seed, theta_max, levels, signed):
    rng = np.random.default_rng(seed)
    qn, qp = (-(levels // 2), levels // 2 - 1) if signed else (0, levels - 1)
    theta = rng.integers(1, theta_max + 1, 7)
    bound = F32_LIMIT - 1 - theta_max
    a = rng.integers(-bound, bound + 1, (50, 7))
    a[0] = bound
    a[1] = -bound
    a[2] = theta * qp - theta // 2  # exactly on the rounding edges
    a[3] = a[2] - 1
    want = quantize(a, theta, qn, qp)
    got = quantize_exact(a.astype(np.float32), theta, qn, qp)
    assert got.dtype == np.float32
    assert_same(want, got.astype(np.int64), "float32 quantize")
    got64 = quantize_exact(a.astype(np.float64) * 2**28, theta, qn * 2**28, qp * 2**28)
    want64 = quantize(a * 2**28, theta, qn * 2**28, qp * 2**28)
    assert_same(want64, got64.astype(np.int64), "float64 quantize")


@FAST
@given(n=st.integers(-(F64_LIMIT - 1), F64_LIMIT - 1), d=st.integers(1, F64_LIMIT - 1))
def test_floor_div_float64_exact_below_the_mantissa(n, d):
    got = floor_div(np.array([n], dtype=np.float64), np.array([d], dtype=np.float64))
    assert int(got[0]) == n // d


def test_floor_div_at_the_float32_edge():
    """The hardest quotients: just below an integer, numerators up to 2^24 − 1."""
    d = np.arange(1, 4097, dtype=np.int64)
    k = (F32_LIMIT - 2) // d
    n = np.concatenate([k * d - 1, k * d, k * d + 1, -(k * d) + 1, -(k * d) - 1])
    dd = np.concatenate([d] * 5)
    assert int(np.abs(n).max()) < F32_LIMIT
    got = floor_div(n.astype(np.float32), dd.astype(np.float32)).astype(np.int64)
    assert assert_same(n // dd, got, "float32 floor division") == 5 * 4096


def test_isqrt_float_near_squares():
    r = np.unique(np.concatenate([np.arange(0, 3000), np.linspace(0, 94906265, 4000).astype(np.int64)]))
    x = np.concatenate([r * r, r * r - 1, r * r + 1, (r + 1) * (r + 1) - 1])
    x = x[(x >= 0) & (x < F64_LIMIT)]
    x = np.concatenate([x, [F64_LIMIT - 1]])
    assert_same(isqrt(x), isqrt_float(x.astype(np.float64)).astype(np.int64), "isqrt")


# ---------------------------------------------------------------- softmax and LayerNorm
@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), z_bound=st.integers(1, 60000),
       C=st.integers(1, 2**22))
def test_softmax_fast_equals_int(seed, n, z_bound, C):
    rng = np.random.default_rng(seed)
    params = SoftmaxParams(C=C)
    z = rng.integers(-z_bound, z_bound + 1, (6, n))
    z[0] = z_bound
    z[1, :] = -z_bound
    z[1, 0] = z_bound  # the widest distance 2·z_bound
    got = softmax_exact(z.astype(np.float32 if z_bound < F32_LIMIT else np.float64), params, z_bound)
    assert got.dtype == np.float32  # outputs within [0, 2^P], P = 12
    assert_same(int_softmax(z, params), got.astype(np.int64), "softmax")


@pytest.mark.parametrize("P, dtype", [(23, np.float32), (24, np.float64)])
def test_softmax_output_dtype_at_its_bound(P, dtype):
    """Outputs reach 2^P (one score far above the rest of its row): float32 holds them up to
    2^23; from 2^24 on the output must be float64."""
    rng = np.random.default_rng(P)
    params = SoftmaxParams(C=2**20, F=15, P=P)
    z = rng.integers(-500, 501, (7, 12))
    z[0] = -500
    z[0, 3] = 500  # every other exponent underflows to 0: p = 2^P exactly
    got = softmax_exact(z.astype(np.float32), params, 500)
    assert got.dtype == dtype
    want = int_softmax(z, params)
    assert int(want.max()) == 1 << P
    assert_same(want, got.astype(np.int64), f"softmax P={P}")


def test_softmax_past_its_bounds_takes_int64():
    rng = np.random.default_rng(1)
    z = rng.integers(-100, 101, (5, 9))
    wide = SoftmaxParams(C=5000, F=30, P=30)  # 2^(F+P) >= 2^53
    got = softmax_exact(z.astype(np.float64), wide, 100)
    assert got.dtype == np.int64
    assert_same(int_softmax(z, wide), got, "softmax F+P")
    big = fastmath.SOFTMAX_TABLE_MAX  # distances past the table
    z2 = rng.integers(-big, big + 1, (5, 9))
    got = softmax_exact(z2.astype(np.float64), SoftmaxParams(C=3), big)
    assert got.dtype == np.int64
    assert_same(int_softmax(z2, SoftmaxParams(C=3)), got, "softmax table")


@FAST
@given(seed=st.integers(0, 2**31 - 1), D=st.integers(2, 96), x_bound=st.integers(1, 2**20),
       E=st.integers(1, 10**6))
def test_layernorm_fast_equals_int(seed, D, x_bound, E):
    rng = np.random.default_rng(seed)
    params = LayerNormParams(E=E)
    gamma = rng.integers(-(2**17), 2**17, D)
    beta = rng.integers(-(2**10), 2**10, D)
    x = rng.integers(-x_bound, x_bound + 1, (8, D))
    x[0] = x_bound
    x[1, ::2] = -x_bound
    x[1, 1::2] = x_bound
    x[2] = 0
    assert 2 * D * x_bound * 2**17 < F64_LIMIT
    got = layernorm_exact(x.astype(np.float64), gamma, beta, params, x_bound)
    assert got.dtype == np.float64
    assert_same(int_layernorm(x, gamma, beta, params), got.astype(np.int64), "layernorm")


@pytest.mark.parametrize("below", [True, False])
def test_layernorm_output_float32_at_its_bound(below):
    """A proven output bound below 2^24 gives float32 outputs, equal to the int64 definition with
    outputs at that bound (B near ±(2^24 − 1)); a bound at 2^24 keeps float64."""
    from equispike.model.widths import layernorm_output_bound

    rng = np.random.default_rng(5)
    D, x_bound, params = 16, 3000, LayerNormParams(E=9)
    gamma = rng.integers(2**15, 2**16, D)
    y_top = layernorm_output_bound(D, int(gamma.max()), 0, params)
    bmax = F32_LIMIT - y_top - (1 if below else 0)
    beta = np.where(np.arange(D) % 2 == 0, bmax, -bmax)
    y_bound = layernorm_output_bound(D, int(gamma.max()), bmax, params)
    assert (y_bound < F32_LIMIT) == below
    x = rng.integers(-x_bound, x_bound + 1, (64, D))
    got = layernorm_exact(x.astype(np.float64), gamma, beta, params, x_bound, y_bound=y_bound)
    assert got.dtype == (np.float32 if below else np.float64)
    want = int_layernorm(x, gamma, beta, params)
    assert int(np.abs(want).max()) > F32_LIMIT - 2 * y_top
    assert_same(want, got.astype(np.int64), "layernorm")


def test_layernorm_past_the_mantissa_takes_int64():
    rng = np.random.default_rng(2)
    D, x_bound = 16, 2**25  # D²·x_bound² = 2^58
    x = rng.integers(-x_bound, x_bound + 1, (4, D))
    gamma, beta = rng.integers(1, 2**16, D), rng.integers(-100, 100, D)
    params = LayerNormParams(E=5)
    got = layernorm_exact(x, gamma, beta, params, x_bound)
    assert got.dtype == np.int64
    assert_same(int_layernorm(x, gamma, beta, params), got, "layernorm int64")


# ---------------------------------------------------------------- SESA and differential units
@FAST
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 20), transpose=st.booleans(),
       qmax=st.integers(1, 127))
def test_sesa_float_path_equals_int64(seed, steps, transpose, qmax):
    """Same-sign spike trains drive the running sums to their tracer bound ``qmax``."""
    rng = np.random.default_rng(seed)
    a_shape, b_shape = (2, 3, 5, 4), ((2, 3, 6, 4) if transpose else (2, 3, 4, 6))
    fast = SpikeProduct(a_shape, b_shape, transpose_b=transpose, a_max=qmax, b_max=qmax)
    ref = SpikeProduct(a_shape, b_shape, transpose_b=transpose)
    assert fast.dtype == np.float32 and ref.dtype == np.int64
    sa, sb = np.zeros(a_shape, np.int64), np.zeros(b_shape, np.int64)
    compared = 0
    for t in range(qmax + steps):
        a = rng.choice([0, 1], a_shape) * (np.abs(sa) < qmax)
        b = rng.choice([0, 1], b_shape) * (np.abs(sb) < qmax)
        if t % 2 == 0:  # dense same-sign steps reach the bound within 2·qmax steps
            a, b = (np.abs(sa) < qmax).astype(np.int64), (np.abs(sb) < qmax).astype(np.int64)
        sa += a
        sb += b
        want = ref.step(a.astype(np.int8), b.astype(np.int8))
        nz_a = np.count_nonzero(a.reshape(2, -1), axis=1)
        nz_b = np.count_nonzero(b.reshape(2, -1), axis=1)
        got, acs = fast.step(a.astype(np.int8), b.astype(np.int8), nz_a, nz_b)
        compared += assert_same(want, got.astype(np.int64), f"step {t}")
    for t in range(qmax):  # finish at the bound: the last products use running sums at qmax
        a, b = (np.abs(sa) < qmax).astype(np.int64), (np.abs(sb) < qmax).astype(np.int64)
        sa += a
        sb += b
        want = ref.step(a.astype(np.int8), b.astype(np.int8))
        got, _ = fast.step(a.astype(np.int8), b.astype(np.int8), np.count_nonzero(a.reshape(2, -1), axis=1),
                           np.count_nonzero(b.reshape(2, -1), axis=1))
        compared += assert_same(want, got.astype(np.int64), f"final step {t}")
    assert int(np.abs(sa).min()) == qmax and int(np.abs(sb).min()) == qmax
    assert_same(ref.acs, fast.acs, "ACs")
    assert compared >= (2 * qmax + steps) * 2 * 3 * 5


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("qmax", [2047, 2048])
def test_sesa_running_product_at_its_bound(transpose, qmax):
    """Every ΔP(t) equals the two-term rule a(t)·op(B(t)) + A(t−1)·op(b(t)), computed here in int64,
    while the running sums reach ±qmax with one sign per row, so the kept product A·op(B) reaches its
    bound inner·qmax² (4·2047² < 2^24 runs on float32; 4·2048² = 2^24 must take float64). Silent
    operands (None) are mixed in."""
    rng = np.random.default_rng(qmax)
    a_shape, b_shape = (2, 3, 5, 4), ((2, 3, 6, 4) if transpose else (2, 3, 4, 6))
    fast = SpikeProduct(a_shape, b_shape, transpose_b=transpose, a_max=qmax, b_max=qmax)
    assert fast.bound == 4 * qmax * qmax
    assert fast.dtype == (np.float32 if qmax == 2047 else np.float64)
    # with a tracer bound of 1 the steps' differences, inner·(a_max + b_max), set the path
    for b_max, dtype in ((2**22 - 2, np.float32), (2**22 - 1, np.float64)):
        thin = SpikeProduct(a_shape, b_shape, transpose_b=transpose, a_max=1, b_max=b_max)
        assert thin.bound == 4 * (1 + b_max) and thin.dtype == dtype
    op = (lambda m: np.swapaxes(m, -1, -2)) if transpose else (lambda m: m)
    # one sign per row of A (its last axis summed) and per column of op(B)
    sign_a = rng.choice([-1, 1], a_shape[:-1] + (1,)) * np.ones(a_shape, np.int64)
    sign_b = rng.choice([-1, 1], (b_shape[:-1] + (1,)) if transpose else
                        (b_shape[:-2] + (1, b_shape[-1])))
    sign_b = sign_b * np.ones(b_shape, np.int64)
    A, B = np.zeros(a_shape, np.int64), np.zeros(b_shape, np.int64)
    t = 0
    while int(np.abs(A).min()) < qmax or int(np.abs(B).min()) < qmax:
        a = sign_a if t % 5 != 1 and int(np.abs(A).min()) < qmax else None
        b = sign_b if t % 7 != 3 and int(np.abs(B).min()) < qmax else None
        want = np.zeros(a_shape[:-1] + (op(B).shape[-1],), np.int64)
        if b is not None:
            B = B + b
            want += A @ op(b)
        if a is not None:
            want += a @ op(B)
            A = A + a
        got, _ = fast.step(None if a is None else a.astype(np.int8), None if b is None else b.astype(np.int8),
                           np.zeros(2, np.int64), np.zeros(2, np.int64))
        if a is None and b is None:
            assert got is None
        else:
            assert_same(want, got.astype(np.int64), f"step {t}")
        t += 1
    assert int(np.abs(A @ op(B)).max()) == fast.bound


@FAST
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 12), sparse=st.floats(0.0, 1.0))
def test_differential_float64_equals_int64(seed, steps, sparse):
    rng = np.random.default_rng(seed)
    params = LayerNormParams(E=77)
    D = 8
    gamma, beta = rng.integers(1, 2**16, D), rng.integers(-50, 50, D)
    shape = (3, 4, D)
    ops = [DifferentialOp(lambda r: int_layernorm(r.astype(np.int64), gamma, beta, params), shape),
           DifferentialOp(lambda r: layernorm_exact(r, gamma, beta, params, 4000), shape, dtype=np.float64)]
    for t in range(steps):
        d = rng.integers(-200, 201, shape) * (rng.random(shape[:2] + (1,)) < sparse)
        outs = [op.step(d if i == 0 else d.astype(np.float32)) for i, op in enumerate(ops)]
        assert_same(outs[0], outs[1].astype(np.int64), f"step {t}")
    assert_same(ops[0].rows_computed, ops[1].rows_computed, "rows computed")


@FAST
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 12))
def test_differential_float32_sums_at_their_bound(seed, steps):
    """float32 running sums equal int64 ones while every |X| stays within 2^24 − 1 and reaches it:
    same outputs, same recomputed rows."""
    rng = np.random.default_rng(seed)
    params = LayerNormParams(E=77)
    D = 8
    gamma, beta = rng.integers(1, 2**16, D), rng.integers(-50, 50, D)
    shape = (3, 4, D)
    top = F32_LIMIT - 1
    ops = [DifferentialOp(lambda r: int_layernorm(r.astype(np.int64), gamma, beta, params), shape, dtype=dt)
           for dt in (np.int64, np.float32)]
    X = np.zeros(shape, np.int64)
    for t in range(steps + 1):
        if t == 0:  # start at the bound, one sign per element
            d = rng.choice([-top, top], shape)
        else:  # then move towards zero and back to the bound, rows at random
            back = rng.integers(0, 1000, shape) * (rng.random(shape[:2] + (1,)) < 0.5)
            d = np.where(t % 2, -np.sign(X) * back, np.sign(X) * (top - np.abs(X)))
        X += d
        assert int(np.abs(X).max()) <= top
        outs = [op.step(d if i == 0 else d.astype(np.float32)) for i, op in enumerate(ops)]
        assert_same(outs[0], outs[1].astype(np.int64), f"step {t}")
    assert int(np.abs(ops[1].X).max()) == top or steps % 2 == 1
    assert_same(X, ops[1].X.astype(np.int64), "running sums")
    assert_same(ops[0].rows_computed, ops[1].rows_computed, "rows computed")


# ---------------------------------------------------------------- the whole model
def _force_int64(monkeypatch) -> None:
    """Every bound test fails: every kernel takes its int64 path."""
    monkeypatch.setattr(fastmath, "F32_LIMIT", 0)
    monkeypatch.setattr(fastmath, "F64_LIMIT", 0)


@pytest.mark.parametrize("cfg", [dict(seed=0, depth=2, dim=32, heads=2, levels=16),
                                 dict(seed=7, depth=1, dim=16, heads=1, levels=32, image=4)])
def test_model_fast_paths_equal_int64_paths(monkeypatch, cfg):
    art = random_vit(**cfg)
    images = random_images(11, art, 5)
    q_fast = qann_forward(art, images)
    s_fast = ViTSNN(art).run(images, record=True)
    paths = {v["path"] for v in fast_paths(art).values()}
    assert paths == {"float32", "float64"}
    _force_int64(monkeypatch)
    assert {v["path"] for v in fast_paths(art).values()} == {"int64"}
    q_int = qann_forward(art, images)
    s_int = ViTSNN(art).run(images, record=True)
    compared = assert_same(q_int.logits, q_fast.logits, "QANN logits")
    for site in q_int.codes:
        compared += assert_same(q_int.codes[site], q_fast.codes[site], f"QANN {site}")
    assert s_int.steps == s_fast.steps
    compared += assert_same(s_int.logits, s_fast.logits, "SNN logits")
    compared += assert_same(s_int.settle_step, s_fast.settle_step, "settle step")
    for site, rec in s_int.records.items():
        for field in ("spikes", "current"):
            assert rec[field].dtype == s_fast.records[site][field].dtype
            compared += assert_same(rec[field], s_fast.records[site][field], f"SNN {site} {field}")
    compared += assert_same(s_int.acs, s_fast.acs, "ACs") + assert_same(s_int.macs, s_fast.macs, "MACs")
    assert compared > 10_000


def test_layernorm_past_the_mantissa_in_a_model():
    """Residual multipliers large enough that the LayerNorm radicand passes 2^53: the int64 LayerNorm
    path is taken and the SNN still equals the QANN."""
    art = random_vit(3, depth=1, dim=16, heads=2, levels=8)
    sites = dict(art.sites)
    for k in ("patch_embed", "blocks.0.proj", "blocks.0.fc2"):
        sites[k] = dataclasses.replace(sites[k], M=2**22)
    art = dataclasses.replace(art, sites=sites)
    paths = fast_paths(art)
    assert {paths[k]["path"] for k in ("blocks.0.ln1", "blocks.0.ln2", "norm")} == {"int64"}
    assert all(paths[k]["bound"] >= F64_LIMIT for k in ("blocks.0.ln1", "norm"))
    images = random_images(4, art, 4)
    q = qann_forward(art, images)
    s = ViTSNN(art).run(images, t_max=2048)
    assert s.settled
    n = assert_same(q.logits, s.logits, "logits")
    for site in q.codes:
        n += assert_same(q.codes[site], s.codes[site], site)
    assert n > 1000
