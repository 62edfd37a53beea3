"""The core end to end: compiler, reference executor and the RTL under Verilator, against the golden SNN.

Every comparison is :func:`equispike.sim.core.compare.compare_image`: every spike of every site of
every step (padding lanes included), the logits, the settle step, the steps run and the SPEC §10
event counts. The Verilator tests build one core per model (the memories' contents are part of the
generated Verilog) and vary the stimulus inside that build: back-to-back images, idle input cycles
and output back-pressure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from equispike.cli import EXIT_BAD_INPUT, EXIT_OK, main
from equispike.compiler.isa import CoreParams
from equispike.compiler.isasim import run_program
from equispike.compiler.program import CompileError, compile_artifact, fit_params, image_rows
from equispike.model.artifact import load_artifact
from equispike.model.factory import random_images, random_vit
from equispike.model.vit import ViTSNN
from equispike.sim.build import build_dir_for, init_seeds
from equispike.sim.core.compare import compare_image
from equispike.sim.core.run import run_core

DIGITS = Path(__file__).resolve().parent / "data" / "digits.esa"

#: random models of other shapes (depth 1-3, dim 16-64, heads 1-4, levels 4-32) and a worst case
SHAPES = {
    "d1-dim16-h1-l4": dict(depth=1, dim=16, heads=1, levels=4),
    "d2-dim32-h4-l32": dict(depth=2, dim=32, heads=4, levels=32),
    "d3-dim64-h2-l8": dict(depth=3, dim=64, heads=2, levels=8),
    "worst-d2-dim16-h2-l32": dict(depth=2, dim=16, heads=2, levels=32, worst_case=True),
}

#: norm row units of the core each random model runs on in the Verilator tests
NORM_UNITS = {"d1-dim16-h1-l4": 1, "d2-dim32-h4-l32": 2, "d3-dim64-h2-l8": 3, "worst-d2-dim16-h2-l32": 2}


def _model(name: str):
    kw = SHAPES[name]
    art = random_vit(7, **kw)
    images = random_images(3, art, 3)
    if kw.get("worst_case"):
        images[0] = art.input_max  # full-scale input: the analysis's worst case
    return art, images


def _expected_spikes(prog, golden, b: int) -> int:
    """Spikes a full comparison of image ``b`` covers: every S row of every site, every step."""
    steps = int(golden.settle_step[b]) + 1 if golden.settle_step[b] >= 0 else golden.steps
    rows = sum(sm.nvec * sm.nch for sm in prog.sites.values())
    return steps * rows * prog.params.lanes


# ---- compiler and reference executor (NumPy, fast) ----------------------------------------------------
@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("lanes", [8, 32])
def test_reference_executor_matches_golden(name, lanes):
    art, images = _model(name)
    prog = compile_artifact(art, fit_params(art, lanes))
    golden = ViTSNN(art).run(images, record=True)
    for b in range(len(images)):
        r = run_program(prog, image_rows(prog, art, images[b]))
        c = compare_image(prog, golden, b, r.trace, r.logits, r.settle_step, r.steps, r.counts)
        assert c.ok, c.first_mismatch or c.notes
        assert c.spikes_compared == _expected_spikes(prog, golden, b) > 0
        assert c.steps_compared == r.steps


def test_reference_executor_digits():
    from equispike.quant.data import load_split

    art = load_artifact(DIGITS)
    prog = compile_artifact(art, fit_params(art, 64))
    x = load_split().x_test[:2]
    golden = ViTSNN(art).run(x, record=True)
    for b in range(2):
        r = run_program(prog, image_rows(prog, art, x[b]))
        c = compare_image(prog, golden, b, r.trace, r.logits, r.settle_step, r.steps, r.counts)
        assert c.ok, c.first_mismatch or c.notes
        assert c.spikes_compared == _expected_spikes(prog, golden, b)


def test_corrupted_weight_is_caught():
    """One weight changed in the program's memory image: the comparison names where it shows."""
    art, images = _model("d2-dim32-h4-l32")
    prog = compile_artifact(art, fit_params(art, 8))
    golden = ViTSNN(art).run(images[:1], record=True)
    region = prog.regions["blocks.0.fc1"]
    assert region.mem == "W"
    prog.images["W"][region.base : region.base + 4] += 40
    r = run_program(prog, image_rows(prog, art, images[0]))
    c = compare_image(prog, golden, 0, r.trace, r.logits, r.settle_step, r.steps, r.counts)
    assert not c.ok
    assert c.mismatches > 0
    assert c.first_mismatch.startswith("image 0: step ")


