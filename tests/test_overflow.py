"""No silent overflow: every narrowing point of the golden model is checked, and a worst-case run
probes every intermediate the width analysis bounds and stays inside its bound."""

from __future__ import annotations

import numpy as np
import pytest

from equispike.model import vit as vit_module
from equispike.model.factory import random_images, random_vit
from equispike.model.intops import LayerNormParams, SoftmaxParams, int_layernorm, int_softmax, isqrt
from equispike.model.neurons import LIFArray, STBIFArray
from equispike.model.vit import ViTSNN, qann_forward
from equispike.model.widths import analyze


def test_stbif_current_that_does_not_fit_the_membrane_dtype_raises():
    n = STBIFArray((1,), 5, -8, 7, v_dtype=np.int16)
    with pytest.raises(OverflowError, match="int16"):
        n.step([40000])
    # the state is untouched and the neuron still works
    assert int(n.V[0]) == 2 and int(n.S[0]) == 0
    assert n.step(np.array([10], np.int16)).tolist() == [1]


def test_stbif_membrane_sum_that_would_wrap_raises_naming_the_element():
    n = STBIFArray((3,), 5, -8, 7, v_dtype=np.int16)
    n.step(np.array([0, 30000, 0], np.int64))  # fires once: V = 2 + 30000 - 5
    before = n.V.copy()
    with pytest.raises(OverflowError, match=r"index \(1,\)"):
        n.step(np.array([0, 3000, 0], np.int64))
    assert np.array_equal(n.V, before)
    # negative side too
    m = STBIFArray((2,), 5, -8, 7, v_dtype=np.int8)
    m.step(np.array([-100, 0]))
    with pytest.raises(OverflowError):
        m.step(np.array([-100, 0]))


def test_stbif_check_is_exact_not_conservative():
    """V at its low end in one neuron, the most negative current in another: no wrap, no error."""
    n = STBIFArray((2,), 1, -128, 127, v_dtype=np.int16)
    n.step(np.array([-30000, 0]))  # V[0] = -29999 (one -1 spike, +Θ)
    lo = int(n.V[0])
    assert lo < -29000
    spikes = n.step(np.array([2000, -30000]))  # V_min + I_min < -32768, but each sum fits
    assert spikes.tolist() == [-1, -1]
    wide = STBIFArray((2,), 1, -128, 127)
    wide.step(np.array([-30000, 0]))
    wide.step(np.array([2000, -30000]))
    assert np.array_equal(wide.V, n.V.astype(np.int64))


def test_stbif_current_bound_spares_work_but_not_the_check():
    rng = np.random.default_rng(4)
    plain = STBIFArray((50,), 5, -8, 7, v_dtype=np.int16)
    hinted = STBIFArray((50,), 5, -8, 7, v_dtype=np.int16)
    for _ in range(40):  # a true bound changes nothing: the same spikes and states at every step
        c = rng.integers(-300, 301, 50).astype(np.int16)
        assert np.array_equal(plain.step(c), hinted.step(c, current_bound=300))
        assert np.array_equal(plain.V, hinted.V) and np.array_equal(plain.S, hinted.S)
    # when the bound interval does not prove "no wrap", the values still decide
    n = STBIFArray((3,), 5, -8, 7, v_dtype=np.int16)
    n.step(np.array([0, 30000, 0], np.int16), current_bound=30000)
    with pytest.raises(OverflowError, match=r"index \(1,\)"):
        n.step(np.array([0, 5000, 0], np.int16), current_bound=5000)
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match="current_bound"):
            n.step(np.zeros(3, np.int16), current_bound=bad)


def test_stbif_rejects_non_integer_currents():
    with pytest.raises(TypeError, match="integer"):
        STBIFArray((1,), 5, -8, 7).step(np.array([1.5]))


def test_lif_narrowing_is_checked():
    n = LIFArray((2,), 100, v_dtype=np.int8)
    with pytest.raises(OverflowError, match="int8"):
        n.step(np.array([200, 0]))
    assert n.step(np.array([100, 0])).tolist() == [0, 0] and int(n.V[0]) == 50
    with pytest.raises(OverflowError, match=r"V \+ I = 150"):
        n.step(np.array([100, 0]))


def test_operators_refuse_inputs_that_would_wrap_int64():
    x = np.full((1, 8), 2**40, dtype=np.int64)
    x[0, 0] = -(2**40)
    g = np.full(8, 1 << 16, dtype=np.int64)
    with pytest.raises(OverflowError, match="radicand"):
        int_layernorm(x, g, np.zeros(8, np.int64), LayerNormParams(E=1))
    with pytest.raises(OverflowError, match="exponent"):
        int_softmax(np.array([[0, 2**40]]), SoftmaxParams(C=2**30))
    with pytest.raises(ValueError, match="isqrt"):
        isqrt(np.array([2**64 - 1], dtype=np.uint64))


def test_narrow_membrane_that_cannot_hold_the_worst_case_raises(monkeypatch):
    """A membrane dtype narrower than the analysis asks for: the run stops, it does not wrap."""
    art = random_vit(0, depth=1, dim=16, heads=2, levels=16, worst_case=True)
    images = np.full((2, 1, 8, 8), art.input_max, dtype=np.int64)
    monkeypatch.setattr(vit_module, "smallest_int_dtype", lambda lo, hi: np.dtype(np.int8))
    with pytest.raises(OverflowError, match="membrane dtype int8"):
        ViTSNN(art).run(images)


@pytest.mark.parametrize("seed", [0, 1])
def test_worst_case_probes_every_bounded_intermediate(seed):
    """Max-magnitude weights (±127) and full-scale inputs: every quantity the analysis bounds is seen
    by a probe (LayerNorm sums, radicand, product, output; softmax exponent argument, sum, numerator;
    currents, cumulative inputs, membranes, tracers, scores, residual, logits) and stays inside."""
    art = random_vit(seed, depth=2, dim=16, heads=2, levels=32, worst_case=True)
    report = analyze(art)
    images = np.full((4, 1, 8, 8), art.input_max, dtype=np.int64)
    images[2:] = random_images(seed, art, 2)
    res = ViTSNN(art, narrow=False).run(images, probe=True)
    assert res.settled
    assert np.array_equal(res.logits, qann_forward(art, images).logits)
    unprobed = sorted(set(report.bits) - set(res.extremes))
    assert unprobed == [], f"bounded but never probed: {unprobed}"
    unbounded = sorted(set(res.extremes) - set(report.bits))
    assert unbounded == [], f"probed but not bounded by the analysis: {unbounded}"
    over = {k: (v, report.bound(k)) for k, v in res.extremes.items() if v > report.bound(k)}
    assert over == {}, f"seen beyond the bound: {over}"
    for key in ("ln1.s1", "ln1.s2", "ln1.radicand", "ln1.product", "softmax.exponent_arg",
                "softmax.sum", "softmax.numerator"):
        assert res.extremes[f"blocks.0.{key}"] > 0, key
    assert len(res.extremes) == len(report.bits) > 100
    # the narrow dtypes chosen from the analysis run the same network without an overflow
    narrow = ViTSNN(art).run(images)
    assert np.array_equal(narrow.logits, res.logits)
