"""Spike-addition engine (rtl/engine.py) against the AW linear of the golden model, every step.

One file holds the cocotb testbench coroutines (run inside Verilator) and the pytest launchers.
Stimulus shapes (idle cycles, back-pressure) vary inside cocotb with ``cocotb.parametrize``;
handshake corner cases run on Amaranth's simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from equispike.model.linear import aw_step
from equispike.rtl.engine import (
    RO_LAT,
    SpikeAdditionEngine,
    ZeroVectorExpander,
    required_acc_width,
)
from equispike.sim.scoreboard import Scoreboard, zero_padded

try:
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None

MODULE = "equispike.tests.test_engine"


# ---------------------------------------------------------------- stimulus & golden
def golden_currents(spikes, W, bias):
    """AW linear (``model.linear.aw_step``) of ternary spikes (T, V, n_in) for each step; ``W`` is
    the engine's ``(n_in, n_out)`` matrix (the artifact's weight transposed)."""
    return np.stack([aw_step(spikes[t], np.asarray(W).T, bias, t) for t in range(spikes.shape[0])])


def spikes_to_events(spikes, rng=None):
    """Event beats (dicts) of ternary spikes (T, V, n_in), an ``eos`` marker after each step.

    Events of a step come in random order when ``rng`` is given (the sum does not depend on it).
    """
    beats = []
    for t in range(spikes.shape[0]):
        v, i = np.nonzero(spikes[t])
        order = np.arange(len(v)) if rng is None else rng.permutation(len(v))
        for k in order:
            beats.append({"index": int(i[k]), "vector": int(v[k]),
                          "neg": int(spikes[t, v[k], i[k]] < 0), "eos": 0})
        beats.append({"eos": 1})
    return beats


def random_case(seed, n_in, n_out, n_vectors, steps, density):
    rng = np.random.default_rng(seed)
    W = rng.integers(-128, 128, size=(n_in, n_out))
    bias = rng.integers(-2000, 2001, size=n_out)
    sp = rng.choice([-1, 0, 1], size=(steps, n_vectors, n_in),
                    p=[density / 2, 1 - density, density / 2]).astype(np.int8)
    sp[rng.integers(0, steps)] = 0            # at least one empty step
    return W, bias, sp


def worst_case(n_in, n_out, n_vectors, steps, sign=1):
    """Max-magnitude weights (all +127 or all -127, the sign of ``sign``) and every input spiking
    with the same sign every step."""
    W = np.full((n_in, n_out), 127 * sign)
    bias = np.full(n_out, 0)
    sp = np.full((steps, n_vectors, n_in), sign, dtype=np.int8)
    return W, bias, sp


def touched_vectors(spikes, bias):
    """(T, V) bool: vectors the compact readout sends in full (an event, or the bias at t=0)."""
    tv = np.any(spikes != 0, axis=2)
    tv[0] |= bool(np.any(np.asarray(bias) != 0))
    return tv


def expected_beats(spikes, bias, chunks, compact=True):
    """Readout beats of a run: ``T·V·chunks`` dense; touched·chunks + untouched compact."""
    T, V = spikes.shape[:2]
    if not compact:
        return T * V * chunks
    tv = touched_vectors(spikes, bias)
    return int(tv.sum()) * chunks + int((~tv).sum())


def expand(beats_out, chunks):
    """Dense beats (lists of lanes) of a readout: compact beats (dicts) are expanded, a zero
    beat into ``chunks`` zero beats (its lanes must be 0); dense beats pass unchanged."""
    out = []
    for b in beats_out:
        if not isinstance(b, dict):
            out.append(list(b))
        elif b["zero"]:
            assert not any(b["lanes"]), b
            out.extend([[0] * len(b["lanes"])] * chunks)
        else:
            out.append(list(b["lanes"]))
    return out


def collect(beats_out, T, V, chunks):
    """Currents (T, V, chunks · lanes) of a readout, the padding lanes past ``n_out`` included
    (compared against :func:`padded`: they must be 0)."""
    beats_out = expand(beats_out, chunks)
    lanes = len(beats_out[0])
    return np.array(beats_out, dtype=np.int64).reshape(T, V, chunks * lanes)


def padded(exp, eng):
    """Golden currents with the readout's padding lanes (0) appended."""
    return zero_padded(exp, eng.chunks * eng.lanes)


# ---------------------------------------------------------------- cocotb testbench
_TOTALS = {"currents": 0, "events": 0}

