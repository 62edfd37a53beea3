"""The trained spike-driven transformer in ``tests/data/sdt.esa`` (T = 4, SDSA-3, the model the README
states): golden model == int64 PyTorch forward on every digits test image, and the accuracy, ACs and
energy the README gives beside ``equispike eval --artifact tests/data/sdt.esa`` are what a run gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from equispike.model.sdt import load_sdt_artifact, run_sdt
from equispike.model.sdt_widths import analyze_sdt
from equispike.quant.sdt import forward_int
from equispike.quant.sdt_commands import evaluate_sdt

ROOT = Path(__file__).resolve().parents[1]
SDT = ROOT / "tests" / "data" / "sdt.esa"
EVAL_COMMAND = "equispike eval --artifact tests/data/sdt.esa"


@pytest.fixture(scope="module")
def evaluated() -> dict:
    return evaluate_sdt(SDT)


def test_golden_equals_pytorch_on_every_test_image():
    """Every logit of every test image, at T = 4 and after the first step."""
    from equispike.quant.data import load_split

    art = load_sdt_artifact(SDT)
    x = load_split().x_test
    assert len(x) == 360
    for steps in (art.timesteps, 1):
        golden = run_sdt(art, x, steps, probe=True)
        torch_int = forward_int(art, x, steps).numpy()
        assert golden.logits.shape == torch_int.shape == (360, art.dims.classes)
        np.testing.assert_array_equal(golden.logits, torch_int)
        # the run stayed inside the analysis at every narrowing point it checked
        rep = analyze_sdt(art)
        assert golden.extremes is not None and set(golden.extremes) <= set(rep.bits)
        for key, (lo, hi) in golden.extremes.items():
            assert rep.lo[key] <= lo <= hi <= rep.hi[key], key


def test_readme_figures_are_what_eval_gives(evaluated):
    r = evaluated
    assert r["images"] == 360 and r["agreement"] == 1.0
    assert r["golden_acc"] == r["pytorch_int_acc"]
    art = load_sdt_artifact(SDT)
    assert r["golden_acc"] == art.meta["int_test_acc"]  # the accuracy recorded at training
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if EVAL_COMMAND in ln]
    assert len(lines) >= 2, f"the README states no figures beside {EVAL_COMMAND!r}"
    acc = f"{100 * r['golden_acc']:.2f} %"
    for ln in lines:
        assert acc in ln, (acc, ln)
    # the sdt table's row: ACs and energy per image as well
    acs = f"{r['acs_per_image']['mean']:,.0f}"
    nj = f"{r['energy_pj_per_image']['mean'] / 1e3:.1f} nJ"
    assert any(acs in ln and nj in ln for ln in lines), (acs, nj, lines)
