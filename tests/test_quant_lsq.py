"""LSQ quantizer and int8 weight fake-quant: forward values, STE and LSQ gradients, rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equispike.model.neurons import quantize
from equispike.quant.lsq import (
    LSQQuantizer,
    fake_quant_weight,
    round_half_up,
    round_ste,
    weight_codes,
    weight_scale,
)

torch.set_num_threads(1)


def assert_equal(got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    if len(bad):
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} mismatches; first at {i}: got {got[i]}, "
                             f"want {want[i]}")


def test_round_half_up_ties_go_up():
    x = torch.tensor([-2.5, -1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 3.7])
    assert_equal(round_half_up(x), torch.tensor([-2.0, -1, 0, 0, 0, 0, 1, 2, 3, 4]), "round")


def test_round_ste_gradient_is_identity():
    x = torch.linspace(-3, 3, 13, requires_grad=True)
    round_ste(x).sum().backward()
    assert_equal(x.grad, torch.ones(13), "STE grad")


@pytest.mark.parametrize("levels,signed", [(8, True), (16, True), (16, False), (32, True)])
@pytest.mark.parametrize("theta", [1, 2, 7, 12, 33])
def test_forward_equals_integer_quantizer(levels, signed, theta):
    """x = A·u, s = Θ·u (u a power of two, exact in float): codes equal model.neurons.quantize."""
    u = 2.0**-6
    A = torch.arange(-40 * theta, 40 * theta + 1, dtype=torch.float64)
    q = LSQQuantizer("t", levels, signed).double()
    q.enabled = True
    q.initialized.fill_(True)
    q.step.data.fill_(theta * u)
    q.record = True
    out = q(A * u)
    want = quantize(A.numpy().astype(np.int64), np.array([theta]), q.qn, q.qp)
    assert_equal(q.last_codes.numpy(), want, "codes")
    assert_equal(out.detach().numpy(), want * theta * u, "values")
    # the unit form: Θ from the step and the unit gives the same codes
    q.step.data.fill_(theta * u * 1.1)  # round(1.1Θ) may differ from Θ: compare with that Θ
    th = max(1, math.floor(theta * 1.1 + 0.5))
    q(A * u, unit=u)
    want = quantize(A.numpy().astype(np.int64), np.array([th]), q.qn, q.qp)
    assert_equal(q.last_codes.numpy(), want, "codes with unit")


def test_backward_ste_and_lsq_step_gradient():
    torch.manual_seed(0)
    q = LSQQuantizer("t", 16, True).double()
    q.enabled = True
    q.initialized.fill_(True)
    s = 0.3
    q.step.data.fill_(s)
    x = (torch.randn(4, 50, dtype=torch.float64) * 2).requires_grad_(True)
    upstream = torch.randn(4, 50, dtype=torch.float64)
    (q(x) * upstream).sum().backward()
    v = x.detach() / s
    inside = (v >= q.qn) & (v <= q.qp)
    # d(n·s)/dx = (1/s)·s inside the range: equal up to one rounding of the float product
    np.testing.assert_allclose(x.grad.numpy(), (upstream * inside).numpy(), rtol=1e-12, atol=0,
                               err_msg="STE input grad")
    assert_equal(x.grad.numpy() == 0, (~inside).numpy(), "zero gradient exactly outside the range")
    g = 1.0 / math.sqrt(50 * q.qp)  # N = elements per sample
    d = torch.where(inside, torch.floor(v + 0.5) - v, torch.clamp(v, q.qn, q.qp))
    want = float((d * upstream).sum()) * g
    assert q.step.grad is not None
    assert abs(float(q.step.grad) - want) < 1e-9 * max(1.0, abs(want)), (float(q.step.grad), want)


def test_unsigned_site_clamps_at_zero():
    q = LSQQuantizer("fc1", 16, False)
    q.enabled = True
    q.initialized.fill_(True)
    q.step.data.fill_(0.5)
    out = q(torch.tensor([[-3.0, -0.2, 0.2, 0.3, 7.4, 100.0]]))
    assert_equal(out.detach().numpy(), np.array([[0, 0, 0, 0.5, 7.5, 7.5]], dtype=np.float32), "unsigned")


def test_step_initialized_from_data():
    q = LSQQuantizer("t", 16, True)
    q.enabled = True
    x = torch.randn(8, 32)
    q(x)
    assert bool(q.initialized)
    want = 2 * x.abs().mean().item() / math.sqrt(7)
    assert abs(q.step.item() - want) < 1e-6
    q(x * 10)  # already initialized: unchanged
    assert abs(q.step.item() - want) < 1e-6


def test_disabled_is_identity():
    q = LSQQuantizer("t", 8, True)
    x = torch.randn(3, 5)
    assert_equal(q(x).numpy(), x.numpy(), "identity")


def test_weight_fake_quant_per_channel_and_single_scale():
    torch.manual_seed(1)
    w = torch.randn(6, 10) * torch.arange(1, 7).float()[:, None]
    codes = weight_codes(w)
    assert codes.dtype == torch.int64
    assert int(codes.abs().max()) <= 127
    assert_equal(codes.abs().amax(dim=1).numpy(), np.full(6, 127), "each row reaches 127")
    s = weight_scale(w)
    assert s.shape == (6, 1)
    assert_equal(fake_quant_weight(w).detach().numpy(), (codes.float() * s).numpy(), "dequant")
    want = torch.clamp(torch.floor(w / s + 0.5), -127, 127)
    assert_equal(codes.numpy(), want.long().numpy(), "codes = round-half-up(w/s)")
    one = weight_codes(w, per_channel=False)
    assert int(one.abs().max()) == 127
    assert weight_scale(w, per_channel=False).shape == ()
    assert (one.abs().amax(dim=1) < 127).sum() == 5  # only the largest row reaches 127
    wg = w.clone().requires_grad_(True)
    fake_quant_weight(wg).sum().backward()
    assert_equal(wg.grad.numpy(), np.ones((6, 10), dtype=np.float32), "weight STE grad")
