"""Formal proof wrapper of one ST-BIF lane of :class:`~equispike.rtl.neuron.NeuronArray`."""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import (
    Array,
    Assert,
    Assume,
    Const,
    Cover,
    Elaboratable,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.lib import data

from ..model.neurons import site_bounds
from ..model.widths import signed_bits
from ..rtl._bram import RegisteredRAM
from ..rtl.neuron import NeuronArray
from ._shadow import ShadowQueue, assert_stream_rules

__all__ = ["NeuronLaneProof", "stbif_update", "BROKEN_NEURON"]

#: deliberately broken properties, each a proof that must fail (the checks can fail)
BROKEN_NEURON = ("invariant", "rule", "tracer", "stream")


def stbif_update(v, s, i, theta: int, qn: int, qp: int):
    """The SPEC §2 ST-BIF step on Amaranth values (the reference the lane is proven against):
    ``(V', S', spike)``. Checked exhaustively against ``model.neurons.STBIFArray`` over the
    proofs' value ranges (``tests/test_formal.py``)."""
    h = v + i
    pos = (h >= theta) & (s < qp)
    neg = (h < 0) & (s > qn)
    v_next = Mux(pos, h - theta, Mux(neg, h + theta, h))
    s_next = Mux(pos, s + 1, Mux(neg, s - 1, s))
    spike = Mux(pos, Const(1, signed(2)), Mux(neg, Const(-1, signed(2)), Const(0, signed(2))))
    return v_next, s_next, spike


class NeuronLaneProof(Elaboratable):
    """A small ST-BIF :class:`NeuronArray` with free inputs and the lane properties as assertions.

    Every cycle the input stream (valid, payload), ``o_stream.ready``, ``clear`` and reset are
    arbitrary; the configuration port is idle (Θ, Qn, Qp are the generation-time values). One
    neuron ``n*`` (any of them: a free constant) is watched. Its input currents are the
    payload lanes of its beats; the only assumption on them is the one the width analysis
    makes (``model.widths``): every cumulative input ``ΣI`` is within ``±cum_bound``. Asserted:

    * at every update of ``n*`` (its state word written back to the state RAM, read at the
      RAM's write port): the tracer is in ``[Qn, Qp]``, ``V − floor(Θ/2) == ΣI − S·Θ``, and
      ``(V, S)`` equal the SPEC §2 rule (:func:`stbif_update`) applied to the currents
      accepted since the last ``clear``/reset;
    * every output spike of ``n*`` equals the rule's spike, in order; no output beat without
      an accepted input beat; padding lanes of the last beat are 0;
    * ``o_stream`` follows the RFC 61 stream rules (``clear`` and reset restart it).

    ``broken`` names one property to break on purpose (:data:`BROKEN_NEURON`): its proof must
    fail.
    """

    def __init__(self, *, theta: int = 5, levels: int = 4, signed_site: bool = True, lanes: int = 2,
                 n_neurons: int = 3, current_width: int = 4, cum_bound: int = 20,
                 state_select: bool = True, free_reset: bool = False, broken: str | None = None):
        if broken not in (None, *BROKEN_NEURON):
            raise ValueError(f"broken must be None or one of {BROKEN_NEURON}, got {broken!r}")
        self.broken = broken
        self.free_reset = bool(free_reset)
        self.theta = int(theta)
        self.qn, self.qp = site_bounds(levels, signed_site)
        self.cum_bound = int(cum_bound)
        # the membrane range the width analysis gives for this bound (V = floor(Θ/2) + ΣI − S·Θ)
        th = self.theta
        self.v_lo = th // 2 - self.cum_bound - self.qp * th
        self.v_hi = th // 2 + self.cum_bound - self.qn * th
        vw = max(signed_bits(self.v_lo, self.v_hi), th.bit_length() + 1, 3)
        self.dut = NeuronArray(lanes=lanes, n_neurons=n_neurons, mode="stbif",
                               current_width=current_width, membrane_width=vw, levels=levels,
                               theta=th, qn=self.qn, qp=self.qp, state_select=state_select)

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        P, N, B = dut.lanes, dut.n_neurons, dut.beats
        vw, sw, cw = dut.membrane_width, dut.tracer_width, dut.current_width
        th, qn, qp = self.theta, self.qn, self.qp
        # the array elaborated here, so that its state RAM's write port can be observed
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        rams = [sf.origins[0] for sf, name, _ in frag.subfragments if name == "state0"]
        assert len(rams) == 1 and isinstance(rams[0], RegisteredRAM) and P <= dut.state_group_lanes
        ram = rams[0]

        ist, ost = dut.i_stream, dut.o_stream
        m.d.comb += [ist.valid.eq(AnySeq(1)), ist.payload.eq(AnySeq(len(ist.payload.as_value()))),
                     ost.ready.eq(AnySeq(1)), dut.clear.eq(AnySeq(1)),
                     dut.cfg.en.eq(0), dut.cfg.addr.eq(0), dut.cfg.data.eq(0)]
        if not self.free_reset:
            # (``clear`` is free and restarts the array the same way, by the same clear pass)
            m.d.comb += Assume(~ResetSignal())
        restart = dut.clear
        accept = ist.valid & ist.ready
        deliver = ost.valid & ost.ready

        # the watched neuron: any index, its beat and lane
        n_star = Signal(range(N))
        m.d.comb += n_star.eq(AnyConst(range(N)))
        m.d.comb += Assume(n_star < N)
        w_beat = Signal(range(max(B, 2)))
        w_lane = Signal(range(max(P, 2)))
        m.d.comb += [w_beat.eq(Array(Const(i // P, range(max(B, 2))) for i in range(N))[n_star]),
                     w_lane.eq(Array(Const(i % P, range(max(P, 2))) for i in range(N))[n_star])]

        # input side: beat index within the step, the watched current, the reference
        ib = Signal(range(max(B, 2)))
        ob = Signal(range(max(B, 2)))
        outstanding = Signal(range(64))
        sum_w = signed_bits(-self.cum_bound, self.cum_bound) + 1
        sum_i = Signal(signed(sum_w))
        v_ref = Signal(signed(vw + 1), init=th // 2)
        s_ref = Signal(signed(sw + 1))
        cur = Signal(signed(cw))
        m.d.comb += cur.eq(ist.payload[w_lane])
        watched_in = accept & (ib == w_beat)
        sum_next = sum_i + cur
        # the width analysis' premise: cumulative input within ±cum_bound
        with m.If(watched_in):
            m.d.comb += Assume((sum_next >= -self.cum_bound) & (sum_next <= self.cum_bound))
        rule_qp = qp + 1 if self.broken == "rule" else qp
        v_next, s_next, spike = stbif_update(v_ref, s_ref, cur, th, qn, rule_qp)

        st = data.StructLayout({"v": signed(vw + 1), "s": signed(sw + 1), "sum": signed(sum_w)})
        wq = ShadowQueue(m, st, 4, "wb")           # expected state words (write-backs)
        sq = ShadowQueue(m, signed(2), 16, "spk")  # expected spikes
        flush = restart  # (reset clears the wrapper's registers themselves)
        m.d.comb += [wq.flush.eq(flush), sq.flush.eq(flush),
                     wq.push.eq(watched_in), sq.push.eq(watched_in),
                     wq.data.v.eq(v_next), wq.data.s.eq(s_next), wq.data.sum.eq(sum_next),
                     sq.data.eq(spike)]
        with m.If(restart):
            m.d.sync += [ib.eq(0), ob.eq(0), outstanding.eq(0), sum_i.eq(0), v_ref.eq(th // 2),
                         s_ref.eq(0)]
        with m.Else():
            with m.If(accept):
                m.d.sync += ib.eq(Mux(ib == B - 1, 0, ib + 1))
            with m.If(deliver):
                m.d.sync += ob.eq(Mux(ob == B - 1, 0, ob + 1))
            m.d.sync += outstanding.eq(outstanding + accept - deliver)
            with m.If(watched_in):
                m.d.sync += [sum_i.eq(sum_next), v_ref.eq(v_next), s_ref.eq(s_next)]
        m.d.comb += Assert(outstanding < 63, "neuron: wrapper counter overflow")

        # write-back of the watched beat: the RAM writes w_data two cycles after w_addr/w_en
        # (addr_regs=2); a write landing while the array is busy belongs to a clear pass or
        # was dropped by clear/reset (rewritten by the clear pass)
        dummy = ram.words - 1
        pw1 = Signal(range(ram.words), init=dummy, reset_less=True)
        pw2 = Signal(range(ram.words), init=dummy, reset_less=True)
        m.d.sync += [pw1.eq(Mux(ram.w_en, ram.w_addr, dummy)), pw2.eq(pw1)]
        lane_bits = len(ram.w_data) // P
        lane_st = (data.StructLayout({"d": signed(vw), "h": signed(vw), "k": 1, "s": signed(sw)})
                   if dut.state_select else data.StructLayout({"v": signed(vw), "s": signed(sw)}))
        assert lane_st.size == lane_bits
        words = Array(data.View(lane_st, ram.w_data[i * lane_bits:(i + 1) * lane_bits])
                      for i in range(P))
        hw_v = Signal(signed(vw))
        hw_s = Signal(signed(sw))
        lane_word = words[w_lane]
        if dut.state_select:
            m.d.comb += hw_v.eq(Mux(lane_word.k, lane_word.h, lane_word.d))
        else:
            m.d.comb += hw_v.eq(lane_word.v)
        m.d.comb += hw_s.eq(lane_word.s)
        landed = (pw2 == w_beat) & ~dut.busy
        m.d.comb += wq.pop.eq(landed)
        exp = data.View(st, wq.front)
        inv_off = 1 if self.broken == "invariant" else 0
        tr_qp = qp - 1 if self.broken == "tracer" else qp
        with m.If(landed):
            m.d.comb += [
                Assert(wq.count != 0, "neuron: a state word written without an update"),
                Assert((hw_s >= qn) & (hw_s <= tr_qp), "neuron: tracer outside [Qn, Qp]"),
                Assert(hw_v - th // 2 == exp.sum - hw_s * th + inv_off,
                       "neuron: V - floor(theta/2) != sum(I) - S*theta"),
                Assert((hw_v == exp.v) & (hw_s == exp.s), "neuron: state differs from the rule"),
            ]

        # output side: the watched spikes in order, padding lanes 0, no extra beats
        valid_last = N - (B - 1) * P
        m.d.comb += sq.pop.eq(deliver & (ob == w_beat))
        with m.If(deliver):
            m.d.comb += Assert(outstanding != 0, "neuron: output beat without an input beat")
            with m.If(ob == w_beat):
                m.d.comb += [Assert(sq.count != 0, "neuron: spike without an update"),
                             Assert(ost.payload[w_lane] == sq.front, "neuron: spike differs from the rule")]
            with m.If(ob == B - 1):
                for lane in range(valid_last, P):
                    m.d.comb += Assert(ost.payload[lane] == 0, "neuron: padding lane not 0")
        if self.broken == "stream":
            # an invented rule: valid may never fall (the array drops it after its last beat)
            p_valid = Signal()
            m.d.sync += p_valid.eq(ost.valid & ~restart)
            m.d.comb += Assert(~p_valid | ost.valid, "neuron: broken stream rule")
        assert_stream_rules(m, ost, "neuron.o_stream", restart=restart)

        # reachability (cover mode): both spike signs of the watched neuron, and a run of updates
        n_upd = Signal(range(16))
        with m.If(restart):
            m.d.sync += n_upd.eq(0)
        with m.Elif(landed & (n_upd != 15)):
            m.d.sync += n_upd.eq(n_upd + 1)
        m.d.comb += [Cover(deliver & (ob == w_beat) & (ost.payload[w_lane] == 1)),
                     Cover(deliver & (ob == w_beat) & (ost.payload[w_lane] == -1)),
                     Cover(landed & (n_upd == 3) & (exp.s == qp))]
        return m

