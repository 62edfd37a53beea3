"""Differential softmax unit (rtl/softmax_unit.py) vs the golden model, every output of every step.

Golden: :class:`~equispike.model.differential.DifferentialOp` around
:func:`~equispike.model.intops.int_softmax`, and the recorded ``blocks.0.attn`` currents of a
factory model. One file holds the Amaranth-simulator tests (handshake and logic corners), the
cocotb testbench coroutines and their pytest launcher (two Verilator builds: the factory model's
block 0 and the worst-case model, widths from the width analysis).
"""

from __future__ import annotations

import functools

import cocotb
import numpy as np
import pytest

from equispike.model.differential import DifferentialOp
from equispike.model.factory import random_images, random_vit
from equispike.model.intops import SoftmaxParams, int_softmax
from equispike.model.sesa import SpikeProduct
from equispike.model.vit import ViTSNN
from equispike.model.widths import analyze
from equispike.rtl.softmax_unit import SoftmaxUnit
from equispike.sim.amaranth_tb import get_stream, put_stream, run_testbenches
from equispike.sim.norm_support import (
    expected_beats,
    measure_stream,
    row_beats,
    run_norm_unit,
    tracking_deltas,
)
from equispike.sim.scoreboard import Mismatch, Scoreboard

SITE = "blocks.0.attn"


# --------------------------------------------------------------------------------------------------
# stimulus and golden (shared by both simulators)
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def factory_model(worst_case: bool, seed: int = 3):
    art = random_vit(seed, depth=1, dim=32, heads=2, worst_case=worst_case)
    return art, analyze(art)


def make_unit(worst_case: bool, batch: int) -> SoftmaxUnit:
    art, rep = factory_model(worst_case)
    return SoftmaxUnit.from_artifact(art, 0, rows=batch * art.dims.heads * art.dims.tokens,
                                     report=rep)


def golden(params: SoftmaxParams, deltas: np.ndarray) -> np.ndarray:
    op = DifferentialOp(lambda rows: int_softmax(rows, params), deltas.shape[1:])
    return np.stack([op.step(d) for d in deltas])


def model_stimulus(worst_case: bool, batch: int):
    """Score deltas of block 0 (golden SESA on the recorded q, k spikes) and the recorded
    differential-softmax output (the ``blocks.0.attn`` current), both ``(T, rows, N)``."""
    art, _ = factory_model(worst_case)
    d = art.dims
    res = ViTSNN(art).run(random_images(11, art, batch), record={"blocks.0.q", "blocks.0.k",
                                                                 SITE})
    B, H, N, dh = batch, d.heads, d.tokens, d.head_dim

    def heads(x):
        return x.reshape(B, N, H, dh).transpose(0, 2, 1, 3)

    qk = SpikeProduct((B, H, N, dh), (B, H, N, dh), transpose_b=True)
    q, k = res.records["blocks.0.q"]["spikes"], res.records["blocks.0.k"]["spikes"]
    dz = np.stack([qk.step(heads(q[t]), heads(k[t])) for t in range(len(q))])
    T = dz.shape[0]
    return dz.reshape(T, B * H * N, N), res.records[SITE]["current"].reshape(T, B * H * N, N)


