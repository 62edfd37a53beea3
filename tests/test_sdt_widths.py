"""Every bound of the sdt width analysis (``model/sdt_widths.py``) is reached exactly by the golden
model on a worst-case artifact and never exceeded; one value past any bound stops the run with an
``OverflowError`` naming the quantity (the golden model checks every bounded intermediate)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from equispike.model.sdt import run_sdt, worst_case_sdt, worst_case_sdt_images
from equispike.model.sdt_widths import analyze_sdt
from equispike.model.widths import WidthReport
from equispike.quant.sdt import forward_int

SHAPES = {
    "d2-dim8-h2-sdsa3": dict(depth=2, dim=8, heads=2, mlp_dim=16, attention="sdsa3"),
    "d1-dim12-h3-p4-sdsa3": dict(image=16, patch=4, depth=1, dim=12, heads=3, mlp_dim=24, classes=5,
                                 attention="sdsa3", timesteps=3),
    "d2-dim8-h2-sdsa1": dict(depth=2, dim=8, heads=2, mlp_dim=16, attention="sdsa1"),
}


def _sdsa3_only(rep: WidthReport, attention: str) -> set[str]:
    """Keys that bound SDSA-3 quantities: an SDSA-1 run (a mask, no co-activation matrix) has none."""
    return {k for k in rep.bits if ".attn." in k} if attention == "sdsa1" else set()


def _worst(name: str):
    art = worst_case_sdt(**SHAPES[name])
    images = worst_case_sdt_images(art)
    return art, images, analyze_sdt(art)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_bound_is_reached_exactly(name):
    art, images, rep = _worst(name)
    run = run_sdt(art, images, probe=True)
    ext = run.extremes
    assert ext is not None
    # the worst case is an ordinary run: the independent PyTorch forward gives the same logits
    np.testing.assert_array_equal(run.logits, forward_int(art, images).numpy())
    skipped = _sdsa3_only(rep, art.attention)
    assert sorted(set(rep.bits) - set(ext) - skipped) == [], "bounded but never checked"
    assert sorted(set(ext) - set(rep.bits)) == [], "checked but not bounded by the analysis"
    for key, (lo, hi) in ext.items():
        assert rep.lo[key] <= lo <= hi <= rep.hi[key], (key, (lo, hi), (rep.lo[key], rep.hi[key]))
    reached = {k for k, (lo, hi) in ext.items() if max(-lo, hi) == rep.bound(k)}
    assert sorted(set(ext) - reached) == [], "bounds not reached exactly"
    # the groups the bounds exist for, each present
    for suffix in (".current", ".membrane", "attn.coactivation", "attn.input", "residual", "head.count",
                   "head.step", "logits", "stem.acc", "stem.product", "stem.out"):
        if art.attention == "sdsa1" and "attn." in suffix:
            continue
        assert any(k.endswith(suffix) for k in reached), suffix
    assert len(reached) == len(rep.bits) - len(skipped) >= 20
    # both signs of the logits reach their bound
    assert ext["logits"] == (rep.lo["logits"], rep.hi["logits"])


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_one_past_any_bound_raises(name):
    """Each bound, moved inward by one on the side the worst case reaches, makes that worst case one
    value past it: the run stops with an OverflowError naming the quantity."""
    art, images, rep = _worst(name)
    ext = run_sdt(art, images, probe=True).extremes
    assert ext is not None
    tried = 0
    for key, (lo, hi) in ext.items():
        narrow = copy.deepcopy(rep)
        if hi == rep.hi[key]:
            narrow.hi[key] = hi - 1
            past = hi
        else:
            narrow.lo[key] = lo + 1
            past = lo
        with pytest.raises(OverflowError, match=rf"^{key.replace('.', '[.]')}: value {past} at index"):
            run_sdt(art, images, bounds=narrow)
        tried += 1
    assert tried == len(rep.bits) - len(_sdsa3_only(rep, art.attention))


def test_the_check_names_index_and_range():
    art, images, rep = _worst("d2-dim8-h2-sdsa3")
    narrow = copy.deepcopy(rep)
    narrow.hi["blocks.0.attn.membrane"] = 10
    with pytest.raises(OverflowError) as exc:
        run_sdt(art, images, bounds=narrow)
    msg = str(exc.value)
    # image 1 (the attention image), token 0, channel 0: x = 8 after V = 3
    assert msg.startswith("blocks.0.attn.membrane: value 11 at index (1, 0, 0)")
    assert "[0, 10]" in msg


def test_worst_case_needs_enough_tokens():
    with pytest.raises(ValueError, match="tokens"):
        worst_case_sdt(image=4, patch=2)