if cocotb is not None:
    from cocotb.triggers import ClockCycles, RisingEdge

    from equispike.sim.clock import start_clock
    from equispike.sim.streams import as_int

    async def _reset(dut):
        start_clock(dut.clk)
        dut.rst.value = 1
        dut.clear.value = 0
        dut.i_stream__valid.value = 0
        dut.o_stream__ready.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        while as_int(dut.busy.value):
            await RisingEdge(dut.clk)

    def _engine_from_cfg(cfg):
        return SpikeAdditionEngine(np.asarray(cfg["W"]), np.asarray(cfg["bias"]),
                                   lanes=cfg["lanes"], acc_width=cfg["acc_width"],
                                   n_vectors=cfg["n_vectors"],
                                   compact_zero_vectors=cfg.get("compact", True))

    async def _run(dut, cfg, spikes, idle, bp, seed):
        from equispike.sim import StreamDriver, StreamMonitor

        eng = _engine_from_cfg(cfg)     # layouts only (no elaboration)
        rng = np.random.default_rng(seed)
        n_exp = expected_beats(spikes, eng.bias, eng.chunks, eng.compact)
        drv = StreamDriver(dut, dut.clk, "i_stream", eng.event_layout, idle_prob=idle, seed=seed)
        mon = StreamMonitor(dut, dut.clk, "o_stream", eng.readout_layout,
                            backpressure_prob=bp, seed=seed + 1, expected=n_exp)
        events = spikes_to_events(spikes, rng)
        for b in events:
            drv.send(b)
        T, V = spikes.shape[:2]
        start = cocotb.utils.get_sim_time("ns")
        await mon.wait_for(n_exp)
        cycles = int((cocotb.utils.get_sim_time("ns") - start) // 10)
        await mon.finish()                     # contract, and no beat beyond the expected count
        assert len(mon.items) == n_exp, (len(mon.items), n_exp)
        drv.stop()
        got = collect(list(mon.items), T, V, eng.chunks)
        return got, cycles, len(events) - T

    @cocotb.test()
    @cocotb.parametrize(idle=[0.0, 0.3], backpressure=[0.0, 0.6])
    async def engine_random(dut, idle, backpressure):
        """Random ternary spikes (random event order, an empty step); every current compared."""
        from equispike.sim import tb_config

        cfg = tb_config()
        await _reset(dut)
        W, bias = np.asarray(cfg["W"]), np.asarray(cfg["bias"])
        seed = cfg["seed"] + int(idle * 10) * 7 + int(backpressure * 10)
        _, _, sp = random_case(seed, W.shape[0], W.shape[1], cfg["n_vectors"], cfg["steps"],
                               cfg["density"])
        sb = Scoreboard("engine")
        got, cycles, n_ev = await _run(dut, cfg, sp, idle, backpressure, seed)
        exp = padded(golden_currents(sp, W, bias), _engine_from_cfg(cfg))
        for t in range(sp.shape[0]):
            sb.compare(t, exp[t], got[t])
        sb.require(exp.size)
        _TOTALS["currents"] += sb.compared
        _TOTALS["events"] += n_ev
        dut._log.info(f"{sb.summary()}; {n_ev} events in {cycles} cycles")

    @cocotb.test()
    async def engine_inference_clear(dut):
        """Two inferences with ``clear`` between: the bias comes back on the first step only."""
        from equispike.sim import tb_config

        cfg = tb_config()
        await _reset(dut)
        W, bias = np.asarray(cfg["W"]), np.asarray(cfg["bias"])
        sb = Scoreboard("engine")
        for k in range(2):
            _, _, sp = random_case(cfg["seed"] + 50 + k, W.shape[0], W.shape[1],
                                   cfg["n_vectors"], 3, cfg["density"])
            got, _, n_ev = await _run(dut, cfg, sp, 0.2, 0.2, k)
            exp = padded(golden_currents(sp, W, bias), _engine_from_cfg(cfg))
            for t in range(sp.shape[0]):
                sb.compare(t, exp[t], got[t], site=f"inference{k}")
            sb.require((k + 1) * exp.size)
            dut.clear.value = 1
            await RisingEdge(dut.clk)
            dut.clear.value = 0
            await RisingEdge(dut.clk)
            while as_int(dut.busy.value):
                await RisingEdge(dut.clk)
            _TOTALS["events"] += n_ev
        _TOTALS["currents"] += sb.compared
        dut._log.info(sb.summary())

    @cocotb.test()
    async def engine_worst_case(dut):
        """±127 weights of one sign, every input spiking with that sign every step."""
        from equispike.sim import tb_config

        cfg = tb_config("worst_sign")
        await _reset(dut)
        W, bias = np.asarray(cfg["W"]), np.asarray(cfg["bias"])
        sp = np.full((3, cfg["n_vectors"], W.shape[0]), cfg["worst_sign"], dtype=np.int8)
        got, _, n_ev = await _run(dut, cfg, sp, 0.0, 0.3, 3)
        sb = Scoreboard("worst-case")
        exp = padded(golden_currents(sp, W, bias), _engine_from_cfg(cfg))
        for t in range(sp.shape[0]):
            sb.compare(t, exp[t], got[t])
        sb.require(exp.size)
        _TOTALS["currents"] += sb.compared
        _TOTALS["events"] += n_ev
        dut._log.info(sb.summary() + f"; max |current| {int(np.abs(exp).max())}")

    @cocotb.test()
    async def engine_real_layer(dut):
        """qkv linear of a random ViT: norm1 spikes in, q/k/v currents of every step compared."""
        from equispike.sim import tb_config

        cfg = tb_config("real", "site")
        await _reset(dut)
        d = np.load(cfg["real"])
        sp, cur = d["spikes"], d["current"]         # (T, tokens, n_in), (T, tokens, n_out)
        W = np.asarray(cfg["W"])
        got, cycles, n_ev = await _run(dut, cfg, sp, 0.0, 0.0, 9)
        sb = Scoreboard(cfg["site"])
        cur = padded(cur, _engine_from_cfg(cfg))
        for t in range(sp.shape[0]):
            sb.compare(t, cur[t], got[t])
        sb.require(cur.size)
        _TOTALS["currents"] += sb.compared
        _TOTALS["events"] += n_ev
        ideal = n_ev * -(-W.shape[1] // cfg["lanes"])
        dut._log.info(f"{sb.summary()}; {n_ev} events, {cycles} cycles, ideal {ideal}, "
                      f"utilization {ideal / cycles:.1%}")

    @cocotb.test()
    async def engine_totals(dut):
        from equispike.sim import tb_config

        cfg = tb_config("min_events", "min_currents")
        dut._log.info(f"totals: {_TOTALS}")
        assert _TOTALS["events"] >= cfg["min_events"] > 0, (
            f"{_TOTALS['events']} events compared, at least {cfg['min_events']} required")
        assert _TOTALS["currents"] >= cfg["min_currents"] > 0, (
            f"{_TOTALS['currents']} currents compared, at least {cfg['min_currents']} required")


# ---------------------------------------------------------------- pytest launchers (Verilator)
CONFIGS = {
    # 4 lanes, 10 outputs -> 3 chunks (ragged), 3 vectors, signed bias
    "p4_o10_v3": dict(lanes=4, n_in=12, n_out=10, n_vectors=3, steps=16, density=0.5),
    # 8 lanes, one chunk (read-modify-write of one word every cycle), 1 vector
    "p8_o8_v1": dict(lanes=8, n_in=40, n_out=8, n_vectors=1, steps=24, density=0.6),
    # sparse spikes over 5 vectors: many untouched vectors (compact zero beats) each step
    "p4_o12_v5_sparse": dict(lanes=4, n_in=12, n_out=12, n_vectors=5, steps=40, density=0.03),
    # the ECP5 netlist: RAMs as DP16KD (output registers, per-column address registers,
    # initialised weight ROM and bias words; a RAM without contents would be a PDPW16KD) under
    # our models (ECP5_RAM_MODELS), the accumulate adders as CCU2C chains under Yosys' model;
    # 3 chunks: every back-to-back event of the vector forwards
    "p4_o10_v3_ecp5": dict(lanes=4, n_in=12, n_out=10, n_vectors=3, steps=16, density=0.5,
                           target="ecp5"),
    # the dense (old) readout protocol
    "p4_o10_v3_dense": dict(lanes=4, n_in=12, n_out=10, n_vectors=3, steps=16, density=0.5,
                            compact=False),
}


@pytest.mark.sim
@pytest.mark.parametrize("name", list(CONFIGS))
def test_engine_verilator(name, request):
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import ECP5_RAM_MODELS, MODELS_DIR, ecp5_carry_build_args

    c = CONFIGS[name]
    seed = sum(map(ord, name))
    W, bias, _ = random_case(seed, c["n_in"], c["n_out"], 1, 1, 0.5)
    cfg = dict(c, seed=seed, W=W.tolist(), bias=bias.tolist(),
               acc_width=required_acc_width(W, bias), min_events=100 if "sparse" in name else 1000,
               min_currents=(4 * c["steps"] + 2 * 3) * c["n_vectors"] * c["n_out"])
    eng = SpikeAdditionEngine(W, bias, lanes=c["lanes"], acc_width=cfg["acc_width"],
                              n_vectors=c["n_vectors"], compact_zero_vectors=c.get("compact", True),
                              ram_target=c.get("target"), carry_target=c.get("target"))
    ecp5 = c.get("target") == "ecp5"
    run_cocotb(eng, test_module=MODULE, build_dir=build_dir_for(request.node.nodeid),
               config=cfg, test_filter="engine_random|engine_inference_clear|engine_totals",
               extra_sources=[*ECP5_RAM_MODELS, MODELS_DIR / "ecp5_cells.v"] if ecp5 else [],
               extra_build_args=ecp5_carry_build_args() if ecp5 else ())


def real_layer_case(seed=3, batch=2):
    """qkv linear of ``random_vit(seed)`` on ``batch`` images (each token of each image is one
    engine vector): W as (n_in, n_out), bias, spikes (T, V, n_in), currents (T, V, n_out), width.
    """
    from equispike.model.factory import random_images, random_vit
    from equispike.model.vit import ViTSNN
    from equispike.model.widths import analyze

    art = random_vit(seed)
    sites = ["blocks.0.norm1", "blocks.0.q", "blocks.0.k", "blocks.0.v"]
    res = ViTSNN(art).run(random_images(seed, art, batch), t_max=64, record=set(sites))
    sp = res.records[sites[0]]["spikes"]                                 # (T, B, tokens, dim)
    sp = sp.reshape(sp.shape[0], -1, sp.shape[-1])
    cur = np.concatenate([res.records[s]["current"] for s in sites[1:]], axis=-1)
    cur = cur.reshape(cur.shape[0], -1, cur.shape[-1])
    W = np.asarray(art.tensors["blocks.0.qkv.weight"]).T                 # (in, out)
    bias = np.asarray(art.tensors["blocks.0.qkv.bias"])
    rep = analyze(art)
    width = max(rep.bits[f"{s}.current"] for s in sites[1:])
    return W, bias, sp, cur, width


@pytest.mark.sim
def test_engine_real_layer_and_worst_case(request):
    """One build: the real qkv layer (widths from the width analysis), then its worst case."""
    from equispike.sim import build_dir_for, run_cocotb

    W, bias, sp, cur, width = real_layer_case()
    P = 8
    bdir = build_dir_for(request.node.nodeid)
    np.savez(bdir / "real.npz", spikes=sp, current=cur)
    # worst case on the same hardware: all weights +127 on one build would change the ROM, so
    # the worst case gets its own engine below; here the analysed width must hold the real layer
    cfg = dict(lanes=P, n_vectors=sp.shape[1], W=W.tolist(), bias=bias.tolist(),
               acc_width=width, real=str(bdir / "real.npz"), site="blocks.0.qkv",
               min_events=1000, min_currents=cur.size, seed=1)
    eng = SpikeAdditionEngine(W, bias, lanes=P, acc_width=width, n_vectors=sp.shape[1])
    run_cocotb(eng, test_module=MODULE, build_dir=bdir, config=cfg,
               test_filter="engine_real_layer|engine_totals")


@pytest.mark.sim
def test_engine_worst_case(request):
    """Worst case at the width the analysis gives for it (``required_acc_width``)."""
    from equispike.sim import build_dir_for, run_cocotb

    n_in, n_out, V = 32, 12, 2
    W, bias, _ = worst_case(n_in, n_out, V, 1, sign=-1)
    width = required_acc_width(W, bias)
    assert width == (n_in * 127).bit_length() + 1
    cfg = dict(lanes=4, n_vectors=V, W=W.tolist(), bias=bias.tolist(), acc_width=width,
               worst_sign=-1, min_events=3 * V * n_in, min_currents=3 * V * n_out, seed=2)
    eng = SpikeAdditionEngine(W, bias, lanes=4, acc_width=width, n_vectors=V)
    run_cocotb(eng, test_module=MODULE, build_dir=build_dir_for(request.node.nodeid),
               config=cfg, test_filter="engine_worst_case|engine_totals")


@pytest.mark.sim
def test_engine_lint(request):
    from equispike.sim import build_dir_for, lint_verilog, write_verilog

    W, bias, _ = random_case(1, 12, 10, 1, 1, 0.5)
    eng = SpikeAdditionEngine(W, bias, lanes=4, acc_width=required_acc_width(W, bias),
                              n_vectors=3)
    path = write_verilog(eng, build_dir_for(request.node.nodeid))
    rc, out = lint_verilog(path)     # waivers: sim.build.LINT_WAIVERS
    assert rc == 0 and not out, out


# ---------------------------------------------------------------- fast Amaranth-simulator tests
def amaranth_engine(W, bias, spikes, *, lanes, n_vectors, idle=0.0, bp=0.0, seed=0,
                    abort_beats=None, width=None, ordered=False, compact=True, raw=None,
                    sign_in_rom=None, flag_ram=None):
    """Currents (T, V, n_out) of the engine on Amaranth's simulator, and the cycle count.

    ``compact`` selects the readout protocol (compact beats are expanded before comparing);
    the raw output beats are appended to the list ``raw`` when given.

    With ``abort_beats=k`` an inference is first started with ``k`` beats and aborted by
    ``clear`` (outputs partly consumed, partly in flight). ``ordered`` sends the events of a
    step vector-major (same vector back to back) instead of in random order."""
    from equispike.sim.amaranth_tb import run_testbenches, stream_testbench

    eng = SpikeAdditionEngine(W, bias, lanes=lanes, n_vectors=n_vectors,
                              acc_width=width or required_acc_width(W, bias),
                              compact_zero_vectors=compact, sign_in_rom=sign_in_rom,
                              flag_ram=flag_ram)
    eng.check_invariants = True
    T = spikes.shape[0]
    beats = spikes_to_events(spikes, None if ordered else np.random.default_rng(seed))
    out = []
    cycles = []

    async def tb(ctx):
        if abort_beats is not None:
            pre = stream_testbench([(eng.i_stream, beats[:abort_beats])], [], seed=seed + 1,
                                   max_cycles=2000,
                                   on_cycle=lambda ctx, c: ctx.set(eng.o_stream.ready, c % 2))
            await pre(ctx)
            ctx.set(eng.clear, 1)
            await ctx.tick()
            ctx.set(eng.clear, 0)
        await ctx.tick()
        while ctx.get(eng.busy):
            await ctx.tick()
        n0 = 0

        def count(ctx, c):
            nonlocal n0
            n0 = c
        main2 = stream_testbench([(eng.i_stream, beats)],
                                 [(eng.o_stream, expected_beats(spikes, bias, eng.chunks,
                                                                compact), out)],
                                 idle_prob=idle, backpressure_prob=bp, seed=seed,
                                 on_cycle=count)
        await main2(ctx)                             # (no beat beyond the expected count)
        cycles.append(n0 + 1)

    run_testbenches(eng, tb, max_cycles=200_000)
    if raw is not None:
        raw.extend(out)
    return collect(out, T, n_vectors, eng.chunks), cycles[0]


def _check(W, bias, sp, got):
    """Every current of every step, and the padding lanes of ``got`` (past ``n_out``) are 0."""
    exp = zero_padded(golden_currents(sp, W, bias), got.shape[-1])
    sb = Scoreboard("engine-fast")
    for t in range(sp.shape[0]):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)
    return sb


@pytest.fixture(params=["distributed", "block"])
def flag_ram(request, monkeypatch):
    """The "touched" flags of small banks are in distributed RAM: force block RAM too."""
    if request.param == "block":
        monkeypatch.setattr("equispike.rtl.engine.LUTRAM_FLAG_WORDS", 0)
    return request.param


@pytest.mark.sim
@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("idle,bp", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.8), (0.4, 0.6)])
def test_engine_fast_stalls(idle, bp, compact, flag_ram):
    W, bias, sp = random_case(11, 7, 10, 2, 6, 0.4)
    got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, idle=idle, bp=bp, seed=4,
                             compact=compact)
    _check(W, bias, sp, got)


