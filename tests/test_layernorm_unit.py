"""Differential LayerNorm unit (rtl/layernorm_unit.py) vs the golden model, every output of every
step.

Golden: :class:`~equispike.model.differential.DifferentialOp` around
:func:`~equispike.model.intops.int_layernorm`, and the recorded ``blocks.0.norm1`` currents (the
differential LN1 output) of a factory model. One file holds the Amaranth-simulator tests, the cocotb
testbench coroutines and the pytest launcher (three Verilator builds: factory LN1, worst-case LN1, and
factory LN1 with ``dsp_target="ecp5"``: its seven ``MULT18X18D`` instances, multi-limb ``S1²`` and
``|c|·|Γ|``, simulated with our model ``sim/models/MULT18X18D.v``).
"""

from __future__ import annotations

import functools

import cocotb
import numpy as np
import pytest

from equispike.model.differential import DifferentialOp
from equispike.model.factory import random_images, random_vit
from equispike.model.intops import LayerNormParams, int_layernorm
from equispike.model.vit import ViTSNN
from equispike.model.widths import analyze
from equispike.rtl.layernorm_unit import LayerNormUnit
from equispike.sim.amaranth_tb import get_stream, put_stream, run_testbenches
from equispike.sim.norm_support import (
    expected_beats,
    measure_stream,
    row_beats,
    run_norm_unit,
    tracking_deltas,
)
from equispike.sim.scoreboard import Scoreboard

SITE = "blocks.0.norm1"
LN = "blocks.0.ln1"


@functools.lru_cache(maxsize=4)
def factory_model(worst_case: bool, seed: int = 3):
    art = random_vit(seed, depth=1, dim=32, heads=2, worst_case=worst_case)
    return art, analyze(art)


def make_unit(worst_case: bool, batch: int, dsp_target: str | None = None) -> LayerNormUnit:
    art, rep = factory_model(worst_case)
    return LayerNormUnit.from_artifact(art, LN, rows=batch * art.dims.tokens, report=rep,
                                       dsp_target=dsp_target)


def golden(unit: LayerNormUnit, deltas: np.ndarray) -> np.ndarray:
    g, b = np.array(unit.gamma), np.array(unit.beta)
    op = DifferentialOp(lambda rows: int_layernorm(rows, g, b, unit.params), deltas.shape[1:])
    return np.stack([op.step(d) for d in deltas])


def model_stimulus(worst_case: bool, batch: int):
    """Residual deltas entering LN1 of block 0 (initial residual at t = 0, then the patch
    embedding's spikes × M) and the recorded LN1 output current, both ``(T, rows, D)``."""
    art, _ = factory_model(worst_case)
    d, T = art.dims, art.tensors
    res = ViTSNN(art).run(random_images(13, art, batch), record={"patch_embed", SITE})
    spikes = res.records["patch_embed"]["spikes"]
    steps = len(spikes)
    du = np.zeros((steps, batch, d.tokens, d.dim), dtype=np.int64)
    du[:, :, 1:, :] = spikes.astype(np.int64) * art.sites["patch_embed"].M
    du[0] += T["pos"].astype(np.int64)
    du[0, :, 0, :] += T["cls"].astype(np.int64)
    cur = res.records[SITE]["current"]
    return du.reshape(steps, -1, d.dim), cur.reshape(steps, -1, d.dim)


