"""The spike-driven transformer (``arch: "sdt"``) on the core: compiler, reference executor, RTL.

Every comparison is :func:`equispike.sim.core.compare.compare_image` against ``run_sdt(record=True)``
(:func:`~equispike.sim.core.compare.sdt_golden`): every spike of every LIF site of every step
(padding lanes included), the logits, the steps run (exactly T, no settle step) and the SPEC §10
event counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from equispike.compiler.isa import CoreParams, Instr, Op
from equispike.compiler.isasim import run_program
from equispike.compiler.program import CompileError, image_rows
from equispike.compiler.sdt_program import compile_sdt, fit_sdt_params
from equispike.model.factory import random_images
from equispike.model.sdt import random_sdt
from equispike.sim.core.compare import compare_image, sdt_golden

#: random sdt models: shapes, both attentions, T = 1 and 4
SHAPES = {
    "dim16-h2-d1-sdsa3-t4": dict(dim=16, heads=2, depth=1, mlp_dim=32, attention="sdsa3", timesteps=4),
    "dim16-h2-d1-sdsa1-t4": dict(dim=16, heads=2, depth=1, mlp_dim=32, attention="sdsa1", timesteps=4),
    "dim24-h3-d2-sdsa3-t1": dict(dim=24, heads=3, depth=2, mlp_dim=40, attention="sdsa3", timesteps=1),
    "dim12-h1-d2-sdsa1-t1": dict(dim=12, heads=1, depth=2, mlp_dim=20, attention="sdsa1", timesteps=1),
    "dim32-h4-d1-p4-sdsa3-t4": dict(
        dim=32, heads=4, depth=1, mlp_dim=48, patch=4, attention="sdsa3", timesteps=4, classes=5
    ),
    "dim8-h2-d0-sdsa3-t4": dict(dim=8, heads=2, depth=0, mlp_dim=16, attention="sdsa3", timesteps=4),
}


def _model(name: str, seed: int = 5, batch: int = 3):
    art = random_sdt(seed, **SHAPES[name])
    images = random_images(3, art, batch)
    return art, images


def _expected_spikes(prog, steps: int) -> int:
    """Spikes a full comparison of one image covers: every S row of every site, every step."""
    return steps * sum(sm.nvec * sm.nch for sm in prog.sites.values()) * prog.params.lanes


def _check_isa(art, images, lanes: int) -> int:
    prog = compile_sdt(art, fit_sdt_params(art, lanes))
    golden = sdt_golden(art, images)
    fired = 0
    for b in range(len(images)):
        r = run_program(prog, image_rows(prog, art, images[b]))
        c = compare_image(prog, golden, b, r.trace, r.logits, r.settle_step, r.steps, r.counts)
        assert c.ok, c.first_mismatch or c.notes
        assert r.steps == art.timesteps and r.settle_step == -1
        assert c.steps_compared == art.timesteps
        assert c.spikes_compared == _expected_spikes(prog, art.timesteps) > 0
        fired += sum(int(np.count_nonzero(s)) for _, _, s in r.trace)
    return fired


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("lanes", [4, 16])
def test_reference_executor_matches_run_sdt(name, lanes):
    art, images = _model(name)
    assert _check_isa(art, images, lanes) > 0  # spikes fired: the comparison is not all zeros


TRAINED = Path(__file__).resolve().parent / "data" / "sdt.esa"


def test_reference_executor_trained_artifact():
    """The trained model (``tests/data/sdt.esa``, T = 4, SDSA-3): three digits test images."""
    from equispike.model.sdt import load_sdt_artifact
    from equispike.quant.data import load_split

    art = load_sdt_artifact(TRAINED)
    assert art.attention == "sdsa3" and art.timesteps == 4
    assert _check_isa(art, load_split().x_test[:3], 64) > 0


def test_every_site_fires():
    """The random models exercise every site (a site that never fires would compare only zeros)."""
    for name in ("dim16-h2-d1-sdsa3-t4", "dim16-h2-d1-sdsa1-t4"):
        art, images = _model(name)
        rec = sdt_golden(art, images).records
        silent = [k for k, v in rec.items() if not v["spikes"].any()]
        assert not silent, f"{name}: sites that never fire: {silent}"


def test_signed_input_and_narrow_words():
    """Signed image codes (SRC_SCODES) and every word cut to the model's width."""
    art = random_sdt(11, dim=16, heads=2, mlp_dim=32, attention="sdsa3", timesteps=2)
    art.input_min, art.input_max = -8, 7
    art.validate()
    images = random_images(4, art, 2)
    assert images.min() < 0
    prog = compile_sdt(art, fit_sdt_params(art, 8, narrow=True))
    golden = sdt_golden(art, images)
    for b in range(2):
        r = run_program(prog, image_rows(prog, art, images[b]))
        c = compare_image(prog, golden, b, r.trace, r.logits, r.settle_step, r.steps, r.counts)
        assert c.ok, c.first_mismatch or c.notes


