"""Whole-model exactness: the SNN summed over time equals the integer QANN (SPEC §9)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from equispike.cli import main
from equispike.model.check import compare
from equispike.model.factory import random_images, random_vit
from equispike.model.neurons import STBIFArray
from equispike.model.vit import ViTSNN, qann_forward
from equispike.model.widths import analyze


def test_check_random_50_models_cli(capsys):
    """`equispike check --random 50 --json`: 0 mismatches on every site's codes and on the logits."""
    rc = main(["check", "--random", "50", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["mismatches"] == 0, out["first_mismatch"]
    assert out["unsettled_images"] == 0
    assert out["cases"] == 50 and out["elements_compared"] > 1_000_000
    assert rc == 0


def test_check_detects_a_wrong_snn(monkeypatch):
    """The comparison can fail: an SNN whose thresholds are off by one must be caught."""
    art = random_vit(11, depth=1, dim=16, heads=2, levels=8)
    images = random_images(1, art, 4)
    real = STBIFArray.__init__

    def off_by_one(self, shape, theta, qn, qp, v_dtype=np.int64):
        real(self, shape, np.asarray(theta) + 1, qn, qp, v_dtype=np.int64)

    monkeypatch.setattr(STBIFArray, "__init__", off_by_one)
    res = compare("broken", art, images)
    assert res.mismatches > 0
    fm = res.first_mismatch
    assert fm["expected"] != fm["got"] and fm["site"]


def test_check_cli_exit_code_on_mismatch(monkeypatch, capsys):
    monkeypatch.setattr("equispike.model.check.compare", _broken_compare)
    assert main(["check", "--random", "2", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["mismatches"] > 0


def _broken_compare(name, art, images, t_max=2048):
    from equispike.model.check import CaseResult

    return CaseResult(
        name=name,
        elements=10,
        mismatches=1,
        first_mismatch={"case": name, "site": "x", "index": [0], "expected": 1, "got": 2},
        settle_steps=[3],
    )


def test_records_are_compact_and_consistent():
    """Per-step records: int8 spikes whose sums are the settled codes; currents reproduce the tracer."""
    art = random_vit(5, depth=2, dim=16, heads=2, levels=16)
    images = random_images(3, art, 3)
    res = ViTSNN(art).run(images, record=True)
    q = qann_forward(art, images)
    assert set(res.records) == set(q.codes)
    for site, rec in res.records.items():
        assert rec["spikes"].dtype == np.int8 and rec["spikes"].shape[0] == res.steps
        total = rec["spikes"].sum(axis=0, dtype=np.int64)
        assert np.array_equal(total, q.codes[site]), site
    only = ViTSNN(art).run(images, record={"blocks.0.q"}, record_currents=False)
    assert set(only.records) == {"blocks.0.q"} and "current" not in only.records["blocks.0.q"]


def test_settle_step_cap_reports_unsettled():
    art = random_vit(2, depth=2, dim=16, heads=2, levels=32)
    images = random_images(3, art, 4)
    res = ViTSNN(art).run(images, t_max=2)
    assert res.steps == 2 and not res.settled and (res.settle_step == -1).all()
    with pytest.raises(ValueError, match="t_max"):
        ViTSNN(art).run(images, t_max=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_worst_case_stays_within_computed_widths(seed):
    """Max-magnitude weights (±127) and inputs at full scale: no probed value exceeds its bound."""
    art = random_vit(seed, depth=2, dim=16, heads=2, levels=32, worst_case=True)
    report = analyze(art)
    images = np.full((4, 1, 8, 8), art.input_max, dtype=np.int64)
    images[2:] = random_images(seed, art, 2)
    res = ViTSNN(art, narrow=False).run(images, probe=True)
    assert res.settled
    q = qann_forward(art, images)
    assert np.array_equal(res.logits, q.logits)
    checked = 0
    for key, seen in res.extremes.items():
        assert seen <= report.bound(key), f"{key}: saw {seen}, bound {report.bound(key)}"
        assert seen < 2 ** (report.bits[key] - 1)
        checked += 1
    assert checked > 20
    # and the narrow dtypes chosen from the analysis give the same run
    narrow = ViTSNN(art).run(images)
    assert np.array_equal(narrow.logits, res.logits)


def test_large_residual_multipliers():
    """Regression: multipliers M >= 128 (R = 10 exports) must not overflow the int8 spike arrays."""
    import dataclasses

    art = random_vit(0, depth=2, dim=16, heads=2)
    for site, m in (("patch_embed", 128), ("blocks.0.proj", 371), ("blocks.1.fc2", 255)):
        art.sites[site] = dataclasses.replace(art.sites[site], M=m)
    art.validate()
    images = random_images(1, art, 3)
    res = compare("large-M", art, images)
    assert res.mismatches == 0 and res.unsettled == 0, res.first_mismatch
