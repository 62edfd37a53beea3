"""Formal proof wrapper of :class:`~equispike.rtl.engine.SpikeAdditionEngine`."""

from __future__ import annotations

import numpy as np
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Assert, Assume, Const, Cover, Elaboratable, Module, Mux, Signal, signed
from amaranth.lib import data

from ..rtl.engine import SpikeAdditionEngine, required_acc_width
from ._shadow import ShadowQueue, assert_stream_rules

__all__ = ["EngineProof", "BROKEN_ENGINE", "proof_weights"]

#: deliberately broken properties, each a proof that must fail
BROKEN_ENGINE = ("weight", "bias", "zero")


def proof_weights(n_in: int, n_out: int, seed: int, with_bias: bool):
    """Small int8 weights ``(n_in, n_out)`` and a bias for the engine proofs (fixed seed; the
    weights include both extremes, -128 and 127)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(n_in, n_out))
    w.flat[0], w.flat[-1] = -128, 127
    b = rng.integers(-300, 301, size=n_out) if with_bias else np.zeros(n_out, dtype=np.int64)
    return w, b


class EngineProof(Elaboratable):
    """A small :class:`SpikeAdditionEngine` with free inputs and its step currents as assertions.

    Every cycle the event stream (valid, payload), ``o_stream.ready``, ``clear`` and reset are
    arbitrary. Assumed, as the width analysis does (``required_acc_width``): event indices and
    vectors in range, and within a step each input of a vector spikes at most once (one event
    per ``(vector, index)``). One output word ``(v*, c*)`` (a free constant) is watched.
    Asserted, for every step in order (the model: ``model.linear.aw_step``,
    ``I_c = Σ_j W_jc·s_j`` plus ``b_c`` on the first step after ``clear``/reset):

    * the watched current read out equals the sum of the step's events of vector ``v*``;
    * the readout's beat structure (compact protocol): a touched vector (an event, or the bias
      on the first step) as ``chunks`` beats with ``zero = 0``, an untouched one as one beat
      with ``zero = 1`` and all lanes 0; padding lanes 0; no beat that no step accounts for;
    * ``o_stream`` follows the RFC 61 stream rules (``clear`` and reset restart it);
    * the engine's own sequencer invariants (``check_invariants``).

    ``broken`` names one property to break on purpose (:data:`BROKEN_ENGINE`): the proof must
    fail.
    """

    def __init__(self, *, n_in: int = 3, n_out: int = 3, lanes: int = 2, n_vectors: int = 2,
                 seed: int = 0, with_bias: bool = True, broken: str | None = None):
        if broken not in (None, *BROKEN_ENGINE):
            raise ValueError(f"broken must be None or one of {BROKEN_ENGINE}, got {broken!r}")
        self.broken = broken
        self.weights, self.bias = proof_weights(n_in, n_out, seed, with_bias)
        self.dut = SpikeAdditionEngine(self.weights, self.bias, lanes=lanes, n_vectors=n_vectors,
                                       acc_width=required_acc_width(self.weights, self.bias))
        self.dut.check_invariants = True

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut = dut
        P, C, V, W = dut.lanes, dut.chunks, dut.n_vectors, dut.acc_width
        n_in, n_out = dut.n_in, dut.n_out
        ist, ost = dut.i_stream, dut.o_stream
        m.d.comb += [ist.valid.eq(AnySeq(1)), ist.payload.eq(AnySeq(len(ist.payload.as_value()))),
                     ost.ready.eq(AnySeq(1)), dut.clear.eq(AnySeq(1))]
        restart = dut.clear
        ev = ist.payload
        with m.If(ist.valid & ~ev.eos):
            m.d.comb += Assume((ev.index < n_in) & (ev.vector < V))

        v_star = Signal(range(max(V, 2)))
        c_star = Signal(range(max(n_out, 2)))
        m.d.comb += [v_star.eq(AnyConst(len(v_star))), c_star.eq(AnyConst(len(c_star))),
                     Assume((v_star < V) & (c_star < n_out))]
        wv = self.weights.astype(np.int64)
        if self.broken == "weight":
            wv = wv.copy()
            wv[-1, -1] -= 1
        w_tab = Array(Const(int(wv[j, c]), signed(9)) for j in range(n_in) for c in range(n_out))
        b_tab = Array(Const(int(b) + (1 if self.broken == "bias" else 0), signed(W + 1))
                      for b in self.bias)
        bias_touch = int(np.any(self.bias != 0))

        accept = ist.valid & ist.ready
        deliver = ost.valid & ost.ready
        ev_in = accept & ~ev.eos
        step_end = accept & ev.eos
        acc = Signal(signed(W + 1))             # the watched current of the step so far
        first = Signal(init=1)                  # the step is the first after clear/reset
        touched = Signal(V)                     # vectors with an event this step
        seen = Signal(max(n_in, 2))             # inputs of v* that spiked this step
        w_sel = Signal(signed(9))
        m.d.comb += w_sel.eq(w_tab[ev.index * n_out + c_star])
        with m.If(ev_in & (ev.vector == v_star)):
            m.d.comb += Assume(~seen.bit_select(ev.index, 1))
        acc_next = Mux(ev.neg, acc - w_sel, acc + w_sel)
        step_l = data.StructLayout({"cur": signed(W + 1), "touched": V})
        sq = ShadowQueue(m, step_l, 8, "step")
        m.d.comb += [sq.push.eq(step_end), sq.flush.eq(restart),
                     sq.data.cur.eq(acc + Mux(first, b_tab[c_star], 0)),
                     sq.data.touched.eq(touched | Mux(first & bias_touch, (1 << V) - 1, 0))]
        with m.If(restart):
            m.d.sync += [acc.eq(0), first.eq(1), touched.eq(0), seen.eq(0)]
        with m.Elif(step_end):
            m.d.sync += [acc.eq(0), first.eq(0), touched.eq(0), seen.eq(0)]
        with m.Elif(ev_in):
            m.d.sync += touched.bit_select(ev.vector, 1).eq(1)
            with m.If(ev.vector == v_star):
                m.d.sync += [acc.eq(acc_next), seen.bit_select(ev.index, 1).eq(1)]

        # readout: vector o_vec, chunk o_chunk of the step at the queue's front
        o_vec = Signal(range(max(V, 2)))
        o_chunk = Signal(range(max(C, 2)))
        front = data.View(step_l, sq.front)
        full = front.touched.bit_select(o_vec, 1)
        pay = ost.payload
        lanes = pay.lanes
        last_vec = o_vec == V - 1
        vec_done = ~full | (o_chunk == C - 1)
        m.d.comb += sq.pop.eq(deliver & last_vec & vec_done)
        zero_flag = ~full if self.broken != "zero" else full
        lane_sel = Signal(range(max(P, 2)))
        m.d.comb += lane_sel.eq(c_star - o_chunk * P)
        with m.If(deliver):
            m.d.comb += [Assert(sq.count != 0, "engine: a readout beat no step accounts for"),
                         Assert(pay.zero == zero_flag, "engine: zero flag differs from the step")]
            with m.If(~full):
                m.d.comb += Assert(lanes.as_value() == 0, "engine: a zero beat with nonzero lanes")
            with m.If(full & (o_vec == v_star) & (o_chunk * P <= c_star) & (c_star < o_chunk * P + P)):
                m.d.comb += Assert(lanes[lane_sel] == front.cur,
                                   "engine: current differs from the model")
            with m.If(full & (o_chunk == C - 1)):
                for lane in range(n_out - (C - 1) * P, P):
                    m.d.comb += Assert(lanes[lane] == 0, "engine: padding lane not 0")
        with m.If(restart):
            m.d.sync += [o_vec.eq(0), o_chunk.eq(0)]
        with m.Elif(deliver):
            with m.If(vec_done):
                m.d.sync += [o_chunk.eq(0), o_vec.eq(Mux(last_vec, 0, o_vec + 1))]
            with m.Else():
                m.d.sync += o_chunk.eq(o_chunk + 1)
        assert_stream_rules(m, ost, "engine.o_stream", restart=restart)
        # reachability (cover mode): a watched current with both an event and the bias, a second
        # step's current, a step with a negative event
        n_steps = Signal(range(4))
        with m.If(restart):
            m.d.sync += n_steps.eq(0)
        with m.Elif(step_end & (n_steps != 3)):
            m.d.sync += n_steps.eq(n_steps + 1)
        checked = deliver & full & (o_vec == v_star) & (o_chunk * P <= c_star) & (c_star < o_chunk * P + P)
        m.d.comb += [Cover(checked & (front.cur != 0) & (n_steps >= 2)),
                     Cover(ev_in & ev.neg & (ev.vector == v_star) & (acc != 0))]
        return m