def test_corrupted_threshold_is_caught():
    """One LIF threshold changed in the program's Q image: the comparison names the step and site."""
    art, images = _model("dim16-h2-d1-sdsa3-t4", batch=1)
    prog = compile_sdt(art, fit_sdt_params(art, 8))
    golden = sdt_golden(art, images)
    region = prog.regions["theta.blocks.0.fc1"]
    prog.images["Q"][region.base : region.base + region.rows] += 1000
    r = run_program(prog, image_rows(prog, art, images[0]))
    c = compare_image(prog, golden, 0, r.trace, r.logits, r.settle_step, r.steps, r.counts)
    assert not c.ok
    assert c.first_mismatch.startswith("image 0: step ") and "blocks.0.fc1" in c.first_mismatch


def test_step_fixed_runs_every_step():
    """A silent step does not end an sdt run: STEP fixed takes exactly T steps."""
    art, images = _model("dim16-h2-d1-sdsa3-t4", batch=1)
    prog = compile_sdt(art, fit_sdt_params(art, 8), t_max=6)
    step = [i for i in prog.instrs if i.op == Op.STEP]
    assert len(step) == 1 and step[0].fixed == 1 and step[0].imm == 6
    images = np.full_like(images, art.input_min)
    r = run_program(prog, image_rows(prog, art, images[0]))
    assert r.steps == 6 and r.settle_step == -1


def test_compile_rejects():
    art, _ = _model("dim16-h2-d1-sdsa3-t4")
    with pytest.raises(TypeError, match="art"):
        compile_sdt(object(), CoreParams())
    with pytest.raises(TypeError, match="params"):
        compile_sdt(art, object())
    with pytest.raises(ValueError, match="t_max"):
        compile_sdt(art, fit_sdt_params(art, 8), t_max=0)
    with pytest.raises(CompileError, match="D"):
        compile_sdt(art, fit_sdt_params(art, 8, dw=8))
    with pytest.raises(CompileError, match="memory W"):
        compile_sdt(art, fit_sdt_params(art, 8, w_depth=4))
    with pytest.raises(ValueError, match="lanes"):
        fit_sdt_params(art, 6)
    with pytest.raises(TypeError, match="art"):
        fit_sdt_params(object(), 8)


def test_listing_names_the_new_modes():
    art, _ = _model("dim16-h2-d1-sdsa1-t4")
    prog = compile_sdt(art, fit_sdt_params(art, 8))
    text = prog.listing()
    assert "lif=1" in text and "keep=1" in text and "fixed=1" in text
    assert "LIF blocks.0.kv" in text
    assert Instr(Op.NEURON, lif=1).listing().startswith("NEURON")


# ---- the RTL under Verilator (one build per attention kind) --------------------------------------------
@pytest.mark.sim
@pytest.mark.parametrize("attention", ["sdsa3", "sdsa1"])
def test_core_rtl_matches_run_sdt(attention, tmp_path_factory):
    """Every spike of every LIF site of every step, the logits, T steps and the counts, on the RTL;
    a second run of the same build with idle input cycles and output back-pressure. Each run
    once per seed of the power-up values (EQUISPIKE_INIT_SEEDS)."""
    from equispike.sim.core.run import run_core

    art = random_sdt(5, dim=16, heads=2, mlp_dim=32, attention=attention, timesteps=4)
    images = random_images(3, art, 3)
    build = tmp_path_factory.mktemp(f"sdt-core-{attention}")
    prog = compile_sdt(art, fit_sdt_params(art, 8))
    for idle, stall in ((0, 0), (300, 300)):
        rep = run_core(art, images, lanes=8, build_dir=build, idle_permille=idle, stall_permille=stall)
        assert rep.ok, rep.first_mismatch
        assert rep.mismatches == 0 and rep.logits_equal == rep.settle_equal == rep.energy_equal == 3
        assert rep.spikes_compared == len(rep.init_seeds) * 3 * _expected_spikes(prog, art.timesteps)
        assert rep.steps_per_image == art.timesteps
        assert rep.cycles_per_image > 0


def test_core_build_reads_sdt_artifacts(tmp_path, capsys):
    """``equispike core build`` dispatches on the artifact's arch: an sdt artifact gives its Verilog,
    memory images and a listing with the LIF program."""
    from equispike.cli import EXIT_OK, main
    from equispike.model.sdt import save_sdt_artifact

    art = random_sdt(5, dim=8, heads=2, mlp_dim=16, attention="sdsa1", timesteps=2)
    path = save_sdt_artifact(art, tmp_path / "sdt.esa")
    out = tmp_path / "build"
    assert main(["core", "build", str(path), "--lanes", "4", "--out", str(out)]) == EXIT_OK
    listing = (out / "program.lst").read_text()
    assert "LIF blocks.0.kv" in listing and "STEP" in listing and "fixed=1" in listing
    assert (out / "equispike_core.v").stat().st_size > 0