def test_trace_tampering_is_caught():
    """A dropped row, a flipped spike and a wrong settle step each fail the comparison."""
    art, images = _model("d1-dim16-h1-l4")
    prog = compile_artifact(art, fit_params(art, 8))
    golden = ViTSNN(art).run(images[:1], record=True)
    r = run_program(prog, image_rows(prog, art, images[0]))

    def cmp(trace, settle=r.settle_step, logits=r.logits):
        return compare_image(prog, golden, 0, trace, logits, settle, r.steps, r.counts)

    assert cmp(r.trace).ok
    assert "missing" in cmp(r.trace[1:]).first_mismatch
    t, row, s = r.trace[-1]
    flipped = s.copy()
    flipped[-1] = 1 if flipped[-1] != 1 else -1  # a padding lane counts too
    c = cmp(r.trace[:-1] + [(t, row, flipped)])
    assert not c.ok and f"step {t}" in c.first_mismatch
    assert not cmp(r.trace, settle=r.settle_step + 1).settle_equal
    bad = r.logits.copy()
    bad[0] += 1
    assert not cmp(r.trace, logits=bad).logits_equal


def test_compile_errors_name_the_limit():
    art, _ = _model("d2-dim32-h4-l32")
    with pytest.raises(CompileError, match=r"memory D: the model needs \d+ rows, the core has 64"):
        compile_artifact(art, CoreParams(lanes=8, d_depth=64))
    with pytest.raises(CompileError, match=r"memory D: bank 0 .* the core has 64 \(d_split\)"):
        compile_artifact(art, CoreParams(lanes=8, d_split=64))
    with pytest.raises(CompileError, match="max_dim"):
        compile_artifact(art, CoreParams(lanes=8, max_dim=16))
    with pytest.raises(CompileError, match="instructions"):
        compile_artifact(art, fit_params(art, 8, prog_depth=8))
    with pytest.raises(TypeError, match="params"):
        compile_artifact(art, {"lanes": 8})
    with pytest.raises(ValueError, match="lanes"):
        fit_params(art, 12)
    with pytest.raises(TypeError, match="lanes"):
        fit_params(art, "8")


