"""Formal proofs (SymbiYosys, Yices) of the RTL blocks: ``pytest -m formal`` / ``make formal``.

The fast subset runs in ``make test``; the deeper bounds and the cover traces are marked
``formal_full`` as well (``make formal`` runs everything). Every proof family has a deliberately
broken twin that must be reported as failing, so no proof here passes vacuously.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from equispike.formal.contract import HoldOnlyOnce, StreamContractProof, contract_blocks
from equispike.formal.engine import BROKEN_ENGINE, EngineProof
from equispike.formal.neuron import BROKEN_NEURON, NeuronLaneProof, stbif_update
from equispike.formal.run import run_sby
from equispike.model.neurons import STBIFArray

pytestmark = pytest.mark.formal
full = pytest.mark.formal_full

#: neuron lane configurations: small widths keep the bounded proofs fast
NEURON_CFGS = {
    "signed_theta3_select": dict(theta=3, current_width=3, cum_bound=8, state_select=True),
    "unsigned_theta1_plain": dict(theta=1, signed_site=False, current_width=3, cum_bound=8,
                                  state_select=False),
    "signed_theta5_select": dict(theta=5, current_width=4, cum_bound=12, state_select=True),
}
#: cycles: the clear pass after start-up and the 16-cycle latency put the first write-back of a
#: neuron at cycle 28 and its first spike at 32; a neuron is updated every 10 cycles after that
NEURON_DEPTH_FAST, NEURON_DEPTH_FULL = 40, 45
ENGINE_DEPTH_FAST, ENGINE_DEPTH_FULL = 26, 30
#: blocks whose stream-rule proof closes by k-induction (unbounded); the others are bounded
INDUCTIVE = ("softmax", "layernorm", "spike_product", "sdsa1", "sdsa3", "expander")
CONTRACT_BMC_DEPTH = 40   # past the first output beat of each bounded block (cover)
#: cover bounds: the first beat of the softmax unit comes at cycle 44, the LayerNorm unit's at 65
COVER_DEPTH = {"softmax": 50, "layernorm": 70}


def _verdict(r) -> str:
    return (f"{r.name}: {r.status} ({r.mode}, depth {r.depth}, {r.seconds:.1f} s), failing: "
            f"{list(r.failed)} at step {r.step}; log {r.workdir}")


def _passes(r) -> None:
    assert r.status == "PASS", _verdict(r)


def _fails(r) -> None:
    # a genuine counterexample: a failed assertion at a step, not a tool error
    assert r.status == "FAIL" and r.failed and r.step is not None, _verdict(r)


# ---- the reference the lane is proven against == the golden model ---------------------------
@pytest.mark.parametrize("cfg", list(NEURON_CFGS))
def test_stbif_reference_equals_model(cfg):
    """:func:`stbif_update` (the proofs' reference) equals ``model.neurons.STBIFArray.step`` on
    every (V, S, I) of the proof's ranges."""
    proof = NeuronLaneProof(**NEURON_CFGS[cfg])
    th, qn, qp = proof.theta, proof.qn, proof.qp
    cw = proof.dut.current_width
    vs = range(proof.v_lo, proof.v_hi + 1)
    ss = range(qn, qp + 1)
    cs = range(-(1 << (cw - 1)), 1 << (cw - 1))
    m = Module()
    v, s, i = Signal(signed(10)), Signal(signed(6)), Signal(signed(cw))
    vn, sn, sp = Signal(signed(11)), Signal(signed(7)), Signal(signed(2))
    nv, ns, nsp = stbif_update(v, s, i, th, qn, qp)
    m.d.comb += [vn.eq(nv), sn.eq(ns), sp.eq(nsp)]
    cases = [(a, b, c) for a in vs for b in ss for c in cs]
    got = []

    async def bench(ctx):
        for a, b, c in cases:
            ctx.set(v, a)
            ctx.set(s, b)
            ctx.set(i, c)
            got.append((ctx.get(vn), ctx.get(sn), ctx.get(sp)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    arr = np.array(cases, dtype=np.int64)
    ref = STBIFArray((len(cases),), th, qn, qp)
    ref.V = arr[:, 0].copy()
    ref.S = arr[:, 1].astype(ref.s_dtype)
    spikes = ref.step(arr[:, 2])
    exp = list(zip(ref.V.tolist(), ref.S.tolist(), spikes.tolist(), strict=True))
    bad = [(cases[k], exp[k], got[k]) for k in range(len(cases)) if exp[k] != got[k]]
    assert len(got) == len(cases) >= 500
    assert not bad, f"{len(bad)} of {len(cases)} differ; first (V, S, I), model, reference: {bad[0]}"


# ---- ST-BIF lane -----------------------------------------------------------------------------
def test_neuron_lane_bmc_fast():
    _passes(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"]), "neuron_fast",
                    depth=NEURON_DEPTH_FAST))


@full
@pytest.mark.parametrize("cfg", list(NEURON_CFGS))
def test_neuron_lane_bmc(cfg):
    _passes(run_sby(NeuronLaneProof(**NEURON_CFGS[cfg]), f"neuron_{cfg}", depth=NEURON_DEPTH_FULL))


@full
def test_neuron_lane_bmc_free_reset():
    _passes(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"], free_reset=True),
                    "neuron_free_reset", depth=NEURON_DEPTH_FAST + 4))


@pytest.mark.parametrize("broken", [b for b in BROKEN_NEURON if b != "rule"])
def test_neuron_lane_broken_property_fails(broken):
    _fails(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"], broken=broken),
                   f"neuron_broken_{broken}", depth=NEURON_DEPTH_FAST))


