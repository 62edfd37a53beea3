"""Attention datapaths (rtl/attention.py) vs the golden model, every output of every step.

* SESA (:class:`SpikeProductUnit`) vs :class:`~equispike.model.sesa.SpikeProduct`: Q·Kᵀ and attn·V
  of block 0 of a factory model from its recorded spikes (cross-checked against the recorded
  ``after_attn`` current), random ternary spikes and an extreme stimulus driving the running sums
  to their bounds with dense same-sign spikes.
* SDSA-3 (:class:`SDSAUnit`, ``mode=3``) vs :class:`~equispike.model.sdsa.SDSA3` (dense stimulus for
  saturation at 8, LIF over many steps); SDSA-1 vs :func:`~equispike.model.sdsa.sdsa1`.

One file: Amaranth-simulator tests, cocotb testbench coroutines and the pytest launcher (three
Verilator builds: Q·Kᵀ, attn·V, SDSA-3).
"""

from __future__ import annotations

import functools

import cocotb
import numpy as np
import pytest

from equispike.model.factory import random_images, random_vit
from equispike.model.sdsa import SDSA3, coactivation, sdsa1
from equispike.model.sesa import SpikeProduct
from equispike.model.vit import ViTSNN
from equispike.model.widths import analyze
from equispike.rtl.attention import SDSAUnit, SpikeProductUnit
from equispike.sim.amaranth_tb import get_stream, put_stream, run_testbenches
from equispike.sim.norm_support import measure_stream
from equispike.sim.scoreboard import Scoreboard

SITES = {"qk": "blocks.0.scores", "av": "blocks.0.after_attn"}


# --------------------------------------------------------------------------------------------------
# stimulus, protocol encoding and golden
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def factory_model(worst_case: bool = False, seed: int = 3, dim: int = 32):
    art = random_vit(seed, depth=1, dim=dim, heads=2, worst_case=worst_case)
    return art, analyze(art)


#: SDSA-3 is tested (Verilator) on a narrower model: its M array grows as dim · head_dim.
SDSA_DIM = 16


@functools.lru_cache(maxsize=4)
def model_run(worst_case: bool = False, dim: int = 32):
    art, _ = factory_model(worst_case, dim=dim)
    res = ViTSNN(art).run(random_images(17, art, 1), record={
        "blocks.0.q", "blocks.0.k", "blocks.0.v", "blocks.0.attn", "blocks.0.after_attn"})
    return res.records


def make_sesa(which: str) -> SpikeProductUnit:
    art, rep = factory_model()
    return SpikeProductUnit.for_block(art, 0, which, report=rep)