def random_stimulus(unit: LayerNormUnit, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    hi = (1 << (unit.x_width - 1)) - 1
    dmax = (1 << (unit.delta_width - 1)) - 1
    deltas = tracking_deltas(rng, steps, unit.rows, unit.dim, -hi, hi, dmax,
                             zero_steps=(3, 4), frozen_rows=(1,))
    return deltas, golden(unit, deltas)


# --------------------------------------------------------------------------------------------------
# Amaranth simulator
# --------------------------------------------------------------------------------------------------
def small_unit(E=3, x_width=11, dim=6, rows=4, neg_gamma=True, K=16, P=10):
    rng = np.random.default_rng(1)
    gamma = (1 << K) + rng.integers(-(1 << K) // 8, (1 << K) // 8, dim)
    if neg_gamma:
        gamma[::3] *= -1
    beta = rng.integers(-128, 128, dim)
    return LayerNormUnit(dim, rows, LayerNormParams(E=E, K=K, P=P), gamma, beta, x_width,
                         x_width + 1)


def _pysim(unit, deltas, idle=0.0, bp=0.0, seed=0):
    nout = sum(expected_beats(deltas[t], t == 0) for t in range(len(deltas)))
    out: list = []
    run_testbenches(unit, put_stream(unit.i_stream, [int(v) for v in deltas.reshape(-1)],
                                     idle_prob=idle, seed=seed),
                    get_stream(unit.o_stream, nout, out, backpressure_prob=bp, seed=seed + 1),
                    max_cycles=400_000)
    res, k = [], 0
    for t in range(len(deltas)):
        got, skipped, used = row_beats(out[k:], unit.rows, unit.dim)
        assert not (skipped & deltas[t].any(axis=1)).any()
        res.append(got)
        k += used
    return np.stack(res)


@pytest.mark.sim
@pytest.mark.parametrize("idle,bp,K", [(0.0, 0.0, 16), (0.5, 0.5, 16), (0.0, 0.8, 16),
                                       (0.2, 0.2, 10)])
def test_pysim_corners(idle, bp, K):
    """Random tracking rows with equal rows (σ from E only), single outliers, extremes.
    ``K = P`` (no final shift) makes every floor-division rounding visible in the output."""
    unit = small_unit(K=K)
    rng = np.random.default_rng(9)
    deltas = tracking_deltas(rng, 12, unit.rows, unit.dim, -1023, 1023, 2047,
                             zero_steps=(2, 3), frozen_rows=(0,))
    exp = golden(unit, deltas)
    got = _pysim(unit, deltas, idle, bp, seed=4)
    sb = Scoreboard("layernorm")
    for t in range(len(deltas)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)


@pytest.mark.sim
def test_pysim_named_corners():
    """E = 1 with the largest |c|/σ (one outlier), equal rows, negative products (floor)."""
    unit = small_unit(E=1, dim=5, rows=3)
    X = np.array([[7] * 5, [0, 0, 0, 0, 1023], [-1024, 1023, -1024, 1023, -1024]])
    deltas = np.stack([X, np.zeros_like(X), -X, np.zeros_like(X), X // 3])
    exp = golden(unit, deltas)
    got = _pysim(unit, deltas)
    sb = Scoreboard("layernorm")
    sb.compare(0, exp, got)
    sb.require(exp.size)


@pytest.mark.sim
@pytest.mark.parametrize("dim,rows,bp", [(1, 1, 0.0), (4, 1, 0.7), (6, 1, 0.0), (70, 2, 0.9)])
def test_pysim_back_to_back_and_credits(dim, rows, bp):
    """Pipeline hazards of the deep datapath: with ``rows = 1`` every step re-reads the X/Y words
    the previous step has just written, S1/S2 restart and σ changes while the previous row's
    beats are still queued; rows longer than the output queue under heavy back-pressure make the
    credit counter throttle the divider."""
    from equispike.rtl.layernorm_unit import OUT_QUEUE_DEPTH

    unit = small_unit(dim=dim, rows=rows)
    if dim == 70:
        assert dim > OUT_QUEUE_DEPTH(unit.norm_latency)
    rng = np.random.default_rng(dim)
    deltas = tracking_deltas(rng, 10, rows, dim, -1023, 1023, 2047, zero_steps=(4,))
    exp = golden(unit, deltas)
    got = _pysim(unit, deltas, 0.0, bp, seed=5)
    sb = Scoreboard("layernorm")
    for t in range(len(deltas)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)


@pytest.mark.sim
def test_pysim_latency_matches_docstring():
    unit = small_unit(rows=2)
    n = unit.dim
    deltas = np.array([[[1, 2, 3, 4, 5, 6]] * 2, [[1] * n, [0] * n]])
    in_c, out_c, beats = measure_stream(unit, [int(v) for v in deltas.reshape(-1)], 3 * n + 1)
    last = [c for c, b in zip(out_c, beats, strict=True) if b["last"]]
    assert last[2] - in_c[2 * n] + 1 == unit.cycles_per_row(True), (in_c, last)
    assert last[3] - in_c[3 * n] + 1 == unit.cycles_per_row(False), (in_c, last)


def test_parameter_validation():
    p = LayerNormParams(E=1)
    with pytest.raises(ValueError, match="gamma and beta need 4 entries"):
        LayerNormUnit(4, 1, p, [1, 2, 3], [0] * 4, 10)
    with pytest.raises(TypeError, match="LayerNormParams"):
        LayerNormUnit(4, 1, {"E": 1}, [1] * 4, [0] * 4, 10)
    with pytest.raises(ValueError, match="dsp_target must be one of None, 'generic', 'ecp5'"):
        LayerNormUnit(4, 1, p, [1] * 4, [0] * 4, 10, dsp_target="ice40")
    art, rep = factory_model(False)
    T = art.tensors
    with pytest.raises(ValueError, match="narrower than the width analysis"):
        LayerNormUnit(32, 17, art.ln_params(LN), T[LN + ".gamma"], T[LN + ".beta"],
                      rep.bits["residual"] - 1, report=rep, name=LN)


def test_model_stimulus_is_consistent():
    unit = make_unit(False, 1)
    du, cur = model_stimulus(False, 1)
    assert (golden(unit, du) == cur).all()


# --------------------------------------------------------------------------------------------------
# cocotb testbenches (Verilator)
# --------------------------------------------------------------------------------------------------
@cocotb.test()
@cocotb.parametrize(stim=["model", "random"], flow=[(0.0, 0.0), (0.3, 0.4)])
async def layernorm_stream(dut, stim, flow):
    """Every output beat of every step vs golden; model = recorded norm1, random = corners."""
    from equispike.sim import tb_config

    cfg = tb_config("worst_case", "batch", "random_steps", "seed")
    unit = make_unit(cfg["worst_case"], cfg["batch"], cfg.get("dsp_target"))
    if stim == "model":
        deltas, exp = model_stimulus(cfg["worst_case"], cfg["batch"])
    else:
        deltas, exp = random_stimulus(unit, cfg["random_steps"], seed=cfg["seed"])
    n, cycles = await run_norm_unit(dut, unit, deltas, exp, site=SITE, idle_prob=flow[0],
                                    backpressure_prob=flow[1], seed=cfg["seed"], log=dut._log)
    rows = deltas.shape[0] * deltas.shape[1]
    dut._log.info("layernorm %s flow=%s: %d rows, %d elements, %d cycles", stim, flow, rows, n,
                  cycles)


@pytest.mark.sim
@pytest.mark.parametrize("worst_case,dsp_target", [(False, None), (True, None), (False, "ecp5")],
                         ids=["factory", "worst", "factory-ecp5dsp"])
def test_layernorm_verilator(request, worst_case, dsp_target):
    """``dsp_target="ecp5"``: the unit's multipliers are ``MULT18X18D`` instances (our model);
    the state RAMs stay Amaranth memories (no ``DP16KD`` model)."""
    from equispike.rtl._dsp import ECP5_SIM_BUILD_ARGS
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import MODELS_DIR

    batch = 3
    unit = make_unit(worst_case, batch, dsp_target)
    ecp5 = dsp_target == "ecp5"
    run_cocotb(unit, test_module="equispike.tests.test_layernorm_unit",
               build_dir=build_dir_for(request.node.nodeid),
               config={"worst_case": worst_case, "batch": batch, "seed": 6,
                       "random_steps": 20, "dsp_target": dsp_target},
               extra_sources=[MODELS_DIR / "MULT18X18D.v"] if ecp5 else (),
               extra_build_args=ECP5_SIM_BUILD_ARGS if ecp5 else ())


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "product_lsb"])
def test_pysim_mutation(mutant, monkeypatch):
    """Mutation: the unit's registered products (``x²``, ``S1²``, ``|c|·|Γ|``) with their lowest
    bit flipped: the outputs must differ."""
    from equispike.rtl._dsp import registered_mul
    from equispike.sim.mutation import must_fail

    if mutant:
        monkeypatch.setattr("equispike.rtl.layernorm_unit.registered_mul",
                            lambda *a, **k: registered_mul(*a, **k) ^ 1)
    unit = small_unit(K=10)
    deltas = tracking_deltas(np.random.default_rng(9), 8, unit.rows, unit.dim, -1023, 1023, 2047,
                             zero_steps=(2,), frozen_rows=(0,))
    exp = golden(unit, deltas)
    with must_fail(mutant):
        sb = Scoreboard("layernorm")
        sb.compare(0, exp, _pysim(unit, deltas, 0.2, 0.2, seed=4))
        sb.require(exp.size)
