"""Property tests of the golden operators (SPEC §2, §4, §5, §8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equispike.model.differential import DifferentialOp
from equispike.model.intops import (
    LayerNormParams,
    SoftmaxParams,
    exp2_lut,
    int_layernorm,
    int_softmax,
    isqrt,
    softmax_constant,
)
from equispike.model.neurons import LIFArray, STBIFArray, quantize, site_bounds
from equispike.model.sdsa import SDSA3, SDSA_SATURATION, coactivation, sdsa1
from equispike.model.sesa import SpikeProduct

FAST = settings(max_examples=60, deadline=None)


def first_mismatch(want: np.ndarray, got: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(want != got)[0])
    return f"index {idx}: expected {want[idx]}, got {got[idx]}"


# ---------------------------------------------------------------- ST-BIF
@FAST
@given(
    levels=st.sampled_from([4, 8, 16, 32, 256]),
    signed=st.booleans(),
    theta=st.integers(1, 300),
    seqs=st.lists(st.lists(st.integers(-2000, 2000), min_size=1, max_size=12), min_size=1, max_size=40),
)
def test_stbif_settles_to_quantizer_code(levels, signed, theta, seqs):
    """For random signed inputs (saturating and overshooting ones included), once inputs stop each
    neuron settles within Qp − Qn steps at the QANN code of its total input, and stays there."""
    qn, qp = site_bounds(levels, signed)
    width = max(len(s) for s in seqs)
    cur = np.array([s + [0] * (width - len(s)) for s in seqs], dtype=np.int64).T  # (T, neurons)
    n = STBIFArray((cur.shape[1],), theta, qn, qp)
    for c in cur:
        n.step(c)
    for _ in range(qp - qn):
        n.step(np.zeros(cur.shape[1], dtype=np.int64))
    want = quantize(cur.sum(axis=0), theta, qn, qp)
    assert np.array_equal(n.S, want), first_mismatch(want, n.S)
    quiet = n.step(np.zeros(cur.shape[1], dtype=np.int64))
    assert not quiet.any(), "a settled neuron fired without input"
    # membrane bookkeeping: V = floor(Θ/2) + ΣI − S·Θ exactly
    v_want = theta // 2 + cur.sum(axis=0) - n.S.astype(np.int64) * theta
    assert np.array_equal(n.V, v_want), first_mismatch(v_want, n.V)


def test_stbif_per_channel_theta_and_narrow_dtype():
    rng = np.random.default_rng(3)
    theta = rng.integers(1, 40, 16)
    cur = rng.integers(-60, 61, (20, 5, 16))
    wide = STBIFArray((5, 16), theta, -8, 7)
    narrow = STBIFArray((5, 16), theta, -8, 7, v_dtype=np.int16)
    for c in cur:
        a, b = wide.step(c), narrow.step(c.astype(np.int16))
        assert np.array_equal(a, b), first_mismatch(a, b)
    for _ in range(16):
        wide.step(np.zeros((5, 16), np.int64))
    assert np.array_equal(wide.S, quantize(cur.sum(0), theta, -8, 7))


def test_stbif_rejects_bad_parameters():
    with pytest.raises(ValueError, match="theta must be >= 1"):
        STBIFArray((3,), 0, -2, 1)
    with pytest.raises(ValueError, match="tracer bounds"):
        STBIFArray((3,), 5, 1, 3)
    with pytest.raises(OverflowError, match="membrane dtype"):
        STBIFArray((3,), 300, -2, 1, v_dtype=np.int8)
    with pytest.raises(ValueError, match="power of two"):
        site_bounds(12, True)


# ---------------------------------------------------------------- LIF
@FAST
@given(theta=st.integers(1, 20), xs=st.lists(st.integers(0, 80), min_size=1, max_size=30))
def test_lif_closed_form(theta, xs):
    """From reset the neuron fires at the first step iff x >= 2θ; after any step v < θ, v = 0 after a
    spike, and the membrane halves (floor) when it does not fire."""
    n = LIFArray((1,), theta)
    v_prev = 0
    for t, x in enumerate(xs):
        s = int(n.step(np.array([x]))[0])
        h = (v_prev + x) // 2
        if t == 0:
            assert s == int(x >= 2 * theta)
        assert s == int(h >= theta)
        v = int(n.V[0])
        assert (v == 0) if s else (v == h and v < theta)
        v_prev = v


# ---------------------------------------------------------------- SESA
@FAST
@given(seed=st.integers(0, 2**31), steps=st.integers(1, 12), transpose=st.booleans())
def test_sesa_telescopes(seed, steps, transpose):
    """Σ_t ΔP(t) == A(T)·op(B(T)) exactly, for random ternary spike trains."""
    rng = np.random.default_rng(seed)
    a_shape, b_shape = (2, 3, 5, 4), ((2, 3, 6, 4) if transpose else (2, 3, 4, 6))
    prod = SpikeProduct(a_shape, b_shape, transpose_b=transpose)
    A = np.zeros(a_shape, np.int64)
    B = np.zeros(b_shape, np.int64)
    total = 0
    for _ in range(steps):
        a = rng.integers(-1, 2, a_shape).astype(np.int8)
        b = rng.integers(-1, 2, b_shape).astype(np.int8)
        total = total + prod.step(a, b)
        A += a
        B += b
        want = A @ (np.swapaxes(B, -1, -2) if transpose else B)
        assert np.array_equal(total, want), first_mismatch(want, total)


def test_sesa_shape_check():
    with pytest.raises(ValueError, match="inner dimensions"):
        SpikeProduct((1, 2, 3), (1, 4, 5), transpose_b=True)


# ---------------------------------------------------------------- integer softmax / LayerNorm
def test_exp2_lut_matches_definition():
    for G, F in ((6, 15), (4, 10), (8, 20)):
        lut = exp2_lut(G, F)
        want = [math.floor(2**F * 2 ** (-r / 2**G) + 0.5) for r in range(2**G)]
        assert lut.tolist() == want


@FAST
@given(xs=st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=50))
def test_isqrt_exact(xs):
    got = isqrt(np.array(xs, dtype=np.int64))
    assert got.tolist() == [math.isqrt(x) for x in xs]


@FAST
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), spread=st.integers(1, 5000))
def test_softmax_properties(seed, n, spread):
    rng = np.random.default_rng(seed)
    z = rng.integers(-spread, spread + 1, (8, n))
    params = SoftmaxParams(C=softmax_constant(3.0 / spread))
    p = int_softmax(z, params)
    assert (p >= 0).all() and (p <= 1 << params.P).all()
    sums = p.sum(axis=-1)
    assert (sums <= 1 << params.P).all() and (sums >= (1 << params.P) - n).all()
    # the integer definition approximates the real softmax (SPEC §5: error below 0.003)
    zr = z * 3.0 / spread
    ref = np.exp(zr - zr.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    assert np.abs(p / 2**params.P - ref).max() < 0.003
    # ties for the maximum get equal probabilities, and equal rows give a uniform row
    assert np.array_equal(
        int_softmax(np.zeros((1, n), np.int64), params), np.full((1, n), (1 << params.P) // n)
    )


@FAST
@given(seed=st.integers(0, 2**31), D=st.integers(2, 96))
def test_layernorm_properties(seed, D):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3000, 3001, (6, D))
    gamma = rng.integers(1 << 15, 1 << 17, D)
    beta = rng.integers(-500, 501, D)
    params = LayerNormParams(E=1)
    y = int_layernorm(x, gamma, beta, params)
    xf = x.astype(np.float64)
    ref = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-12)
    ref = ref * gamma / 2**16 + beta / 2**10
    assert np.abs(y / 2**10 - ref).max() < 0.0015 * np.abs(gamma / 2**16).max() * 3 + 2**-10
    # constant rows: σ comes from E only, output is β
    const = np.full((1, D), 77)
    assert np.array_equal(int_layernorm(const, gamma, beta, params)[0], beta)


@FAST
@given(seed=st.integers(0, 2**31), steps=st.integers(1, 10), which=st.sampled_from(["softmax", "ln"]))
def test_differential_sums_equal_op_of_total(seed, steps, which):
    """Σ_t (Y(t) − Y(t−1)) == op(Σ_t input) exactly; rows whose input did not change emit zeros."""
    rng = np.random.default_rng(seed)
    shape = (3, 4, 9)
    if which == "softmax":
        params = SoftmaxParams(C=softmax_constant(0.05))

        def op(r):
            return int_softmax(r, params)
    else:
        gamma, beta = rng.integers(1 << 15, 1 << 17, 9), rng.integers(-300, 300, 9)

        def op(r):
            return int_layernorm(r, gamma, beta, LayerNormParams(E=5))

    diff = DifferentialOp(op, shape)
    total_in = np.zeros(shape, np.int64)
    total_out = np.zeros(shape, np.int64)
    for t in range(steps):
        delta = rng.integers(-20, 21, shape) * (rng.random(shape[:-1] + (1,)) < 0.5)
        out = diff.step(delta)
        if t > 0:
            unchanged = ~delta.any(axis=-1)
            assert not out[unchanged].any(), "an unchanged row emitted a nonzero delta"
        total_in += delta
        total_out += out
        want = op(total_in.reshape(-1, 9)).reshape(shape)
        assert np.array_equal(total_out, want), first_mismatch(want, total_out)


# ---------------------------------------------------------------- SDSA
@FAST
@given(seed=st.integers(0, 2**31), density=st.floats(0.05, 0.9))
def test_sdsa1_closed_form(seed, density):
    rng = np.random.default_rng(seed)
    q, k, v = ((rng.random((2, 7, 8)) < density).astype(np.int8) for _ in range(3))
    got = sdsa1(q, k, v)
    want = (q.astype(bool) & (k.astype(bool) & v.astype(bool)).any(axis=-2, keepdims=True)).astype(np.int8)
    assert np.array_equal(got, want), first_mismatch(want, got)


@FAST
@given(seed=st.integers(0, 2**31), density=st.floats(0.05, 0.95), heads=st.sampled_from([1, 2, 4]))
def test_sdsa3_first_step_closed_form_and_saturation(seed, density, heads):
    """At T = 1 SDSA-3 fires exactly where Q·(KᵀV) >= 8 (no saturation in this reference), and
    saturating M at 8 changes nothing."""
    rng = np.random.default_rng(seed)
    n, d = 12, 8
    q, k, v = ((rng.random((2, n, d)) < density).astype(np.int8) for _ in range(3))
    dh = d // heads

    def split(x):
        return x.reshape(2, n, heads, dh).swapaxes(1, 2).astype(np.int64)

    m_exact = np.swapaxes(split(k), -1, -2) @ split(v)
    qm = (split(q) @ m_exact).swapaxes(1, 2).reshape(2, n, d)
    got = SDSA3((2, n, d), heads).step(q, k, v)
    want = (qm >= 8).astype(np.int8)
    assert np.array_equal(got, want), first_mismatch(want, got)
    assert coactivation(k, v, heads).max() <= SDSA_SATURATION


def test_sdsa_rejects_non_binary():
    x = np.full((1, 2, 2), 2, np.int8)
    with pytest.raises(ValueError, match="binary"):
        sdsa1(x, x, x)


@FAST
@given(
    seed=st.integers(0, 2**31),
    D=st.integers(2, 64),
    E=st.integers(1, 50),
    spike=st.integers(1, 5000),
)
def test_layernorm_output_bound_holds(seed, D, E, spike):
    """The width analysis' LayerNorm bound holds even for one-hot rows and tiny E, where σ rounds down."""
    from equispike.model.widths import layernorm_output_bound

    rng = np.random.default_rng(seed)
    gamma = rng.choice([-1, 1], D) * (1 << 16)
    beta = rng.integers(-100, 101, D)
    params = LayerNormParams(E=E)
    x = np.zeros((2, D), np.int64)
    x[0, 0] = spike
    x[1] = rng.integers(-spike, spike + 1, D)
    y = int_layernorm(x, gamma, beta, params)
    bound = layernorm_output_bound(D, int(np.abs(gamma).max()), int(np.abs(beta).max()), params)
    assert np.abs(y).max() <= bound


def test_layernorm_bound_reported_counterexample():
    """D = 32, E = 1, Γ = 2^16, x = e₁: σ = 5, c = 31, y = 6348, above a sqrt(D−1)-based bound (6145)."""
    from equispike.model.widths import layernorm_output_bound

    x = np.zeros((1, 32), np.int64)
    x[0, 0] = 1
    y = int_layernorm(x, np.full(32, 1 << 16), np.zeros(32, np.int64), LayerNormParams(E=1))
    assert int(np.abs(y).max()) <= layernorm_output_bound(32, 1 << 16, 0, LayerNormParams(E=1))
