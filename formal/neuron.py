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
    Value,
    signed,
)
from amaranth.lib import data

from ..model.neurons import site_bounds
from ..model.widths import signed_bits
from ..rtl._bram import RegisteredRAM
from ..rtl.neuron import OUT_QUEUE_DEPTH, NeuronArray
from ._shadow import ShadowQueue, assert_stream_rules, memory_taps, signals_by_name, subfragment

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

    ``invariants=True`` adds the strengthening invariants meant for k-induction
    (:meth:`_strengthen`: the watched state word, the spikes held in the output queue, the
    pipeline's counters and pointers, all tied to the shadow state); a bounded run checks that
    they hold in every reachable state up to the bound.

    ``broken`` names one property to break on purpose (:data:`BROKEN_NEURON`): its proof must
    fail.
    """

    def __init__(self, *, theta: int = 5, levels: int = 4, signed_site: bool = True, lanes: int = 2,
                 n_neurons: int = 3, current_width: int = 4, cum_bound: int = 20,
                 state_select: bool = True, free_reset: bool = False, invariants: bool = False,
                 broken: str | None = None):
        if broken not in (None, *BROKEN_NEURON):
            raise ValueError(f"broken must be None or one of {BROKEN_NEURON}, got {broken!r}")
        self.broken = broken
        self.free_reset = bool(free_reset)
        self.invariants = bool(invariants)
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

        if self.invariants:
            self._strengthen(m, frag, ram, ib, ob, outstanding, sum_i, v_ref, s_ref, wq, sq, pw1,
                             pw2, w_beat, w_lane, lane_st)

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

    def _strengthen(self, m: Module, frag: Fragment, ram: RegisteredRAM, ib: Signal, ob: Signal,
                    outstanding: Signal, sum_i: Signal, v_ref: Signal, s_ref: Signal,
                    wq: ShadowQueue, sq: ShadowQueue, pw1: Signal, pw2: Signal, w_beat: Signal,
                    w_lane: Signal, lane_st: data.StructLayout) -> None:
        """Invariants meant to make the lane properties inductive (asserted: each must hold in
        every reachable state, a bounded run checks that; ``invariants=True`` adds them).

        An induction step starts from any state whose last ``k`` cycles pass every assertion.
        What the array keeps for longer than that must be tied to the shadow state here: the
        watched neuron's state word (V, S) to ``v_ref``/``s_ref``, every spike waiting in the
        output queue to its entry of the shadow spike queue, the counters and pointers that
        address them to the wrapper's beat counters, and the parameter memories to their
        contents. Values in the pipeline itself are left to the induction depth: within about
        12 cycles they reach the write-back or the output queue, where they are checked. (They
        do not close the induction yet: with them, k <= 11 has counterexamples and k = 12 was
        not decided by Yices within 10 minutes, see the README.)
        """
        dut = self.dut
        P, N, B = dut.lanes, dut.n_neurons, dut.beats
        th = self.theta
        Q = OUT_QUEUE_DEPTH
        sig = signals_by_name(frag)
        bb = max(B, 2)

        # B a power of two: "mod B" is the low bits, "// B" a shift (tables of each would cost
        # the solver a multiplexer per use)
        if B & (B - 1):
            raise ValueError(f"the invariants need a power-of-two beat count, got {B}")
        lb = B.bit_length() - 1

        def mod_b(x: Value, lo: int = 0, hi: int = 0) -> Value:
            # x mod B (x two's complement, any sign)
            return Const(0, 1) if lb == 0 else x.as_unsigned()[:lb]

        running = sig["running"]
        beat = sig["beat"]
        # ---- the reference itself: SPEC §2's invariant and the width analysis' premise -------
        m.d.comb += [
            Assert((s_ref >= self.qn) & (s_ref <= self.qp), "inv: reference tracer range"),
            Assert(v_ref - th // 2 == sum_i - s_ref * th, "inv: reference V != sum(I) - S*theta"),
            Assert((sum_i >= -self.cum_bound) & (sum_i <= self.cum_bound), "inv: reference sum"),
        ]

        # ---- parameters: never written (cfg idle), so their contents ---------------------------
        theta_taps = memory_taps(subfragment(frag, "theta_mem"), "theta_mem")
        theta_init = subfragment(frag, "theta_mem").origins[0].init
        for i, tap in enumerate(theta_taps):
            m.d.comb += Assert(tap == (theta_init[i] if i < len(theta_init) else 0),
                               "inv: theta memory word")
        if "prm_bounds" in sig:
            m.d.comb += Assert(sig["prm_bounds"] == sig["prm_bounds"].init, "inv: Qn/Qp register")

        # ---- pipeline control: valid copies, addresses, counters ------------------------------
        names = ["a", "a2", "a3", "a4", "r", "rf", "r2", "h", "e", "w", "b"]
        valid = [sig[f"{n}_valid"] for n in names] + [sig["b2_valid"]]
        # (the R and W stage addresses are named apart from the state RAM's ports)
        addr = [sig[f"{n}_stage_addr" if n in ("r", "w") else f"{n}_addr"] for n in names]
        m.d.comb += [Assert(sig["av0"] == valid[0], "inv: valid copy A"),
                     Assert(sig["a2v0"] == valid[1], "inv: valid copy A2"),
                     Assert(sig["ev0"] == valid[8], "inv: valid copy E"),
                     Assert(sig["wv0"] == valid[9], "inv: valid copy W"),
                     Assert(beat < B, "inv: beat counter range")]
        younger = Const(0, range(len(valid) + 1))
        for i, a in enumerate(addr):
            # the beats in flight are consecutive words, the youngest one before ``beat``
            with m.If(valid[i]):
                m.d.comb += Assert(a == mod_b(beat - 1 - younger, -len(valid) - 1, bb),
                                   f"inv: address of stage {names[i]}")
            younger = younger + valid[i]
        n_aw = sum(valid[:10])                      # beats in A .. W
        m.d.comb += [
            Assert(sig["rd_beat0"] == mod_b(beat - valid[0] - valid[1], -2, bb),
                   "inv: read counter"),
            Assert(sig["wr_beat0"] == mod_b(beat - n_aw, -10, bb), "inv: write counter"),
        ]
        # the clear pass: clr_go issues a clear beat, ``beat`` counts them from 0
        clr_n, clr_wait, clr_go = sig["clr_n"], sig["clr_wait"], sig["clr_go"]
        m.d.comb += [
            Assert(clr_go == (~running & ~clr_wait & (clr_n != 0)), "inv: clear issue"),
            Assert(clr_n <= B, "inv: clear count range"),
            Assert(~clr_wait | ~running, "inv: clear wait"),
        ]
        # the wrapper's own counters: the next beat delivered is the oldest one accepted
        m.d.comb += [Assert(ob == mod_b(ib - outstanding, -(2 * Q - 1), bb - 1), "inv: ob"),
                     Assert((ib < B) & (ob < B), "inv: wrapper beat counters")]
        with m.If(running):
            m.d.comb += [Assert(clr_n == 0, "inv: clear beats left while running"),
                         Assert(beat == ib, "inv: beat counter")]
        with m.Else():
            m.d.comb += [Assert(beat == mod_b(B - clr_n, 0, B), "inv: clear beat counter"),
                         Assert((ib == 0) & (ob == 0) & (outstanding == 0) & (wq.count == 0)
                                & (sq.count == 0) & (sum_i == 0) & (s_ref == 0),
                                "inv: wrapper during clear")]

        # ---- the watched state word --------------------------------------------------------------
        # the wrapper's copy of the state RAM's write-address registers (it says which write
        # lands) is the RAM's own
        ram_regs = signals_by_name(subfragment(frag, "state0"))
        m.d.comb += [Assert(pw1 == ram_regs["wa0_0"], "inv: pw1"),
                     Assert(pw2 == ram_regs["wa0_1"], "inv: pw2")]
        # updates of n* in flight: its beats in A .. B, and in B2 (the write landing, pw2)
        in_flight = sum(valid[i] & (addr[i] == w_beat) for i in range(len(addr)))
        in_flight = in_flight + (valid[11] & (pw2 == w_beat))
        newest = data.View(wq.data.shape(), wq.items[(wq.head + wq.count - 1)[:len(wq.head)]])
        with m.If(running):
            m.d.comb += Assert(wq.count == in_flight, "inv: shadow write-backs != updates in flight")
        with m.If(wq.count != 0):
            m.d.comb += Assert((newest.v == v_ref) & (newest.s == s_ref) & (newest.sum == sum_i),
                               "inv: newest shadow write-back != reference")
        state_taps = Array(memory_taps(subfragment(frag, "state0"), "state_mem"))
        lane_bits = lane_st.size
        word = state_taps[w_beat]
        lane_word = data.View(lane_st, Array(word[i * lane_bits:(i + 1) * lane_bits]
                                             for i in range(P))[w_lane])
        ram_v = Mux(lane_word.k, lane_word.h, lane_word.d) if dut.state_select else lane_word.v
        # the word holds the reference's (V, S) whenever no update of it is in flight: while
        # running, and in a clear pass once its clear beat has landed (the wrapper's reference
        # is the cleared state then)
        issued = Signal(range(B + 1), name="inv_clear_issued")
        m.d.comb += issued.eq(B - clr_n)
        with m.If((running | (w_beat < issued)) & (in_flight == 0)):
            m.d.comb += Assert((ram_v == v_ref) & (lane_word.s == s_ref),
                               "inv: state word of n* != reference")
        # clear beats (and only they) carry the clear flags down the pipeline
        clr_flags = [("a_clr",), ("a2_clr",), ("a3_clr", "a3clr_theta"), ("a4_clr",), ("rclr_g0",),
                     tuple(f"rclr{lane}" for lane in range(P)),
                     tuple(f"r2clr{lane}" for lane in range(P)),
                     tuple(f"hclr{lane}" for lane in range(P)),
                     tuple(f"eclr{lane}" for lane in range(P))]
        for i, flags in enumerate(clr_flags):
            with m.If(valid[i]):
                m.d.comb += [Assert(sig[f] == ~running, f"inv: clear flag {f}") for f in flags]

        # ---- output queue ------------------------------------------------------------------------
        occ, q_wp, q_h, q_a = sig["occ"], sig["q_wp"], sig["q_h"], sig["q_a"]
        q_valid, b_valid = sig["q_valid"], valid[10]
        qa = Q.bit_length() - 1                     # address bits (the pointers add a lap bit)
        q_span = Signal(range(2 * Q), name="inv_q_span")     # written and pending words
        m.d.comb += q_span.eq(q_wp - q_h)
        m.d.comb += [
            Assert(outstanding == occ, "inv: wrapper outstanding != occ"),
            Assert(occ < Q, "inv: occ range"),
            Assert(~sig["room"] | (occ <= Q - 2), "inv: room"),
            Assert(sig["q_h1"] == (q_h + 1)[:len(q_h)], "inv: q_h1"),
            Assert(sig["q_h2"] == (q_h + 2)[:len(q_h)], "inv: q_h2"),
            Assert(sig["q_a1"] == (q_a + 1)[:len(q_a)], "inv: q_a1"),
            # (q_a may be one behind the head: a miss restarts the reads at the head while the
            # next read of it hits and loads)
            Assert(((q_a - q_h + 1)[:len(q_h)] <= q_span + 1), "inv: read pointer range"),
            Assert(sig["q_idle"] == ~q_valid, "inv: q_idle"),
            Assert(sig["q_idle_ce"] == sig["q_idle"], "inv: q_idle copy"),
            Assert(sig["q_wr"] == (valid[9] & running), "inv: queue write"),
        ]
        oq_frag = subfragment(frag, "oq")
        oq_wa = signals_by_name(oq_frag)["wa0_0"]        # the queue RAM's write address register
        with m.If(running):
            m.d.comb += [
                Assert(occ == n_aw + q_span + q_valid, "inv: occ != beats held"),
                Assert((oq_wa != Q) == b_valid, "inv: queue write pending"),
            ]
            with m.If(b_valid):
                m.d.comb += Assert(oq_wa == (q_wp - 1)[:qa], "inv: queue write address")
        with m.Elif(~clr_wait):
            m.d.comb += [Assert((q_wp == 0) & (q_h == 0) & (q_a == 0) & ~q_valid & (occ == 0),
                                "inv: queue during clear"),
                         Assert(oq_wa == Q, "inv: queue write during clear")]
        n_land = Signal(range(2 * Q), name="inv_q_landed")
        m.d.comb += n_land.eq(q_span - b_valid)
        # q_ok: the word at q_a is in the RAM (or is the one before the head, see above)
        m.d.comb += Assert(~sig["q_ok"] | ((q_a - q_h + 1)[:len(q_h)] <= n_land), "inv: q_ok")
        with m.If(~running):
            m.d.comb += Assert(~sig["q_ok"], "inv: q_ok during clear")

        # every spike held (q_out, the queue RAM, the pending write) is the expected one: the
        # k-th oldest beat not delivered is beat (ob + k) mod B of its step; the watched ones
        # are the shadow queue's entries in order
        first = mod_b(w_beat - ob, -(bb - 1), bb - 1)
        kmax = 2 * Q
        valid_last = N - (B - 1) * P
        n_watched = Signal(range(kmax + 1), name="inv_watched_held")
        m.d.comb += n_watched.eq(Mux(outstanding > first, (outstanding - first + B - 1) >> lb, 0))
        m.d.comb += Assert(sq.count == n_watched, "inv: shadow spikes != watched beats held")

        def held(k: Value, spikes: Value, what: str) -> None:
            lanes = data.View(data.ArrayLayout(signed(2), P), spikes)
            bi = mod_b(ob + k, 0, bb - 1 + kmax)
            j = ((k - first).as_unsigned() >> lb)[:len(sq.head)]
            entry = sq.items[(sq.head + j)[:len(sq.head)]]
            with m.If(bi == w_beat):
                m.d.comb += Assert(lanes[w_lane] == entry, f"inv: {what} spike != shadow spike")
            with m.If(bi == B - 1):
                for lane in range(valid_last, P):
                    m.d.comb += Assert(lanes[lane] == 0, f"inv: {what} padding lane")

        with m.If(running):
            with m.If(q_valid):
                held(Const(0, range(kmax)), sig["q_out"], "q_out")
            oq_taps = memory_taps(oq_frag, "oq")
            for i in range(Q):
                d = (Const(i, qa) - q_h[:qa])[:qa]
                with m.If(d < n_land):
                    held(d + q_valid, oq_taps[i], "queue word")
            with m.If(b_valid):
                held(n_land + q_valid, sig["b_spk"], "pending queue word")