@pytest.mark.sim
@pytest.mark.parametrize("flag_ram", ["distributed", "block"])
def test_engine_fast_flag_ram_chosen(flag_ram):
    """``flag_ram`` chosen explicitly (the iCE40 synthesis form is "block" at any size): the
    currents stay exact under back-pressure with either flag memory on small banks."""
    W, bias, sp = random_case(12, 7, 10, 2, 6, 0.4)
    got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, bp=0.5, seed=7, flag_ram=flag_ram)
    _check(W, bias, sp, got)
    eng = SpikeAdditionEngine(W, bias, lanes=4, n_vectors=2, acc_width=required_acc_width(W, bias),
                              flag_ram=flag_ram)
    assert eng.readout_stages == {"distributed": RO_LAT, "block": RO_LAT + 1}[flag_ram]


@pytest.mark.sim
@pytest.mark.parametrize("bias_zero", [False, True])
@pytest.mark.parametrize("bp", [0.0, 0.5])
def test_engine_fast_zero_beats(bp, bias_zero, flag_ram):
    """Compact readout protocol, beat by beat: a vector without events is ONE beat with
    ``zero = 1`` and lanes 0; a touched vector is ``chunks`` beats with ``zero = 0``; the first
    step (nonzero bias) sends every vector in full; an empty step sends ``n_vectors`` zero beats.
    """
    V, lanes, n_out = 4, 4, 10                     # 3 chunks (ragged)
    W, bias, _ = random_case(21, 6, n_out, 1, 1, 0.5)
    if bias_zero:
        bias = np.zeros_like(bias)
    sp = np.zeros((6, V, 6), dtype=np.int8)
    sp[0, 1, 2] = 1                                # t=0: vector 1 only (bias touches all)
    sp[1, 0, 0] = sp[1, 0, 5] = -1                 # t=1: vector 0 and 3
    sp[1, 3, 4] = 1
    sp[2, 2, 1] = 1                                # t=2: one event, vector 2
    sp[2, 2, 3] = -1
    sp[4, :, 0] = 1                                # t=4: every vector; t=3, t=5 empty
    raw: list = []
    got, _ = amaranth_engine(W, bias, sp, lanes=lanes, n_vectors=V, bp=bp, seed=7, raw=raw,
                             ordered=True)
    _check(W, bias, sp, got)
    C = 3
    exp_zero = []
    tv = touched_vectors(sp, bias)
    assert tv[0].all() != bias_zero and not tv[3].any() and not tv[5].any()
    for t in range(sp.shape[0]):
        for v in range(V):
            exp_zero += [0] * C if tv[t, v] else [1]
    assert [b["zero"] for b in raw] == exp_zero
    assert all(not any(b["lanes"]) for b in raw if b["zero"])
    # empty steps: exactly n_vectors beats, all zero
    assert len(raw) == int(tv.sum()) * C + int((~tv).sum())


