"""Neuron array (rtl/neuron.py) against the golden STBIFArray / LIFArray, step by step.

One file holds the cocotb testbench coroutines (run inside Verilator) and the pytest launchers
(build one Verilator model per hardware configuration, then run the coroutines). Stimulus shapes
(idle cycles, back-pressure) vary inside cocotb with ``cocotb.parametrize``; fast handshake corner
cases run on Amaranth's simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from equispike.model.neurons import LIFArray, STBIFArray, site_bounds
from equispike.rtl.neuron import NeuronArray
from equispike.sim.scoreboard import Scoreboard, zero_padded

_FREE = NeuronArray.HAZARD_FREE_BEATS

try:
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None

MODULE = "equispike.tests.test_neuron_array"


# ---------------------------------------------------------------- configuration & golden model
def make_dut(cfg: dict) -> NeuronArray:
    theta = np.asarray(cfg["theta"], dtype=np.int64)
    kw = dict(lanes=cfg["lanes"], n_neurons=cfg["n"], mode=cfg["mode"],
              current_width=cfg["cw"], membrane_width=cfg["vw"], levels=cfg["levels"],
              param_depth=theta.shape[0], theta=theta, ram_target=cfg.get("ram_target"),
              state_group_lanes=cfg.get("group", 8),
              carry_target=cfg.get("ram_target"), state_select=cfg.get("select"))
    if cfg["mode"] == "stbif":
        kw.update(qn=cfg["qn"], qp=cfg["qp"])
    return NeuronArray(**kw)


def neuron_theta(cfg: dict) -> np.ndarray:
    """Θ of every neuron: entry ``(i // P) % depth``, lane ``i % P`` of the parameter table."""
    tab = np.asarray(cfg["theta"], dtype=np.int64)
    i = np.arange(cfg["n"])
    return tab[(i // cfg["lanes"]) % tab.shape[0], i % cfg["lanes"]]


def golden(cfg: dict):
    th = neuron_theta(cfg)
    if cfg["mode"] == "stbif":
        return STBIFArray((cfg["n"],), th, cfg["qn"], cfg["qp"])
    return LIFArray((cfg["n"],), th)


def random_config(seed, *, lanes, n, mode, cw, vw, levels, signed, depth, theta_max,
                  ram_target=None, group=8, select=None):
    rng = np.random.default_rng(seed)
    cfg = dict(lanes=lanes, n=n, mode=mode, cw=cw, vw=vw, levels=levels, seed=seed,
               ram_target=ram_target, group=group, select=select,
               theta=rng.integers(1, theta_max + 1, size=(depth, lanes)).tolist())
    if mode == "stbif":
        cfg["qn"], cfg["qp"] = site_bounds(levels, signed)
    return cfg


def random_currents(rng, cfg, steps) -> np.ndarray:
    """Mixed stimulus: sparse steps, small and large currents, extremes of the current range."""
    cmax = (1 << (cfg["cw"] - 1)) - 1
    th = neuron_theta(cfg)
    out = np.zeros((steps, cfg["n"]), dtype=np.int64)
    for t in range(steps):
        kind = rng.integers(0, 4)
        if kind == 0:     # around the threshold
            x = rng.integers(-2 * th, 2 * th + 1)
        elif kind == 1:   # full range, sparse
            x = rng.integers(-cmax, cmax + 1, size=cfg["n"]) * (rng.random(cfg["n"]) < 0.3)
        elif kind == 2:   # quiet
            x = np.zeros(cfg["n"], dtype=np.int64)
        else:             # one-sided drive (saturates tracers)
            x = rng.integers(0, th + 1) * (1 if rng.random() < 0.5 else -1)
        out[t] = np.clip(x, -cmax - 1, cmax)
    return out


def golden_run(cfg, currents, nrn=None):
    """Golden spikes per step; checks V stays inside the RTL width (a test precondition)."""
    nrn = golden(cfg) if nrn is None else nrn
    vmax = 1 << (cfg["vw"] - 1)
    spikes = []
    for t in range(currents.shape[0]):
        spikes.append(nrn.step(currents[t]))
        assert -vmax <= int(nrn.V.min()) and int(nrn.V.max()) < vmax, \
            f"stimulus drives V outside {cfg['vw']} bits at step {t}: widen vw"
    return np.array(spikes)


def to_beats(vec, lanes):
    pad = (-len(vec)) % lanes
    v = np.concatenate([np.asarray(vec, dtype=np.int64), np.zeros(pad, dtype=np.int64)])
    return [list(map(int, v[i:i + lanes])) for i in range(0, len(v), lanes)]


# ---------------------------------------------------------------- cocotb testbench
_TOTALS = {"compared": 0}

if cocotb is not None:
    from cocotb.triggers import ClockCycles, RisingEdge

    from equispike.sim.clock import start_clock
    from equispike.sim.streams import as_int

    async def _reset(dut):
        start_clock(dut.clk)    # tasks (the clock too) end with each test
        dut.rst.value = 1
        dut.clear.value = 0
        dut.cfg__en.value = 0
        dut.i_stream__valid.value = 0
        dut.o_stream__ready.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await _wait_not_busy(dut)

    async def _wait_not_busy(dut):
        await RisingEdge(dut.clk)
        while as_int(dut.busy.value):
            await RisingEdge(dut.clk)

    async def _run_inference(dut, cfg, currents, exp, drv, mon, sb):
        """Every spike of every step, and the padding lanes of the last beat (0)."""
        n, P = cfg["n"], cfg["lanes"]
        beats = -(-n // P)
        base = mon.received
        for t in range(currents.shape[0]):
            for b in to_beats(currents[t], P):
                drv.send(b)
        await mon.wait_for(base + beats * currents.shape[0])
        exp = zero_padded(exp, beats * P)
        for t in range(currents.shape[0]):
            got = [s for _ in range(beats) for s in mon.items.popleft()]
            sb.compare(t, exp[t], got)

    @cocotb.test()
    @cocotb.parametrize(idle=[0.0, 0.4], backpressure=[0.0, 0.5])
    async def neuron_random(dut, idle, backpressure):
        """Random currents, two inferences separated by ``clear``; every spike compared."""
        from equispike.sim import StreamDriver, StreamMonitor, tb_config

        cfg = tb_config()
        await _reset(dut)
        seed = cfg["seed"] * 100 + int(idle * 10) * 10 + int(backpressure * 10)
        rng = np.random.default_rng(seed)
        shp_i = dut_shapes(cfg)
        beats = -(-cfg["n"] // cfg["lanes"])
        drv = StreamDriver(dut, dut.clk, "i_stream", shp_i[0], idle_prob=idle, seed=seed)
        mon = StreamMonitor(dut, dut.clk, "o_stream", shp_i[1], backpressure_prob=backpressure,
                            seed=seed + 1, expected=2 * cfg["steps"] * beats)
        sb = Scoreboard(f"neurons[{cfg['mode']}]")
        for _ in range(2):
            cur = random_currents(rng, cfg, cfg["steps"])
            await _run_inference(dut, cfg, cur, golden_run(cfg, cur), drv, mon, sb)
            dut.clear.value = 1
            await RisingEdge(dut.clk)
            dut.clear.value = 0
            await _wait_not_busy(dut)
        await mon.finish()
        drv.stop()
        sb.require(2 * cfg["steps"] * cfg["n"])
        _TOTALS["compared"] += sb.compared
        dut._log.info(sb.summary())

    @cocotb.test()
    async def neuron_real_layer(dut):
        """Currents of a real site of a random ViT (factory), every spike of every step."""
        from equispike.sim import StreamDriver, StreamMonitor, tb_config

        cfg = tb_config("real", "site")
        await _reset(dut)
        data = np.load(cfg["real"])
        cur, spk = data["current"], data["spikes"]   # (T, n)
        shp = dut_shapes(cfg)
        drv = StreamDriver(dut, dut.clk, "i_stream", shp[0], idle_prob=0.2, seed=5)
        mon = StreamMonitor(dut, dut.clk, "o_stream", shp[1], backpressure_prob=0.2, seed=6,
                            expected=cur.shape[0] * -(-cfg["n"] // cfg["lanes"]))
        sb = Scoreboard(cfg["site"])
        exp = golden_run(cfg, cur)
        assert np.array_equal(exp, spk), "golden STBIFArray disagrees with the ViTSNN record"
        await _run_inference(dut, cfg, cur, exp, drv, mon, sb)
        await mon.finish()
        drv.stop()
        sb.require(spk.size)
        _TOTALS["compared"] += sb.compared
        dut._log.info(sb.summary())

    @cocotb.test()
    async def neuron_totals(dut):
        """Checks that the configuration compared enough neuron-steps."""
        from equispike.sim import tb_config

        cfg = tb_config("min_compared")
        dut._log.info(f"total neuron-steps compared: {_TOTALS['compared']}")
        assert _TOTALS["compared"] >= cfg["min_compared"] > 0, (
            f"{_TOTALS['compared']} neuron-steps compared, at least {cfg['min_compared']} required")


def dut_shapes(cfg):
    from amaranth.hdl import signed
    from amaranth.lib import data

    return (data.ArrayLayout(signed(cfg["cw"]), cfg["lanes"]),
            data.ArrayLayout(signed(2), cfg["lanes"]))


# ---------------------------------------------------------------- pytest launchers (Verilator)
CONFIGS = {
    # 37 neurons on 4 lanes (ragged last beat), signed 16 levels, per-neuron-group Θ (depth 3)
    "stbif_p4_signed16": dict(lanes=4, n=37, mode="stbif", cw=10, vw=16, levels=16, signed=True,
                              depth=3, theta_max=60),
    # one beat per step (read-after-write every cycle), unsigned 4 levels, narrow current
    "stbif_p8_unsigned4": dict(lanes=8, n=8, mode="stbif", cw=6, vw=14, levels=4, signed=False,
                               depth=1, theta_max=20),
    # the same as ECP5 netlist: RAMs as DP16KD (output registers, initialised parameter RAM)
    # under our behavioural DP16KD model, the fused adders as CCU2C chains under Yosys' model
    "stbif_p4_signed16_ecp5": dict(lanes=4, n=37, mode="stbif", cw=10, vw=16, levels=16,
                                   signed=True, depth=3, theta_max=60, ram_target="ecp5"),
    # state RAM split into groups of 3 lanes (3 RAMs, the last one narrower), each with its own
    # address counters; the state-select form (D, H, k) with the select as a multiplexer
    "stbif_p8_groups3": dict(lanes=8, n=45, mode="stbif", cw=9, vw=13, levels=8, signed=True,
                             depth=1, theta_max=30, group=3, select=True),
    "lif_p3": dict(lanes=3, n=20, mode="lif", cw=8, vw=10, levels=2, signed=False, depth=2,
                   theta_max=40),
}


@pytest.mark.sim
@pytest.mark.parametrize("name", list(CONFIGS))
def test_neuron_array_verilator(name, request):
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import ECP5_RAM_MODELS, MODELS_DIR, ecp5_carry_build_args

    c = CONFIGS[name]
    cfg = random_config(sum(map(ord, name)), **c)
    per_variant = 2 * cfg["n"]          # neurons per step x 2 inferences
    cfg["steps"] = -(-10_000 // (4 * per_variant))    # 4 stimulus variants, >= 10,000 total
    cfg["min_compared"] = 10_000
    ecp5 = cfg["ram_target"] == "ecp5"
    extra = [*ECP5_RAM_MODELS, MODELS_DIR / "ecp5_cells.v"] if ecp5 else []
    run_cocotb(make_dut(cfg), test_module=MODULE, build_dir=build_dir_for(request.node.nodeid),
               config=cfg, test_filter="neuron_random|neuron_totals", extra_sources=extra,
               extra_build_args=ecp5_carry_build_args() if ecp5 else ())


@pytest.mark.sim
def test_neuron_array_real_layer(request, tmp_path):
    """Site ``blocks.0.q`` of a random ViT: Θ per channel (32 channels on 8 lanes, depth 4)."""
    from equispike.model.factory import random_images, random_vit
    from equispike.model.vit import ViTSNN
    from equispike.model.widths import analyze
    from equispike.sim import build_dir_for, run_cocotb

    art = random_vit(3)
    site = "blocks.0.q"
    res = ViTSNN(art).run(random_images(3, art, 1), t_max=64, record={site})
    rec = res.records[site]
    T = rec["spikes"].shape[0]
    cur = rec["current"].reshape(T, -1)
    spk = rec["spikes"].reshape(T, -1)
    s = art.site(site)
    rep = analyze(art)
    P = 8
    ch = np.broadcast_to(np.asarray(s.theta), (cur.shape[1] // rec["spikes"].shape[-1] * 0 +
                                               rec["spikes"].shape[-1],))
    assert ch.size % P == 0
    bdir = build_dir_for(request.node.nodeid)
    np.savez(bdir / "real.npz", current=cur, spikes=spk)
    cfg = dict(lanes=P, n=cur.shape[1], mode="stbif", cw=rep.bits[f"{site}.current"],
               vw=rep.bits[f"{site}.membrane"], levels=s.levels, qn=s.qn, qp=s.qp,
               theta=np.asarray(ch).reshape(-1, P).tolist(), site=site,
               real=str(bdir / "real.npz"), min_compared=cur.size)
    run_cocotb(make_dut(cfg), test_module=MODULE, build_dir=bdir, config=cfg,
               test_filter="neuron_real_layer|neuron_totals")


# ---------------------------------------------------------------- lint
@pytest.mark.sim
def test_neuron_array_lint(request):
    from equispike.sim import build_dir_for, lint_verilog, write_verilog

    cfg = random_config(1, **CONFIGS["stbif_p4_signed16"])
    path = write_verilog(make_dut(cfg), build_dir_for(request.node.nodeid))
    rc, out = lint_verilog(path)   # waivers: sim.build.LINT_WAIVERS
    assert rc == 0 and not out, out


# ---------------------------------------------------------------- fast Amaranth-simulator tests
def amaranth_run(cfg, currents, *, idle=0.0, bp=0.0, seed=0, abort_after=None,
                 abort="clear", cycles=None, config=None, dut=None):
    """Spikes (T, n) of the DUT on Amaranth's simulator for one inference of ``currents``.

    With ``abort_after=k``, a first inference is started with the same currents and interrupted
    after ``k`` input beats by ``abort`` ("clear" strobe or "rst"), outputs dropped; the state
    must then be exactly the cleared state for the real inference. ``config``: (address, word)
    pairs written through the ``cfg`` port first, then a ``clear`` strobe.
    """
    from equispike.sim.amaranth_tb import run_testbenches, stream_testbench

    dut = make_dut(cfg) if dut is None else dut
    P, n = cfg["lanes"], cfg["n"]
    beats = -(-n // P)
    items = [b for t in range(currents.shape[0]) for b in to_beats(currents[t], P)]
    out = []
    benches = []
    if config is not None:
        async def configure(ctx):
            await ctx.tick()
            while ctx.get(dut.busy):
                await ctx.tick()
            for addr, word in config:
                ctx.set(dut.cfg.addr, addr)
                ctx.set(dut.cfg.data, dut.cfg.data.shape().from_bits(word))
                ctx.set(dut.cfg.en, 1)
                await ctx.tick()
            ctx.set(dut.cfg.en, 0)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
        benches.append(configure)
    if abort_after is not None:
        if abort != "clear":
            raise ValueError(abort)
        pre = stream_testbench([(dut.i_stream, items[:abort_after])], [],
                               idle_prob=idle, seed=seed + 11, max_cycles=1000,
                               on_cycle=lambda ctx, c: ctx.set(dut.o_stream.ready, c % 2))

        async def first(ctx):
            await pre(ctx)
            ctx.set(dut.o_stream.ready, 1)
            await ctx.tick().repeat(2)          # some outputs leave, some stay in flight
            ctx.set(dut.o_stream.ready, 0)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
        benches.append(first)

    def count(ctx, c):
        if cycles is not None:
            cycles[:] = [c + 1]

    main = stream_testbench([(dut.i_stream, items)], [(dut.o_stream, len(items), out)],
                            idle_prob=idle, backpressure_prob=bp, seed=seed, on_cycle=count)

    async def run(ctx):
        for b in benches:
            await b(ctx)
        await ctx.tick()
        while ctx.get(dut.busy):
            await ctx.tick()
        await main(ctx)

    run_testbenches(dut, run, max_cycles=100_000)
    flat = [s for b in out for s in b]
    got = np.array(flat).reshape(currents.shape[0], beats * P)
    assert not got[:, n:].any(), f"padding lanes of the last beat are not 0: {got[:, n:]}"
    return got[:, :n]


def compare_all(site: str, exp, got) -> Scoreboard:
    """Whole spike record vs golden; asserts every element was compared."""
    sb = Scoreboard(site)
    sb.compare(0, exp, got)
    sb.require(np.asarray(exp).size)
    return sb


# two state RAMs (groups of 2 + 1 lanes): the fast tests also check the per-group address counters
# through stalls, hazards, clears and resets
FAST = dict(lanes=3, n=7, mode="stbif", cw=8, vw=14, levels=8, signed=True, depth=3,
            theta_max=12, group=2)


@pytest.mark.sim
@pytest.mark.parametrize("select", [False, True])
@pytest.mark.parametrize("idle,bp", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7), (0.5, 0.7)])
def test_neuron_array_fast_stalls(idle, bp, select):
    cfg = random_config(4, **FAST, select=select)
    cur = random_currents(np.random.default_rng(4), cfg, 25)
    got = amaranth_run(cfg, cur, idle=idle, bp=bp, seed=3)
    sb = Scoreboard("fast")
    exp = golden_run(cfg, cur)
    for t in range(cur.shape[0]):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)


@pytest.mark.sim
@pytest.mark.parametrize("bp", [0.8, 0.95])
def test_neuron_array_fast_queue_full(bp):
    """Full-rate input (no hazard stall) against a slow consumer: the spike queue fills to its
    limit and stays there (credits, the pointer compares near a whole lap); every spike must
    still come out in order."""
    cfg = random_config(12, **{**FAST, "n": 3 * (_FREE + 2), "depth": 1, "select": True})
    cur = random_currents(np.random.default_rng(12), cfg, 12)
    got = amaranth_run(cfg, cur, bp=bp, seed=5)
    compare_all("queue", golden_run(cfg, cur), got)


@pytest.mark.sim
@pytest.mark.parametrize("mode,select", [("stbif", False), ("stbif", True), ("lif", None)])
@pytest.mark.parametrize("n", [2, 3, 8])      # one beat (RAW every cycle), exact, ragged
def test_neuron_array_fast_shapes(mode, select, n):
    cfg = random_config(5, **{**FAST, "n": n, "mode": mode, "depth": 1, "select": select})
    cur = random_currents(np.random.default_rng(n), cfg, 30)
    got = amaranth_run(cfg, cur, bp=0.3, idle=0.2, seed=n)
    exp = golden_run(cfg, cur)
    compare_all("fast", exp, got)


@pytest.mark.sim
@pytest.mark.parametrize("mode,select", [("stbif", False), ("stbif", True), ("lif", None)])
@pytest.mark.parametrize("beats", [1, 2, 3, _FREE - 2, _FREE - 1, _FREE])
@pytest.mark.parametrize("idle", [0.0, 0.3])
def test_neuron_array_fast_hazards(mode, select, beats, idle):
    """Read-after-write hazards of the update pipeline: with ``beats`` words per step and no gaps,
    every state word comes back ``beats`` cycles after its previous update: below
    ``HAZARD_FREE_BEATS`` beats the
    word is re-read until its write-back is done (hazard stall); random gaps mix the distances."""
    cfg = random_config(40 + beats, **{**FAST, "n": 3 * beats, "mode": mode, "depth": 1,
                                        "theta_max": 6, "select": select})
    cur = random_currents(np.random.default_rng(beats), cfg, 100)
    got = amaranth_run(cfg, cur, idle=idle, seed=beats)
    exp = golden_run(cfg, cur)
    assert np.count_nonzero(exp) >= 10, "stimulus too quiet to exercise the update"
    compare_all("hazards", exp, got)


@pytest.mark.sim
@pytest.mark.parametrize("beats", [1, 2, 4, _FREE - 1, _FREE, _FREE + 1])
def test_neuron_array_fast_throughput(beats):
    """One beat per cycle when a step has at least ``HAZARD_FREE_BEATS`` beats (no hazard); with
    fewer, a word comes back before its write-back and the step is held to one per
    ``HAZARD_FREE_BEATS`` cycles (hazard stall)."""
    cfg = random_config(50, **{**FAST, "n": 3 * beats, "depth": 1})
    steps = 20
    cur = random_currents(np.random.default_rng(50), cfg, steps)
    cycles = []
    got = amaranth_run(cfg, cur, cycles=cycles)
    compare_all("throughput", golden_run(cfg, cur), got)
    free = NeuronArray.HAZARD_FREE_BEATS
    per_step = max(beats, free)
    assert cycles[0] <= steps * per_step + NeuronArray.LATENCY + 1, cycles   # + the latency
    if beats < free:
        assert cycles[0] >= (steps - 1) * per_step, cycles   # the stall is really there


@pytest.mark.sim
@pytest.mark.parametrize("select", [False, True])
@pytest.mark.parametrize("abort_after", [1, 5, 11])
def test_neuron_array_fast_clear_mid_stream(abort_after, select):
    cfg = random_config(6, **FAST, select=select)
    cur = random_currents(np.random.default_rng(6), cfg, 10)
    got = amaranth_run(cfg, cur, bp=0.5, seed=1, abort_after=abort_after)
    compare_all("fast", golden_run(cfg, cur), got)


@pytest.mark.sim
@pytest.mark.parametrize("mode,select", [("stbif", False), ("stbif", True), ("lif", None)])
@pytest.mark.parametrize("depth", [1, 3])
def test_neuron_array_fast_config_port(mode, select, depth):
    """Parameters written through ``cfg`` (words of ``config_words``, in a shuffled order) over
    the generation-time ones, then ``clear``: the run must follow the new Θ, Qn, Qp, and the
    cleared membrane floor(Θ/2) of the new Θ."""
    old = random_config(8, **{**FAST, "mode": mode, "depth": depth, "select": select})
    new = random_config(9, **{**FAST, "mode": mode, "depth": depth, "signed": False,
                              "select": select})
    if mode == "stbif":
        assert (old["qn"], old["qp"]) != (new["qn"], new["qp"])
    assert old["theta"] != new["theta"]
    dut = make_dut(old)
    words = dut.config_words(np.asarray(new["theta"]), new.get("qn"), new.get("qp"))
    assert len(words) == dut.config_depth
    order = np.random.default_rng(depth).permutation(len(words))
    cur = random_currents(np.random.default_rng(8), new, 40)
    got = amaranth_run(new, cur, bp=0.3, seed=2, dut=dut,
                       config=[(int(a), words[a]) for a in order])
    exp = golden_run(new, cur)
    assert not np.array_equal(exp, golden_run(old, cur)), "the new parameters change nothing"
    compare_all("config", exp, got)


@pytest.mark.sim
def test_neuron_array_fast_reset_mid_stream():
    """Synchronous reset in the middle of a step: the array re-clears itself and restarts."""
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator

    from equispike.sim.amaranth_tb import stream_testbench

    cfg = random_config(7, **FAST)
    cur = random_currents(np.random.default_rng(7), cfg, 8)
    dut = make_dut(cfg)
    P = cfg["lanes"]
    items = [b for t in range(cur.shape[0]) for b in to_beats(cur[t], P)]
    out = []
    pre = stream_testbench([(dut.i_stream, items[:4])], [], seed=2, max_cycles=1000,
                           on_cycle=lambda ctx, c: ctx.set(dut.o_stream.ready, c % 2))
    main = stream_testbench([(dut.i_stream, items)], [(dut.o_stream, len(items), out)],
                            backpressure_prob=0.3, seed=3)

    async def tb(ctx):
        await pre(ctx)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        await ctx.tick()
        while ctx.get(dut.busy):
            await ctx.tick()
        await main(ctx)

    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(tb)
    sim.run_until(1e-8 * 20_000)
    beats = -(-cfg["n"] // P)
    got = np.array([s for b in out for s in b]).reshape(len(cur), beats * P)
    assert not got[:, cfg["n"]:].any(), "padding lanes of the last beat are not 0"
    compare_all("fast", golden_run(cfg, cur), got[:, :cfg["n"]])


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_neuron_array_parameter_errors():
    base = dict(lanes=4, n_neurons=8, current_width=8, membrane_width=12)
    with pytest.raises(ValueError, match="lanes"):
        NeuronArray(**{**base, "lanes": 0})
    with pytest.raises(ValueError, match="mode"):
        NeuronArray(**base, mode="relu")
    with pytest.raises(ValueError, match="membrane_width"):
        NeuronArray(**{**base, "membrane_width": 2})
    with pytest.raises(ValueError, match="levels must be a power of two"):
        NeuronArray(**base, levels=12)
    with pytest.raises(ValueError, match="param_depth"):
        NeuronArray(**base, param_depth=3)
    with pytest.raises(ValueError, match="theta must be in"):
        NeuronArray(**base, theta=5000, qn=-8, qp=7)
    with pytest.raises(ValueError, match="bounds"):
        NeuronArray(**base, theta=5, qn=1, qp=7)
    with pytest.raises(ValueError, match="state_select"):
        NeuronArray(**base, state_select="yes")


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "theta_sign"])
def test_neuron_array_fast_mutation(mutant, monkeypatch):
    """Mutation: the ``±Θ`` select of the D adder (``_SEL_PM_THETA``) takes the wrong sign, so a
    firing neuron's membrane moves the wrong way: the spikes must differ."""
    from equispike.sim.mutation import must_fail

    if mutant:
        monkeypatch.setattr("equispike.rtl.neuron._SEL_PM_THETA", lambda b, c, d: d & (b ^ c))
    cfg = random_config(4, **FAST)
    cur = random_currents(np.random.default_rng(4), cfg, 25)
    with must_fail(mutant):
        compare_all("mutation", golden_run(cfg, cur), amaranth_run(cfg, cur, bp=0.3, seed=3))