@full
def test_neuron_lane_broken_rule_fails():
    # a reference with Qp + 1: caught once the watched tracer reaches Qp (a few updates)
    _fails(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"], broken="rule"),
                   "neuron_broken_rule", depth=60))


@full
def test_neuron_lane_invariants_bmc():
    """The invariants meant for k-induction (``invariants=True``: the watched state word, every
    spike held in the output queue, the pipeline's counters and pointers against the shadow
    state) hold in every reachable state within the bound."""
    _passes(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"], invariants=True),
                    "neuron_invariants", depth=NEURON_DEPTH_FAST))


@full
def test_neuron_lane_invariants_broken_fails():
    # with the invariants added, a broken lane property is still caught
    _fails(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"], invariants=True,
                                   broken="invariant"), "neuron_invariants_broken",
                   depth=NEURON_DEPTH_FAST))


@full
def test_neuron_lane_cover():
    """The bounded proof is not vacuous: within the bound the watched neuron fires +1 and -1,
    and has its state checked at a run of updates with the tracer at Qp."""
    _passes(run_sby(NeuronLaneProof(**NEURON_CFGS["signed_theta3_select"]), "neuron_cover",
                    mode="cover", depth=60))


# ---- spike-addition engine --------------------------------------------------------------------
def test_engine_bmc_fast():
    _passes(run_sby(EngineProof(), "engine_fast", depth=ENGINE_DEPTH_FAST))


@full
@pytest.mark.parametrize("kw,depth", [(dict(), ENGINE_DEPTH_FULL),
                                      (dict(with_bias=False, seed=1), ENGINE_DEPTH_FULL),
                                      # (one chunk per row: an event per cycle, a harder bound)
                                      (dict(lanes=4, seed=2), ENGINE_DEPTH_FAST + 2)],
                         ids=["bias_2chunks", "nobias", "1chunk"])
def test_engine_bmc(kw, depth):
    name = "engine_" + "_".join(f"{k}{v}" for k, v in kw.items())
    _passes(run_sby(EngineProof(**kw), name, depth=depth))


@pytest.mark.parametrize("broken", BROKEN_ENGINE)
def test_engine_broken_property_fails(broken):
    _fails(run_sby(EngineProof(broken=broken), f"engine_broken_{broken}", depth=ENGINE_DEPTH_FAST))


@full
def test_engine_cover():
    _passes(run_sby(EngineProof(), "engine_cover", mode="cover", depth=ENGINE_DEPTH_FULL))


# ---- RFC 61 stream rules on every block's output ---------------------------------------------
@pytest.mark.parametrize("block", list(contract_blocks()))
def test_stream_rules(block):
    dut, assume = contract_blocks()[block]()
    proof = StreamContractProof(dut, assume=assume)
    if block in INDUCTIVE:
        r = run_sby(proof, f"stream_{block}", mode="prove", depth=6)
    else:
        r = run_sby(proof, f"stream_{block}", depth=CONTRACT_BMC_DEPTH)
    _passes(r)


def test_stream_rules_broken_producer_fails():
    _fails(run_sby(StreamContractProof(HoldOnlyOnce()), "stream_broken", mode="prove", depth=6))


@full
@pytest.mark.parametrize("block", list(contract_blocks()))
def test_stream_rules_cover(block):
    """Each block delivers a beat and holds one under back-pressure within the bound."""
    dut, assume = contract_blocks()[block]()
    _passes(run_sby(StreamContractProof(dut, assume=assume), f"stream_cover_{block}",
                    mode="cover", depth=COVER_DEPTH.get(block, 40)))
