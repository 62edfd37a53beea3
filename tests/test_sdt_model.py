"""The spike-driven transformer: golden model == int64 PyTorch forward == integer-aware training
forward, exactly; the golden model is built from the one definition of each operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equispike.model import linear, neurons, sdsa, sdt
from equispike.model.sdt import SDTDims, random_sdt, run_sdt, sdt_dense_macs
from equispike.model.sdt_widths import analyze_sdt
from equispike.quant.sdt import SDTConfig, SDTNet, forward_int

torch.set_num_threads(1)


def _images(seed: int, n: int, hi: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, hi + 1, size=(n, 8, 8))


@pytest.mark.parametrize("attention", ["sdsa3", "sdsa1"])
@pytest.mark.parametrize("depth,timesteps", [(0, 1), (1, 1), (1, 4), (2, 4), (2, 7)])
def test_golden_equals_pytorch_integer_forward_on_random_models(attention, depth, timesteps):
    fired = 0
    for seed in range(3):
        art = random_sdt(seed, depth=depth, attention=attention, timesteps=timesteps, dim=16, heads=2)
        x = _images(100 + seed, 12)
        g = run_sdt(art, x)
        p = forward_int(art, x).numpy()
        np.testing.assert_array_equal(g.logits, p)
        assert g.step_logits.shape == (timesteps, 12, 10)
        np.testing.assert_array_equal(g.step_logits[-1], g.logits)
        fired += sum(int(v.sum()) for k, v in g.spikes.items() if k.endswith("attn"))
    if depth:
        assert fired > 0, "attention never fired: the comparison would not cover it"


def test_golden_equals_pytorch_on_other_shapes():
    art = random_sdt(7, image=8, patch=4, dim=24, heads=3, depth=1, mlp_dim=8, classes=3)
    x = _images(1, 9)
    np.testing.assert_array_equal(run_sdt(art, x).logits, forward_int(art, x).numpy())
    # fewer and more steps than the artifact's default
    for T in (1, 2, 9):
        np.testing.assert_array_equal(run_sdt(art, x, T).logits, forward_int(art, x, T).numpy())


@pytest.mark.parametrize("attention", ["sdsa3", "sdsa1"])
def test_integer_aware_training_forward_is_the_exported_model(attention):
    torch.manual_seed(3)
    cfg = SDTConfig(dim=16, heads=2, depth=2, attention=attention, timesteps=3)
    model = SDTNet(cfg)
    x = torch.from_numpy(_images(5, 48))
    model.train()
    model(x)  # BatchNorm running statistics away from their initial values
    model.integer = True
    with torch.no_grad():
        trained = model.integer_logits(x).numpy()
    art = model.export()
    assert np.array_equal(trained, np.round(trained))
    np.testing.assert_array_equal(trained.astype(np.int64), forward_int(art, x.numpy()).numpy())
    np.testing.assert_array_equal(run_sdt(art, x.numpy()).logits, trained.astype(np.int64))


def test_golden_builds_on_the_shared_operator_definitions(monkeypatch):
    """One definition per rule: the golden model's neurons, attention and linears are the library's."""
    assert sdt.LIFArray is neurons.LIFArray
    assert sdt.SDSA3 is sdsa.SDSA3 and sdt.sdsa1 is sdsa.sdsa1
    assert sdt.AWLinear is linear.AWLinear
    calls = {"lif": 0, "sdsa3": 0, "sdsa1": 0, "aw": 0}

    def counting(key, fn):
        def wrapper(*a, **k):
            calls[key] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(neurons.LIFArray, "step", counting("lif", neurons.LIFArray.step))
    monkeypatch.setattr(sdsa.SDSA3, "step", counting("sdsa3", sdsa.SDSA3.step))
    monkeypatch.setattr(sdt, "sdsa1", counting("sdsa1", sdsa.sdsa1))
    monkeypatch.setattr(linear.AWLinear, "__call__", counting("aw", linear.AWLinear.__call__))
    depth, T = 2, 3
    x = _images(0, 4)
    run_sdt(random_sdt(1, depth=depth, timesteps=T), x)
    # per step and block: lif1, qkv, lif2, fc1 (+ the attention LIF inside SDSA3); plus the head
    assert calls["lif"] == T * (4 * depth + 1) + T * depth
    assert calls["sdsa3"] == T * depth and calls["sdsa1"] == 0
    assert calls["aw"] == T * (4 * depth + 1)
    run_sdt(random_sdt(1, depth=depth, timesteps=T, attention="sdsa1"), x)
    assert calls["sdsa1"] == T * depth


def test_energy_counts_follow_the_spikes():
    art = random_sdt(2, depth=1, dim=16, heads=2, mlp_dim=32, timesteps=2)
    d = art.dims
    x = _images(9, 5)
    r = run_sdt(art, x)
    N, D, F = d.tokens, d.dim, d.mlp_dim
    np.testing.assert_array_equal(r.macs, np.full(5, N * D * d.patch_dim + N * D))
    s = r.spikes
    # q and k spikes (the SDSA-3 events) are a part of the qkv spikes; bound the total from both sides
    base = s["blocks.0.lif1"] * 3 * D + s["blocks.0.attn"] * D + s["blocks.0.lif2"] * F
    base = base + s["blocks.0.fc1"] * D + s["head"] * d.classes
    dh = D // d.heads
    assert np.all(r.acs >= base) and np.all(r.acs <= base + s["blocks.0.qkv"] * dh)
    np.testing.assert_allclose(r.energy_pj, 4.6 * r.macs + 0.9 * r.acs)
    assert sdt_dense_macs(d, 2) > sdt_dense_macs(d, 1) > N * D * d.patch_dim


def test_widths_hold_every_value_of_a_run():
    """Drive membranes with the brightest image and random ones; every LIF stays within its bound."""
    art = random_sdt(4, depth=2, timesteps=6)
    rep = analyze_sdt(art)
    assert set(art.widths) <= set(rep.bits)
    seen: dict[str, list[int]] = {}
    orig = neurons.LIFArray.step

    def watch(self, x):
        key = id(self)
        lo, hi = int(np.min(self.V + x)), int(np.max(self.V + x))
        seen.setdefault(key, [lo, hi])
        seen[key] = [min(seen[key][0], lo), max(seen[key][1], hi)]
        return orig(self, x)

    mp = pytest.MonkeyPatch()
    mp.setattr(neurons.LIFArray, "step", watch)
    try:
        x = np.concatenate([_images(3, 6), np.full((1, 8, 8), 16), np.zeros((1, 8, 8), np.int64)])
        r = run_sdt(art, x)
    finally:
        mp.undo()
    lo = min(v[0] for v in seen.values())
    hi = max(v[1] for v in seen.values())
    assert min(rep.lo[k] for k in rep.bits if k.endswith(".membrane")) <= lo
    assert max(rep.hi[k] for k in rep.bits if k.endswith(".membrane")) >= hi
    assert np.abs(r.logits).max() <= rep.hi["logits"]


def test_dims_are_validated():
    from equispike.model.artifact import ArtifactError

    with pytest.raises(ArtifactError, match="dims.heads"):
        SDTDims(dim=10, heads=3)
    with pytest.raises(ArtifactError, match="dims.patch"):
        SDTDims(image=8, patch=3)


def test_bad_images_and_steps_are_rejected():
    art = random_sdt(0)
    with pytest.raises(ValueError, match="input range"):
        run_sdt(art, np.full((1, 8, 8), 17))
    with pytest.raises(ValueError, match="timesteps"):
        run_sdt(art, _images(0, 1), 0)
    with pytest.raises(ValueError, match="image codes"):
        forward_int(art, np.full((1, 8, 8), -1))