def _heads(x, H):
    """(B, N, D) -> (B, H, N, D/H) (the model's head split)."""
    B, N, D = x.shape
    return x.reshape(B, N, H, D // H).transpose(0, 2, 1, 3)


def model_operands(which: str, worst_case: bool = False):
    """Per-step operands ``a(t)``, ``b(t)`` (T, 1, H, ...) of block 0 from the recorded spikes."""
    art, _ = factory_model(worst_case)
    rec, H = model_run(worst_case), art.dims.heads
    v = _heads_t(rec["blocks.0.v"]["spikes"], H)
    if which == "qk":
        return _heads_t(rec["blocks.0.q"]["spikes"], H), _heads_t(rec["blocks.0.k"]["spikes"], H)
    return rec["blocks.0.attn"]["spikes"], v


def _heads_t(x, H):
    return np.stack([_heads(x[t], H) for t in range(len(x))])


def bounded_spikes(rng, steps, shape, bound, density, bias=0.0):
    """Ternary spikes whose running sum stays in ``[-bound, bound]``; ``bias`` > 0 favours +1."""
    S = np.zeros(shape, dtype=np.int64)
    out = np.zeros((steps, *shape), dtype=np.int8)
    for t in range(steps):
        b = bias if t < steps // 2 else -bias
        p_pos = density * (0.5 + b / 2)
        s = rng.choice([-1, 0, 1], size=shape, p=[density - p_pos, 1 - density, p_pos])
        s[(S + s > bound) | (S + s < -bound)] = 0
        S += s
        out[t] = s
    return out


def random_operands(unit: SpikeProductUnit, kind: str, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    a_shape = (1, unit.heads, unit.n, unit.k)
    b_shape = (1, unit.heads, unit.m, unit.k) if unit.transpose_b else (1, unit.heads, unit.k,
                                                                        unit.m)
    dens, bias = (0.25, 0.0) if kind == "random" else (0.95, 0.9)
    a = bounded_spikes(rng, steps, a_shape, unit.a_max, dens, bias)
    b = bounded_spikes(rng, steps, b_shape, unit.b_max, dens, bias)
    if kind == "random":
        a[2:4] = 0
        b[2:4] = 0  # all-zero steps (empty frames)
    return a, b


def golden_sesa(unit: SpikeProductUnit, a, b):
    sp = SpikeProduct(a.shape[1:], b.shape[1:], transpose_b=unit.transpose_b)
    return np.stack([sp.step(a[t], b[t])[0] for t in range(len(a))])


def sesa_frames(a, b):
    """Event beats of every (step, head) frame: b events first, then a events (protocol)."""
    beats = []
    for t in range(a.shape[0]):
        for h in range(a.shape[2]):
            fr = [{"b": 1, "row": int(r), "col": int(c), "sign": int(b[t, 0, h, r, c])}
                  for r, c in np.argwhere(b[t, 0, h])]
            fr += [{"b": 0, "row": int(r), "col": int(c), "sign": int(a[t, 0, h, r, c])}
                   for r, c in np.argwhere(a[t, 0, h])]
            if not fr:
                fr = [{"sign": 0}]
            fr[-1]["last"] = 1
            beats += fr
    return beats


def bits(row) -> int:
    return int(sum(int(v) << i for i, v in enumerate(row)))


def sdsa_beats(q, k, v):
    return [{"q": bits(q[t, 0, n]), "k": bits(k[t, 0, n]), "v": bits(v[t, 0, n])}
            for t in range(q.shape[0]) for n in range(q.shape[2])]


def sdsa_operands(kind: str, steps: int, tokens: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "model":  # binary stand-in: the positive spikes of a factory model's q, k, v
        rec = model_run(dim=dim)
        return tuple((rec[f"blocks.0.{s}"]["spikes"] > 0).astype(np.int8) for s in "qkv")
    dens = {"sparse": (0.25, 0.4, 0.4), "dense": (0.6, 0.8, 0.8)}[kind]
    return tuple((rng.random((steps, 1, tokens, dim)) < d).astype(np.int8) for d in dens)


def golden_sdsa(mode, heads, q, k, v):
    if mode == 1:
        return np.stack([sdsa1(q[t], k[t], v[t])[0] for t in range(len(q))])
    op = SDSA3(q.shape[1:], heads)
    return np.stack([op.step(q[t], k[t], v[t])[0] for t in range(len(q))])


def unbits(x, dim):
    return [(x >> c) & 1 for c in range(dim)]


# --------------------------------------------------------------------------------------------------
# Amaranth simulator
# --------------------------------------------------------------------------------------------------
@pytest.mark.sim
@pytest.mark.parametrize("transpose_b", [True, False], ids=["qk", "av"])
@pytest.mark.parametrize("kind,idle,bp", [("random", 0.4, 0.5), ("extreme", 0.0, 0.0)])
def test_pysim_sesa(transpose_b, kind, idle, bp):
    unit = SpikeProductUnit(2, 5, 3, 4, transpose_b, 7, 8)
    a, b = random_operands(unit, kind, 12, seed=2)
    exp = golden_sesa(unit, a, b)
    out: list = []
    run_testbenches(unit, put_stream(unit.i_stream, sesa_frames(a, b), idle_prob=idle, seed=1),
                    get_stream(unit.o_stream, exp.size, out, backpressure_prob=bp, seed=2))
    got = np.array([o["data"] for o in out]).reshape(exp.shape)
    assert all(o["last"] == ((i + 1) % (unit.n * unit.m) == 0) for i, o in enumerate(out))
    sb = Scoreboard("sesa")
    for t in range(len(exp)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)
    if kind == "extreme":
        assert np.abs(exp).max() >= unit.acc_bound // 2


@pytest.mark.sim
@pytest.mark.parametrize("mode", [1, 3])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_pysim_sdsa(mode, kind):
    tokens, dim, heads = 9, 8, 2
    unit = SDSAUnit(mode, tokens, dim, heads)
    q, k, v = sdsa_operands(kind, 8, tokens, dim, seed=5)
    exp = golden_sdsa(mode, heads, q, k, v)
    out: list = []
    run_testbenches(unit, put_stream(unit.i_stream, sdsa_beats(q, k, v), idle_prob=0.3, seed=1),
                    get_stream(unit.o_stream, len(q) * tokens, out, backpressure_prob=0.3, seed=2))
    got = np.array([unbits(o["s"], dim) for o in out]).reshape(exp.shape)
    sb = Scoreboard(f"sdsa{mode}")
    for t in range(len(exp)):
        sb.compare(t, exp[t], got[t])
    sb.require(exp.size)
    if kind == "dense" and mode == 3:
        assert (coactivation(k[0], v[0], heads) == 8).any()  # saturation exercised


@pytest.mark.sim
def test_pysim_sesa_latency():
    unit = SpikeProductUnit(1, 3, 2, 3, True, 4, 4)
    a = np.zeros((1, 1, 1, 3, 2), dtype=np.int8)
    b = np.zeros((1, 1, 1, 3, 2), dtype=np.int8)
    a[0, 0, 0, :, 0] = 1
    b[0, 0, 0, :2, 1] = -1
    frames = sesa_frames(a, b)
    in_c, out_c, _ = measure_stream(unit, frames, unit.n * unit.m)
    assert out_c[-1] - in_c[0] + 1 == unit.cycles_per_frame(len(frames)), (in_c, out_c)


def test_parameter_validation():
    with pytest.raises(ValueError, match="mode must be 1"):
        SDSAUnit(2, 4, 8)
    with pytest.raises(ValueError, match="heads \\(3\\) must divide dim"):
        SDSAUnit(3, 4, 8, 3)
    with pytest.raises(TypeError, match="transpose_b must be a bool"):
        SpikeProductUnit(1, 2, 2, 2, 1, 4, 4)
    with pytest.raises(ValueError, match="a_max must be >= 1"):
        SpikeProductUnit(1, 2, 2, 2, True, 0, 4)


def test_model_operands_match_recorded_after_attn():
    """Golden SESA on the recorded attn, v spikes reproduces the recorded after_attn current."""
    unit = make_sesa("av")
    a, b = model_operands("av")
    got = golden_sesa(unit, a, b)  # (T, H, N, dh)
    cur = model_run()["blocks.0.after_attn"]["current"][:, 0]
    T, H, N, dh = got.shape
    assert (got.transpose(0, 2, 1, 3).reshape(T, N, H * dh) == cur).all()
    assert unit.acc_width >= factory_model()[1].bits["blocks.0.after_attn.current"]
    assert make_sesa("qk").acc_width >= factory_model()[1].bits["blocks.0.scores.step"]


# --------------------------------------------------------------------------------------------------
# cocotb testbenches (Verilator)
# --------------------------------------------------------------------------------------------------
@cocotb.test()
@cocotb.parametrize(stim=["model", "model_worst", "random", "extreme"], flow=[(0.0, 0.0),
                                                                              (0.3, 0.4)])
async def sesa_stream(dut, stim, flow):
    from equispike.sim import StreamDriver, StreamMonitor, tb_config
    from equispike.sim.norm_support import start_clock_and_reset

    cfg = tb_config("unit", "steps", "seed")
    if cfg["unit"] not in SITES:
        raise ValueError(f"sesa_stream runs on the units {list(SITES)}, got {cfg['unit']!r}")
    unit = make_sesa(cfg["unit"])
    if stim.startswith("model"):
        a, b = model_operands(cfg["unit"], worst_case=stim == "model_worst")
    else:
        a, b = random_operands(unit, stim, cfg["steps"], seed=cfg["seed"])
    exp = golden_sesa(unit, a, b)
    await start_clock_and_reset(dut)
    drv = StreamDriver(dut, dut.clk, "i_stream", unit.i_stream.payload.shape(),
                       idle_prob=flow[0], seed=cfg["seed"])
    mon = StreamMonitor(dut, dut.clk, "o_stream", unit.o_stream.payload.shape(),
                        backpressure_prob=flow[1], seed=cfg["seed"] + 1, expected=exp.size)
    frames = sesa_frames(a, b)
    for beat in frames:
        drv.send(beat)
    sb = Scoreboard(SITES[cfg["unit"]])
    per_step = exp[0].size
    frame = unit.n * unit.m
    for t in range(len(exp)):
        await mon.wait_for((t + 1) * per_step)
        beats = [mon.items.popleft() for _ in range(per_step)]
        assert [x["last"] for x in beats] == [int((i + 1) % frame == 0) for i in range(per_step)]
        sb.compare(t, exp[t], [x["data"] for x in beats])
    await mon.finish()
    drv.stop()
    sb.require(exp.size)
    dut._log.info("%s (%s, flow=%s, %d events)", sb.summary(), stim, flow, len(frames))


@cocotb.test()
@cocotb.parametrize(stim=["model", "sparse", "dense"], flow=[(0.0, 0.0), (0.3, 0.4)])
async def sdsa3_stream(dut, stim, flow):
    from equispike.sim import StreamDriver, StreamMonitor, tb_config
    from equispike.sim.norm_support import start_clock_and_reset

    cfg = tb_config("unit", "steps", "seed")
    if cfg["unit"] != "sdsa3":
        raise ValueError(f"sdsa3_stream runs on the unit 'sdsa3', got {cfg['unit']!r}")
    art, _ = factory_model(dim=SDSA_DIM)
    d = art.dims
    unit = SDSAUnit(3, d.tokens, d.dim, d.heads)
    q, k, v = sdsa_operands(stim, cfg["steps"], d.tokens, d.dim, seed=cfg["seed"])
    exp = golden_sdsa(3, d.heads, q, k, v)
    await start_clock_and_reset(dut)
    drv = StreamDriver(dut, dut.clk, "i_stream", unit.i_stream.payload.shape(),
                       idle_prob=flow[0], seed=cfg["seed"])
    mon = StreamMonitor(dut, dut.clk, "o_stream", unit.o_stream.payload.shape(),
                        backpressure_prob=flow[1], seed=cfg["seed"] + 1,
                        expected=len(exp) * d.tokens)
    for beat in sdsa_beats(q, k, v):
        drv.send(beat)
    sb = Scoreboard("sdsa3.attn")
    for t in range(len(exp)):
        await mon.wait_for((t + 1) * d.tokens)
        beats = [mon.items.popleft() for _ in range(d.tokens)]
        assert [x["last"] for x in beats] == [0] * (d.tokens - 1) + [1]
        sb.compare(t, exp[t], [unbits(x["s"], d.dim) for x in beats])
    await mon.finish()
    drv.stop()
    sb.require(exp.size)
    sat = int((np.stack([coactivation(k[t], v[t], d.heads) for t in range(len(k))]) == 8).sum())
    dut._log.info("%s (%s, flow=%s, %d saturated M entries, %d spikes out)", sb.summary(), stim,
                  flow, sat, int(exp.sum()))


@pytest.mark.sim
@pytest.mark.parametrize("which", ["qk", "av", "sdsa3"])
def test_attention_verilator(request, which):
    from equispike.sim import build_dir_for, run_cocotb

    if which == "sdsa3":
        art, _ = factory_model(dim=SDSA_DIM)
        unit = SDSAUnit(3, art.dims.tokens, art.dims.dim, art.dims.heads)
        tests = "sdsa3_stream"
    else:
        unit = make_sesa(which)
        tests = "sesa_stream"
    run_cocotb(unit, test_module="equispike.tests.test_attention",
               build_dir=build_dir_for(request.node.nodeid), test_filter=tests,
               config={"unit": which, "steps": 16, "seed": 8})


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "narrow_acc"])
def test_pysim_sesa_mutation(mutant, monkeypatch):
    """Mutation: the running sums two bits narrower than their bound needs: the extreme stimulus
    must wrap and differ. (One bit is not enough to be seen: this stimulus reaches |30| of the
    bound 45, inside 6 bits.)"""
    from equispike.sim.mutation import must_fail

    if mutant:
        init = SpikeProductUnit.__init__

        def narrow(self, *a, **k):
            init(self, *a, **k)
            self.acc_width -= 2
        monkeypatch.setattr(SpikeProductUnit, "__init__", narrow)
    unit = SpikeProductUnit(2, 5, 3, 4, True, 7, 8)
    a, b = random_operands(unit, "extreme", 12, seed=2)
    exp = golden_sesa(unit, a, b)
    with must_fail(mutant):
        out: list = []
        run_testbenches(unit, put_stream(unit.i_stream, sesa_frames(a, b), seed=1),
                        get_stream(unit.o_stream, exp.size, out, backpressure_prob=0.3, seed=2))
        sb = Scoreboard("sesa")
        sb.compare(0, exp, np.array([o["data"] for o in out]).reshape(exp.shape))
        sb.require(exp.size)


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "theta_plus_one"])
def test_pysim_sdsa_mutation(mutant, monkeypatch):
    """Mutation: SDSA-3's attention-LIF threshold one above the model's ``SDSA_THETA``: the
    spikes must differ (dense stimulus; SDSA-1 has no threshold)."""
    from equispike.model.sdsa import SDSA_THETA
    from equispike.sim.mutation import must_fail

    if mutant:
        monkeypatch.setattr("equispike.rtl.attention.SDSA_THETA", SDSA_THETA + 1)
    tokens, dim, heads = 9, 8, 2
    for mode in (3,):
        unit = SDSAUnit(mode, tokens, dim, heads)
        q, k, v = sdsa_operands("dense", 8, tokens, dim, seed=5)
        exp = golden_sdsa(mode, heads, q, k, v)
        with must_fail(mutant):
            out: list = []
            run_testbenches(unit, put_stream(unit.i_stream, sdsa_beats(q, k, v), seed=1),
                            get_stream(unit.o_stream, len(q) * tokens, out, seed=2))
            sb = Scoreboard(f"sdsa{mode}")
            sb.compare(0, exp, np.array([unbits(o["s"], dim) for o in out]).reshape(exp.shape))
            sb.require(exp.size)