@pytest.mark.sim
@pytest.mark.parametrize("bp,idle", [(0.0, 0.0), (0.5, 0.3)])
def test_zero_vector_expander(bp, idle):
    """The expander alone: a zero beat -> ``chunks`` zero beats, data beats pass unchanged."""
    from equispike.sim.amaranth_tb import run_testbenches, stream_testbench

    C, P = 3, 4
    exp = ZeroVectorExpander(lanes=P, acc_width=12, chunks=C)
    rng = np.random.default_rng(5)
    beats, dense = [], []
    for k in range(40):
        if rng.random() < 0.4:
            # a zero beat, its lanes are 0 by protocol (garbage on k % 4 == 0: must be ignored)
            lanes = [int(x) for x in rng.integers(-2048, 2048, P)] if k % 4 == 0 else [0] * P
            beats.append({"zero": 1, "lanes": lanes})
            dense += [[0] * P] * C
        else:
            lanes = [int(x) for x in rng.integers(-2048, 2048, P)]
            beats.append({"zero": 0, "lanes": lanes})
            dense.append(lanes)
    out: list = []
    tb = stream_testbench([(exp.i_stream, beats)], [(exp.o_stream, len(dense), out)],
                          idle_prob=idle, backpressure_prob=bp, seed=3)
    run_testbenches(exp, tb, max_cycles=10_000)
    assert out == dense