def test_fit_params_is_minimal():
    art, _ = _model("d2-dim32-h4-l32")
    p = fit_params(art, 8)
    compile_artifact(art, p)
    for attr in ("d_depth", "s_depth", "w_depth"):
        with pytest.raises(CompileError):
            compile_artifact(art, fit_params(art, 8, **{attr: getattr(p, attr) // 2}))
    narrow = fit_params(art, 8, narrow=True)
    assert narrow.vw < p.vw and narrow.pw < p.pw
    compile_artifact(art, narrow)


# ---- the RTL under Verilator ---------------------------------------------------------------------------
def _run_rtl(request, art, images, params, **stimulus):
    rep = run_core(
        art,
        images,
        params=params,
        build_dir=build_dir_for(request.node.nodeid),
        batch=len(images),
        **stimulus,
    )
    assert rep.ok, rep.first_mismatch
    assert rep.images == len(images)
    golden = ViTSNN(art).run(images, record=True)
    prog = compile_artifact(art, params)
    # every image once per seed of the power-up values (EQUISPIKE_INIT_SEEDS)
    assert rep.init_seeds == list(init_seeds())
    per_run = sum(_expected_spikes(prog, golden, b) for b in range(len(images)))
    assert rep.spikes_compared == len(rep.init_seeds) * per_run
    assert rep.logits_equal == rep.settle_equal == rep.energy_equal == len(images)
    return rep


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_core_rtl_random_models(request, name):
    """Three images back to back, then the same images with idle input and output back-pressure."""
    art, images = _model(name)
    # the worst case at the narrowest words the analysis allows; 1 to 3 row units per norm kind
    params = fit_params(art, 8, narrow=bool(SHAPES[name].get("worst_case")), norm_units=NORM_UNITS[name])
    fast = _run_rtl(request, art, images, params)
    slow = _run_rtl(request, art, images, params, seed=5, idle_permille=300, stall_permille=500)
    # the core's own cycle count excludes the host's stalls on input; the output stalls come after it
    assert slow.cycles_per_image == fast.cycles_per_image
    assert 0 < fast.ideal_cycles_per_image < fast.cycles_per_image


@pytest.mark.sim
def test_core_run_digits_cli(tmp_path, capsys):
    """``equispike core run --images 20 --json`` on the digits model: 0 mismatches, exit 0."""
    build = Path("build") / "core" / "digits-p64"
    rc = main(["core", "run", "--artifact", str(DIGITS), "--images", "20", "--json",
               "--build-dir", str(build)])
    out = capsys.readouterr().out
    rep = json.loads(out)
    assert rc == EXIT_OK, rep.get("first_mismatch")
    assert rep["ok"] is True
    assert rep["images"] == 20
    assert rep["mismatches"] == 0
    assert rep["logits_equal"] == rep["settle_equal"] == rep["energy_equal"] == 20
    from equispike.quant.data import load_split

    art = load_artifact(DIGITS)
    prog = compile_artifact(art, fit_params(art, 64))
    golden = ViTSNN(art).run(load_split().x_test[:20], record=True)
    per_run = sum(_expected_spikes(prog, golden, b) for b in range(20))
    assert rep["spikes_compared"] == len(rep["init_seeds"]) * per_run
    assert rep["accuracy"] is not None and rep["qann_accuracy"] is not None
    assert set(rep["cycles_by_unit"]) >= {"engine", "attention", "softmax", "layernorm", "neurons"}
    assert 0 < rep["utilization"] < 1


def test_core_cli_bad_input(tmp_path, capsys):
    missing = tmp_path / "nope.esa"
    assert main(["core", "run", "--artifact", str(missing)]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert main(["core", "run", "--artifact", str(DIGITS), "--lanes", "12"]) == EXIT_BAD_INPUT
    assert main(["core", "run", "--artifact", str(DIGITS), "--images", "361"]) == EXIT_BAD_INPUT
    assert "361" in capsys.readouterr().err
    for bad in ("0", "x", ","):
        assert main(["core", "run", "--artifact", str(DIGITS), "--init-seeds", bad]) == EXIT_BAD_INPUT
    assert "--init-seeds" in capsys.readouterr().err
    assert main(["core", "build", str(missing), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_core_build_writes_everything(tmp_path, capsys):
    art, _ = _model("d1-dim16-h1-l4")
    from equispike.model.artifact import save_artifact

    path = tmp_path / "m.esa"
    save_artifact(art, path)
    out = tmp_path / "out"
    assert main(["core", "build", str(path), "--lanes", "8", "--out", str(out)]) == EXIT_OK
    summary = json.loads((out / "params.json").read_text())
    prog = compile_artifact(art, fit_params(art, 8))
    assert summary["instructions"] == len(prog.instrs)
    assert (out / "program.lst").read_text() == prog.listing()
    text = (out / "equispike_core.v").read_text()
    assert "module equispike_core" in text and "spike_trace" not in text
    for mem, rows in prog.images.items():
        assert len((out / f"mem_{mem}.hex").read_text().splitlines()) == rows.shape[0]
    # the same command gives the same bytes
    out2 = tmp_path / "out2"
    assert main(["core", "build", str(path), "--lanes", "8", "--out", str(out2)]) == EXIT_OK
    for f in out.iterdir():
        assert (out2 / f.name).read_bytes() == f.read_bytes(), f.name
    capsys.readouterr()


def test_run_core_rejects_bad_images(tmp_path):
    art, images = _model("d1-dim16-h1-l4")
    with pytest.raises(ValueError, match="images must be"):
        run_core(art, images[0, 0], build_dir=tmp_path)
    with pytest.raises(ValueError, match="labels"):
        run_core(art, images, labels=np.zeros(1), build_dir=tmp_path)
    for bad in ("0", "2,-1", ()):
        with pytest.raises(ValueError, match="init_seeds"):
            run_core(art, images, init_seeds=bad, build_dir=tmp_path)