def random_stimulus(unit: SoftmaxUnit, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    hi = (1 << (unit.score_width - 1)) - 1
    dmax = (1 << (unit.delta_width - 1)) - 1
    deltas = tracking_deltas(rng, steps, unit.rows, unit.n, -hi, hi, dmax,
                             zero_steps=(3, 4), frozen_rows=(1,))
    return deltas, golden(unit.params, deltas)


# --------------------------------------------------------------------------------------------------
# Amaranth simulator: logic and handshake corners
# --------------------------------------------------------------------------------------------------
def _pysim(unit, deltas, idle=0.0, bp=0.0, seed=0):
    nout = sum(expected_beats(deltas[t], t == 0) for t in range(len(deltas)))
    out: list = []
    run_testbenches(unit, put_stream(unit.i_stream, [int(v) for v in deltas.reshape(-1)],
                                     idle_prob=idle, seed=seed),
                    get_stream(unit.o_stream, nout, out, backpressure_prob=bp, seed=seed + 1),
                    max_cycles=400_000)
    res, k = [], 0
    for t in range(len(deltas)):
        got, skipped, used = row_beats(out[k:], unit.rows, unit.n)
        assert not (skipped & deltas[t].any(axis=1)).any()
        res.append(got)
        k += used
    return np.stack(res)


@pytest.mark.sim
@pytest.mark.parametrize("idle,bp", [(0.0, 0.0), (0.5, 0.5), (0.0, 0.8)])
def test_pysim_corners(idle, bp):
    params = SoftmaxParams(C=700_000)
    unit = SoftmaxUnit(5, 4, params, 11, 9)
    rng = np.random.default_rng(7)
    deltas = tracking_deltas(rng, 14, 4, 5, -1023, 1023, 255, zero_steps=(2, 3), frozen_rows=(0,))
    exp = golden(params, deltas)
    got = _pysim(unit, deltas, idle, bp, seed=3)
    sb = Scoreboard("softmax")
    for t in range(len(deltas)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)


@pytest.mark.sim
def test_pysim_named_corners():
    """Equal rows, ties for the max, 2^x underflow, C = 0, single-element rows."""
    for n, C in ((4, 2_000_000), (4, 0), (1, 12345)):
        params = SoftmaxParams(C=C)
        unit = SoftmaxUnit(n, 3, params, 12)
        X = np.array([[5] * n, [100, 100, -7, 3][:n], [2047, -2048, -2048, -2000][:n]])
        deltas = np.stack([X, np.zeros_like(X), -X // 2])
        exp = golden(params, deltas)
        got = _pysim(unit, deltas)
        assert got.shape == exp.shape and exp.size > 0 and (got == exp).all(), (n, C, got, exp)
    # shift exactly F (t = F·2^G, C = 2^H so t = d): e = LUT[0] >> F = 1, the last nonzero e
    params = SoftmaxParams(C=1 << 16)
    unit = SoftmaxUnit(4, 1, params, 12)
    X = np.array([[0, -960, -961, -1024]])
    exp = golden(params, X[None])
    assert list(exp[0, 0]) == [4095, 0, 0, 0]
    Scoreboard("softmax").compare(0, exp, _pysim(unit, X[None]))
    # the corners really happen: uniform, tie split, underflow to exactly 0 / 2^P
    assert list(int_softmax(np.array([[2047, -2048, -2048, -2000]]), SoftmaxParams(C=2_000_000))
                [0]) == [4096, 0, 0, 0]


@pytest.mark.sim
@pytest.mark.parametrize("n,rows,bp", [(1, 1, 0.0), (3, 1, 0.7), (5, 1, 0.0), (40, 2, 0.9)])
def test_pysim_back_to_back_and_credits(n, rows, bp):
    """Pipeline hazards of the deep datapath: with ``rows = 1`` every step re-reads the X/Y words
    the previous step has just written, and the divisor Σe changes from row to row while the
    previous row's beats are still queued; rows longer than the output queue under heavy
    back-pressure make the credit counter throttle the divider (a lost or extra beat, or a stale
    word, shows up as a mismatch)."""
    from equispike.rtl.softmax_unit import OUT_QUEUE_DEPTH

    params = SoftmaxParams(C=900_000)
    unit = SoftmaxUnit(n, rows, params, 11, 11)
    if n == 40:
        assert n > OUT_QUEUE_DEPTH(unit.div_latency)
    rng = np.random.default_rng(n)
    deltas = tracking_deltas(rng, 10, rows, n, -1023, 1023, 1023, zero_steps=(4,))
    exp = golden(params, deltas)
    got = _pysim(unit, deltas, 0.0, bp, seed=2)
    sb = Scoreboard("softmax")
    for t in range(len(deltas)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)


@pytest.mark.sim
def test_pysim_latency_matches_docstring():
    """Cycles per changed / unchanged row at full rate equal :meth:`SoftmaxUnit.cycles_per_row`."""
    n = 6
    unit = SoftmaxUnit(n, 2, SoftmaxParams(C=500_000), 10)
    # step 0: 2 changed rows; step 1: row 0 changed, row 1 unchanged
    deltas = np.array([[[1, 2, 3, 4, 5, 6]] * 2, [[1] * n, [0] * n]])
    in_c, out_c, beats = measure_stream(unit, [int(v) for v in deltas.reshape(-1)], 3 * n + 1)
    last = [c for c, b in zip(out_c, beats, strict=True) if b["last"]]
    # row r of the input spans in_c[r*n] .. its last output beat
    assert last[2] - in_c[2 * n] + 1 == unit.cycles_per_row(True), (in_c, last)
    assert last[3] - in_c[3 * n] + 1 == unit.cycles_per_row(False), (in_c, last)


def test_parameter_validation():
    p = SoftmaxParams(C=1000)
    with pytest.raises(ValueError, match="n must be in"):
        SoftmaxUnit(0, 1, p, 10)
    with pytest.raises(TypeError, match="SoftmaxParams"):
        SoftmaxUnit(4, 1, {"C": 1}, 10)
    art, rep = factory_model(False)
    with pytest.raises(ValueError, match="narrower than the width analysis"):
        SoftmaxUnit(17, 34, art.softmax[0], rep.bits["blocks.0.scores"] - 1, report=rep, block=0)
    with pytest.raises(ValueError, match="block is required"):
        SoftmaxUnit(17, 34, art.softmax[0], 12, report=rep)


def test_scoreboard_reports_first_mismatch():
    """The comparison can fail and names (step, site, index, expected, got)."""
    sb = Scoreboard(SITE)
    exp = np.array([[1, 2], [3, 4]])
    bad = exp.copy()
    bad[1, 0] = 9
    with pytest.raises(Mismatch, match=r"step 5, site 'blocks.0.attn', index \(1, 0\): "
                                       r"expected 3, got 9"):
        sb.compare(5, exp, bad)


def test_model_stimulus_is_consistent():
    """Golden DifferentialOp on the SESA scores reproduces the recorded attn current."""
    art, _ = factory_model(False)
    dz, cur = model_stimulus(False, 1)
    assert (golden(art.softmax[0], dz) == cur).all()


# --------------------------------------------------------------------------------------------------
# cocotb testbenches (Verilator)
# --------------------------------------------------------------------------------------------------
@cocotb.test()
@cocotb.parametrize(stim=["model", "random"], flow=[(0.0, 0.0), (0.3, 0.4)])
async def softmax_stream(dut, stim, flow):
    """Every output beat of every step vs golden; model = recorded attn, random = corners."""
    from equispike.sim import tb_config

    cfg = tb_config("worst_case", "batch", "random_steps", "seed")
    unit = make_unit(cfg["worst_case"], cfg["batch"])
    if stim == "model":
        deltas, exp = model_stimulus(cfg["worst_case"], cfg["batch"])
    else:
        deltas, exp = random_stimulus(unit, cfg["random_steps"], seed=cfg["seed"])
    n, cycles = await run_norm_unit(dut, unit, deltas, exp, site=SITE, idle_prob=flow[0],
                                    backpressure_prob=flow[1], seed=cfg["seed"], log=dut._log)
    rows = deltas.shape[0] * deltas.shape[1]
    dut._log.info("softmax %s flow=%s: %d rows, %d elements, %d cycles", stim, flow, rows, n,
                  cycles)


@pytest.mark.sim
@pytest.mark.parametrize("worst_case", [False, True], ids=["factory", "worst"])
def test_softmax_verilator(request, worst_case):
    from equispike.sim import build_dir_for, run_cocotb

    batch = 2
    unit = make_unit(worst_case, batch)
    run_cocotb(unit, test_module="equispike.tests.test_softmax_unit",
               build_dir=build_dir_for(request.node.nodeid),
               config={"worst_case": worst_case, "batch": batch, "seed": 5,
                       "random_steps": 16})


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "lut_minus_one"])
def test_pysim_mutation(mutant, monkeypatch):
    """Mutation: the unit's 2^x table one below the model's
    (:func:`~equispike.model.intops.exp2_lut`) in every entry: the outputs must differ."""
    from equispike.model.intops import exp2_lut
    from equispike.sim.mutation import must_fail

    if mutant:
        def floor_lut(G, F):
            lut = exp2_lut(G, F).copy()
            lut -= 1
            return lut
        monkeypatch.setattr("equispike.rtl.softmax_unit.exp2_lut", floor_lut)
    params = SoftmaxParams(C=700_000)
    unit = SoftmaxUnit(5, 4, params, 11, 9)
    deltas = tracking_deltas(np.random.default_rng(7), 14, 4, 5, -1023, 1023, 255,
                             zero_steps=(2, 3), frozen_rows=(0,))
    exp = golden(params, deltas)
    with must_fail(mutant):
        sb = Scoreboard("softmax")
        sb.compare(0, exp, _pysim(unit, deltas, 0.3, 0.3, seed=3))
        sb.require(exp.size)