@pytest.mark.sim
def test_engine_with_expander():
    """Engine (compact) -> expander: the dense current stream of every step, bit exact."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    from equispike.sim.amaranth_tb import run_testbenches, stream_testbench

    V, lanes = 3, 4
    W, bias, sp = random_case(31, 8, 10, 3, 8, 0.1)
    eng = SpikeAdditionEngine(W, bias, lanes=lanes, n_vectors=V,
                              acc_width=required_acc_width(W, bias))
    xp = ZeroVectorExpander.for_engine(eng)
    top = Module()
    top.submodules.eng, top.submodules.xp = eng, xp
    wiring.connect(top, eng.o_stream, xp.i_stream)
    out: list = []
    T = sp.shape[0]
    main = stream_testbench([(eng.i_stream, spikes_to_events(sp))],
                            [(xp.o_stream, T * V * eng.chunks, out)], backpressure_prob=0.3,
                            seed=2)

    async def tb(ctx):
        await ctx.tick()
        while ctx.get(eng.busy):
            await ctx.tick()
        await main(ctx)

    run_testbenches(top, tb, max_cycles=50_000)
    _check(W, bias, sp, collect(out, T, V, eng.chunks))
    with pytest.raises(ValueError, match="not compact"):
        ZeroVectorExpander.for_engine(SpikeAdditionEngine(W, bias, lanes=lanes, n_vectors=V,
                                                          acc_width=eng.acc_width,
                                                          compact_zero_vectors=False))


@pytest.mark.sim
@pytest.mark.parametrize("lanes,n_out", [(1, 3), (3, 3), (4, 17), (8, 5), (4, 8), (2, 5)])
def test_engine_fast_shapes(lanes, n_out):
    """Rows wider than P (several chunks), exactly P, narrower than P, single lane."""
    W, bias, sp = random_case(lanes * 100 + n_out, 5, n_out, 2, 5, 0.5)
    got, _ = amaranth_engine(W, bias, sp, lanes=lanes, n_vectors=2, bp=0.3, idle=0.2, seed=1)
    _check(W, bias, sp, got)


@pytest.mark.sim
@pytest.mark.parametrize("sign_in_rom", [True, False])
def test_engine_fast_sign_forms(sign_in_rom):
    """The sign in the weight ROM (~w rows) and in the fabric (w XOR s); rows of 12 chunks,
    both signs, the int8 extremes among the weights."""
    W, bias, sp = random_case(42, 42, 48, 2, 3, 0.3)
    W[0, :8] = [-128, 127, -128, 127, -1, 1, 0, -128]
    assert (sp < 0).any() and (sp > 0).any()
    got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, bp=0.2, seed=4,
                             sign_in_rom=sign_in_rom)
    _check(W, bias, sp, got)


@pytest.mark.sim
def test_engine_fast_empty_steps():
    W, bias, _ = random_case(12, 6, 6, 1, 1, 0.5)
    sp = np.zeros((4, 1, 6), dtype=np.int8)
    sp[2, 0, 3] = -1
    got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=1, bp=0.5, seed=2)
    _check(W, bias, sp, got)


@pytest.mark.sim
@pytest.mark.parametrize("abort_beats", [1, 4, 9])
def test_engine_fast_clear_mid_stream(abort_beats, flag_ram):
    W, bias, sp = random_case(13, 6, 9, 2, 4, 0.5)
    got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, bp=0.3, seed=3,
                             abort_beats=abort_beats)
    _check(W, bias, sp, got)


@pytest.mark.sim
def test_engine_fast_throughput():
    """Without stalls, a dense step costs about events x chunks cycles (hidden readout)."""
    W, bias, sp = random_case(14, 16, 12, 1, 6, 0.9)
    got, cycles = amaranth_engine(W, bias, sp, lanes=4, n_vectors=1, seed=5)
    _check(W, bias, sp, got)
    ideal = int(np.count_nonzero(sp)) * 3
    assert ideal / cycles > 0.85, (ideal, cycles)


@pytest.mark.sim
@pytest.mark.parametrize("n_out", [4, 8, 12])
@pytest.mark.parametrize("bp", [0.0, 0.5])
def test_engine_fast_hazard(n_out, bp, flag_ram):
    """Events of one vector back to back with 1, 2 and 3 chunks per row (4 lanes): a word is
    re-accessed before its previous sum is written (1, 2 chunks) -> hazard stall, exact sums;
    with >= 3 chunks (the read-modify-write loop depth) no stall."""
    W, bias, sp = random_case(15 + n_out, 9, n_out, 2, 5, 0.8)
    sp[1] = 0
    sp[1, 0, 0] = sp[1, 0, 1] = 1                 # two events, same vector, same sign
    sp[3, 1] = -1                                 # a full row of one vector, all negative
    got, cycles = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, bp=bp, seed=6,
                                  ordered=True)
    _check(W, bias, sp, got)
    chunks = -(-n_out // 4)
    if bp == 0.0:
        # one item per max(chunks, 3) cycles, plus per-step end-of-step / readout overhead
        ev = int(np.count_nonzero(sp))
        assert cycles <= ev * max(chunks, 3) + sp.shape[0] * (2 * chunks + 12), (cycles, ev)
        if chunks >= 3:
            assert ev * chunks / cycles > 0.8, (ev, cycles)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_engine_parameter_errors():
    W = np.ones((4, 6), dtype=np.int64)
    with pytest.raises(ValueError, match="acc_width 3 is too narrow"):
        SpikeAdditionEngine(W, lanes=2, acc_width=3)
    with pytest.raises(ValueError, match="int8"):
        SpikeAdditionEngine(W * 200, lanes=2, acc_width=16)
    with pytest.raises(ValueError, match="bias must be"):
        SpikeAdditionEngine(W, np.zeros(5, dtype=np.int64), lanes=2, acc_width=16)
    with pytest.raises(ValueError, match="lanes"):
        SpikeAdditionEngine(W, lanes=0, acc_width=16)
    with pytest.raises(ValueError, match="2-D"):
        SpikeAdditionEngine(np.ones(4, dtype=np.int64), lanes=2, acc_width=16)
    # ECP5 block-RAM depth: 512 x 2 = 1024 weight words fit (the sign then applied in the
    # fabric, no ~w rows), 513 x 2 do not; the accumulators: 2 x 511 x 1 + 1 + 1 = 1024 fit,
    # 512 vectors do not
    assert SpikeAdditionEngine(np.ones((256, 4), dtype=np.int64), lanes=2, acc_width=16,
                               ram_target="ecp5").sign_in_rom
    assert not SpikeAdditionEngine(np.ones((257, 4), dtype=np.int64), lanes=2, acc_width=16,
                                   ram_target="ecp5").sign_in_rom
    assert not SpikeAdditionEngine(np.ones((256, 4), dtype=np.int64), lanes=2, acc_width=16,
                                   ram_target="generic").sign_in_rom
    with pytest.raises(ValueError, match="2 x n_in x chunks = 1028 weight words"):
        SpikeAdditionEngine(np.ones((257, 4), dtype=np.int64), lanes=2, acc_width=16,
                            ram_target="ecp5", sign_in_rom=True)
    with pytest.raises(ValueError, match="weight ROM needs 1026 words"):
        SpikeAdditionEngine(np.ones((513, 4), dtype=np.int64), lanes=2, acc_width=16,
                            ram_target="ecp5")
    SpikeAdditionEngine(W, lanes=8, acc_width=16, n_vectors=511, ram_target="ecp5")
    with pytest.raises(ValueError, match="accumulators 1026"):
        SpikeAdditionEngine(W, lanes=8, acc_width=16, n_vectors=512, ram_target="ecp5")
    SpikeAdditionEngine(np.ones((513, 4), dtype=np.int64), lanes=2, acc_width=16)  # (no limit)
    # flag memories: distributed up to LUTRAM_FLAG_WORDS words per bank (the default there),
    # block RAM at any size
    assert SpikeAdditionEngine(W, lanes=2, acc_width=16, n_vectors=21).flag_ram == "distributed"
    assert SpikeAdditionEngine(W, lanes=2, acc_width=16, n_vectors=22).flag_ram == "block"
    assert SpikeAdditionEngine(W, lanes=2, acc_width=16, flag_ram="block").flag_ram == "block"
    with pytest.raises(ValueError, match="at most 64 words per bank, got n_vectors x chunks = 66"):
        SpikeAdditionEngine(W, lanes=2, acc_width=16, n_vectors=22, flag_ram="distributed")
    with pytest.raises(ValueError, match="flag_ram must be one of"):
        SpikeAdditionEngine(W, lanes=2, acc_width=16, flag_ram="lut")


@pytest.mark.sim
@pytest.mark.parametrize("lanes,n_out", [(4, 4), (4, 12)])
def test_engine_fast_readout_behind_last_write(lanes, n_out, flag_ram):
    """The readout of a step starts a fixed delay after its end-of-step, without looking at the
    accumulate pipeline: one vector, events back to back, the end-of-step right behind the last
    one. With one chunk per row the last item writes the readout's first word (the simulation
    model poisons a read in the cycle of the write), with three its last one."""
    W, bias, sp = random_case(16 + n_out, 8, n_out, 1, 8, 0.9)
    got, _ = amaranth_engine(W, bias, sp, lanes=lanes, n_vectors=1, seed=8, ordered=True)
    _check(W, bias, sp, got)


@pytest.mark.sim
def test_engine_fast_same_vector_gaps():
    """Two events of one vector per step, 0..5 idle input cycles between them (3 chunks per
    row): the second event's items re-access the first one's words 3 cycles later (forwarded),
    4 (hazard stall: neither written nor forwardable) or later."""
    from equispike.sim.amaranth_tb import get_stream, put_stream, run_testbenches

    n_in, n_out, lanes = 8, 12, 4
    W, bias, _ = random_case(41, n_in, n_out, 1, 1, 0.5)
    gaps = [0, 1, 2, 3, 4, 5] * 2
    T = len(gaps)
    rng = np.random.default_rng(4)
    sp = np.zeros((T, 1, n_in), dtype=np.int8)
    beats, idle_before = [], {}
    for t, g in enumerate(gaps):
        a, b = (int(x) for x in rng.choice(n_in, 2, replace=False))
        sa, sb = (int(x) for x in rng.choice([-1, 1], 2))
        sp[t, 0, a], sp[t, 0, b] = sa, sb
        # (a long pause first: the readout of the previous step is done, nothing is queued)
        idle_before[len(beats)], idle_before[len(beats) + 1] = 30, g
        beats += [{"index": a, "vector": 0, "neg": int(sa < 0), "eos": 0},
                  {"index": b, "vector": 0, "neg": int(sb < 0), "eos": 0}, {"eos": 1}]
    eng = SpikeAdditionEngine(W, bias, lanes=lanes, n_vectors=1,
                              acc_width=required_acc_width(W, bias))
    out: list = []

    async def idle(ctx, i):
        for _ in range(idle_before.get(i, 0)):
            await ctx.tick()

    async def tb_in(ctx):
        await ctx.tick()
        while ctx.get(eng.busy):
            await ctx.tick()
        await put_stream(eng.i_stream, beats, before=idle)(ctx)

    run_testbenches(eng, tb_in, get_stream(eng.o_stream, expected_beats(sp, bias, eng.chunks), out),
                    max_cycles=20_000)
    _check(W, bias, sp, collect(out, T, 1, eng.chunks))


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "no_forwarding"])
def test_engine_fast_mutation(mutant, monkeypatch):
    """Mutation: the accumulate adder ignores the forwarded sum (``_SEL_ACC`` without ``d``), so a
    word re-accessed before its write-back loses the previous event: the currents must differ."""
    from equispike.sim.mutation import must_fail

    if mutant:
        monkeypatch.setattr("equispike.rtl.engine._SEL_ACC", lambda b, c, d: b & c)
    W, bias, sp = random_case(27, 9, 12, 2, 5, 0.8)
    with must_fail(mutant):
        got, _ = amaranth_engine(W, bias, sp, lanes=4, n_vectors=2, seed=6, ordered=True)
        _check(W, bias, sp, got)
